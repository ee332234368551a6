"""`--backend numpy`: the same trainer, data, checkpoints and sampler on nanostack.grad's GPT."""
import io
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy

from testkit import TINY, run_cli, run_nanostack
from nanostack.errors import UserError
from nanostack.grad import optim
from nanostack.models.engines import TorchFacade
from nanostack.sample import load_run, stream_samples
from nanostack.train import train

NUMPY = {**TINY, "backend": "numpy"}
quiet = lambda *a: None  # noqa: E731


def test_numpy_run_learns_and_writes_the_same_run_folder(corpus, tmp_path):
    out = tmp_path / "run"
    summary = train(out, {**NUMPY, "data": str(corpus)}, log=quiet)
    assert summary["step"] == TINY["max_iters"]
    assert {p.name for p in (out / "latest").iterdir()} == {"model.safetensors", "optimizer.pt", "state.json"}
    evals = [r["val_loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "eval"]
    assert evals[-1] < evals[0] - 0.05  # it learns (as fast as torch does on this tiny run: 3.26 -> 3.17)
    state = json.loads((out / "latest" / "state.json").read_text())
    assert "numpy" in state["rng"]  # the dropout stream is saved for resume
    assert torch.load(out / "latest" / "optimizer.pt", weights_only=True)["step"] == TINY["max_iters"]
    assert json.loads((out / "config.json").read_text())["train"]["backend"] == "numpy"


def test_numpy_checkpoint_samples_on_torch_and_torch_checkpoint_on_numpy(corpus, tmp_path):
    for trained_on in ("numpy", "torch"):
        out = tmp_path / trained_on
        train(out, {**TINY, "backend": trained_on, "data": str(corpus)}, log=quiet)
        torch_model, tokenizer = load_run(out)
        numpy_model, _ = load_run(out, backend="numpy")
        assert isinstance(numpy_model, TorchFacade) and isinstance(torch_model, torch.nn.Module)
        ids = torch.tensor([list(tokenizer.encode("the quick brown"))])
        with torch.no_grad():
            expected, _ = torch_model(ids)
        logits, _ = numpy_model(ids)
        np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
        text = io.StringIO()
        stream_samples(numpy_model, tokenizer, prompt="the", max_new_tokens=20, out=text)
        assert text.getvalue().startswith("the") and len(text.getvalue()) > 20


def test_numpy_weights_file_matches_torchs_layout(corpus, tmp_path):
    train(tmp_path / "n", {**NUMPY, "data": str(corpus), "max_iters": 10}, log=quiet)
    train(tmp_path / "t", {**TINY, "data": str(corpus), "max_iters": 10}, log=quiet)
    ours, theirs = (load_numpy(str(tmp_path / r / "latest" / "model.safetensors")) for r in ("n", "t"))
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert all(v.dtype == np.float32 for v in ours.values())


def test_numpy_resume_equals_an_uninterrupted_run(corpus, tmp_path):
    """Optimizer moments, data order and the numpy dropout stream all carry over a resume."""
    settings = {**NUMPY, "data": str(corpus), "dropout": 0.1}
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(straight, {**settings, "max_iters": 30}, log=quiet)
    train(split, {**settings, "max_iters": 20}, log=quiet)
    train(split, {"max_iters": 30}, resume=True, log=quiet)
    a, b = (load_numpy(str(r / "latest" / "model.safetensors")) for r in (straight, split))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_resume_with_another_backend_is_refused(corpus, tmp_path):
    out = tmp_path / "run"
    train(out, {**NUMPY, "data": str(corpus), "max_iters": 10}, log=quiet)
    with pytest.raises(UserError, match="trained with the numpy backend.*--backend numpy"):
        train(out, {"max_iters": 20, "backend": "torch"}, resume=True, log=quiet)


@pytest.mark.parametrize("args, message", [
    (["--backend", "jax"], "unknown backend 'jax'"),
    (["--backend", "numpy", "--device", "cuda"], "numpy backend runs on the CPU"),
    (["--backend", "numpy", "--dtype", "bfloat16"], "float32 only"),
    (["--backend", "numpy", "--compile"], "--compile is for the torch backend"),
])
def test_bad_backend_settings_are_one_line_errors(capsys, corpus, tmp_path, args, message):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--data", corpus, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cli_samples_a_torch_run_with_the_numpy_backend(corpus, tmp_path):
    out = tmp_path / "run"
    train(out, {**TINY, "data": str(corpus)}, log=quiet)
    done = run_nanostack("sample", out, "--backend", "numpy", "--prompt", "the", "--max-new-tokens", "30",
                         "--temperature", "0")
    assert done.returncode == 0, done.stderr
    torch_done = run_nanostack("sample", out, "--backend", "torch", "--prompt", "the", "--max-new-tokens", "30",
                               "--temperature", "0")
    assert done.stdout == torch_done.stdout  # greedy: the two engines pick the same tokens


def test_clip_grad_norm_equals_torchs():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    params = [optim.Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, t, g in zip(params, theirs, grads):
        p.grad, t.grad = g.copy(), torch.tensor(g)
    norm = optim.clip_grad_norm(params, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0).item()
    assert norm == pytest.approx(expected, rel=1e-12)
    for p, t in zip(params, theirs):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)
    assert optim.clip_grad_norm(params, 100.0) == pytest.approx(1.0, rel=1e-5)  # under the limit: unchanged


def test_names_mlp_trains_on_numpy_and_samples_on_torch(capsys, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte", "amelia"] * 4))
    out = tmp_path / "run"
    settings = {"data": str(names), "examples": "lines", "model": "mlp", "backend": "numpy", "n_embd": 8,
                "n_embd2": 32, "batch_size": 8, "max_iters": 60, "eval_interval": 30, "eval_iters": 2,
                "ckpt_interval": 30, "warmup_iters": 0, "learning_rate": 1e-2, "min_lr": 1e-3}
    train(out, settings, log=quiet)
    evals = [r["val_loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "eval"]
    assert evals[-1] < evals[0]
    code, stdout, _ = run_cli(capsys, "sample", out, "--num-samples", 4)  # torch loads the numpy run
    assert code == 0 and "are new" in stdout
    code, stdout, _ = run_cli(capsys, "sample", out, "--num-samples", 4, "--backend", "numpy")
    assert code == 0 and len(stdout.splitlines()) == 5
