"""models/numpy_decode.py: the torch-free decoder `nanostack sample` streams small GPT-2-style models with.
It must give torch's logits and, for the same seed, torch's tokens."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file, save_model
from testkit import TINY, flags, nanostack_cmd, one_torch_thread, run_cli, run_nanostack  # noqa: F401

from nanostack.models import GPT, ModelConfig
from nanostack.models.generation import generate_tokens
from nanostack.models.numpy_decode import NumpyDecoder, TorchCPURandom, decoder_problem, read_decoder


def peaked_gpt(tmp_path, vocab=40, block=16, seed=0, **options):
    """A GPT with random weights scaled up (peaked next-token distributions, like a trained model's),
    and the NumpyDecoder of its saved checkpoint."""
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=2, n_embd=32, **options)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8 if p.ndim == 2 else 1)
    path = tmp_path / "model.safetensors"
    save_model(model, str(path))
    return model, read_decoder(config, path)


@pytest.mark.parametrize("seed", [0, 1337, 2**32 + 5, -7])
def test_the_random_stream_is_torch_rand(seed):
    torch_draws = torch.Generator().manual_seed(seed)
    ours = TorchCPURandom(seed)
    assert [torch.rand(1, 1, generator=torch_draws).item() for _ in range(1500)] == \
        [float(ours.rand()) for _ in range(1500)]  # 1500 > 624: past the first twist of the state


@pytest.mark.parametrize("options", [{}, {"bias": False}, {"activation": "gelu_tanh"}])
def test_logits_equal_torchs_through_prefill_and_decoding(tmp_path, options):
    model, decoder = peaked_gpt(tmp_path, **options)
    ids = torch.randint(0, 40, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, _ = model(ids, targets=ids)  # logits at every position
    prefill = decoder.forward(ids[0, :5].tolist())
    steps = [decoder.forward([t]) for t in ids[0, 5:].tolist()]
    theirs = full[0, 4:].numpy()
    np.testing.assert_allclose(np.stack([prefill, *steps]), theirs, atol=2e-5 * np.abs(theirs).max())


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, None, None), (0.8, 5, 0.9), (0.0, None, None),
                                                       (1.5, None, 0.6), (1.0, 1, None)])
def test_the_same_tokens_as_torch_across_window_slides(tmp_path, temperature, top_k, top_p):
    model, decoder = peaked_gpt(tmp_path)
    prompt = [3, 1, 4, 1, 5]
    expected = [int(t) for t in generate_tokens(model, torch.tensor([prompt]), 200, temperature, top_k, top_p,
                                                torch.Generator().manual_seed(42))]
    got = list(decoder.generate_tokens(prompt, 200, temperature, top_k, top_p, rng=TorchCPURandom(42)))
    assert got == expected  # 200 tokens through a 16-token window: a dozen slides and prefills
    assert len(set(got)) > 5  # not a degenerate stream


def test_a_prompt_longer_than_the_window_keeps_its_end(tmp_path):
    model, decoder = peaked_gpt(tmp_path)
    prompt = list(range(30))  # block 16
    expected = [int(t) for t in generate_tokens(model, torch.tensor([prompt]), 20, 1.0, None, None,
                                                torch.Generator().manual_seed(3))]
    assert list(decoder.generate_tokens(prompt, 20, rng=TorchCPURandom(3))) == expected


def test_it_refuses_what_it_does_not_know():
    base = dict(vocab_size=65, block_size=64)
    assert decoder_problem(ModelConfig(**base)) is None
    assert decoder_problem(ModelConfig(**base, activation="gelu_tanh")) is None  # GPT-2's own GELU
    assert decoder_problem(ModelConfig(**base, zero_init=True)) is None  # only the initial weights differ
    assert "rotary" in decoder_problem(ModelConfig(**base, rotary=True))
    assert "activation" in decoder_problem(ModelConfig(**base, activation="relu2"))
    assert "mlp" in decoder_problem(ModelConfig(**base, kind="mlp"))
    assert "torch" in decoder_problem(ModelConfig(**base, n_layer=12, n_embd=768, n_head=12))
    with pytest.raises(ValueError, match="rotary"):
        NumpyDecoder(ModelConfig(**base, rotary=True), {})


def test_a_file_it_cannot_read_as_the_config_says_is_left_to_torch(tmp_path):
    """None, so the torch loader reads it and names the problem (a damaged file, other shapes, bfloat16)."""
    model, decoder = peaked_gpt(tmp_path)
    assert decoder is not None
    path = tmp_path / "model.safetensors"
    assert read_decoder(ModelConfig(vocab_size=41, block_size=16, n_layer=2, n_head=2, n_embd=32), path) is None
    weights = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items() if k != "transformer.wte.weight"}
    save_file(weights, str(tmp_path / "bf16.safetensors"))
    assert read_decoder(model.config, tmp_path / "bf16.safetensors") is None
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:500])
    assert read_decoder(model.config, tmp_path / "cut.safetensors") is None


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, corpus_text):
    root = tmp_path_factory.mktemp("decode")
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text)
    done = run_nanostack("train", "--out", root / "run", "--data", corpus, *flags(TINY))
    assert done.returncode == 0, done.stderr
    return root / "run"


@pytest.fixture(scope="module")
def corpus_text():
    return "the quick brown fox jumps over the lazy dog\n" * 40


def test_cli_sample_streams_without_torch_and_as_torch_does(small_run):
    args = [str(small_run), "--prompt", "the", "--max-new-tokens", "60", "--num-samples", "2", "--seed", "5",
            "--top-k", "10", "--temperature", "0.9"]
    code = ("import sys; from nanostack.cli import main; code = main(sys.argv[1:]); "
            "print('torch' in sys.modules, file=sys.stderr); sys.exit(code)")
    fast = subprocess.run([sys.executable, "-c", code, "sample", *args], capture_output=True, text=True, timeout=120)
    assert fast.returncode == 0 and fast.stderr.strip() == "False", fast.stderr
    with_torch = run_nanostack("sample", *args, "--backend", "torch", "--device", "cpu")  # a GPU draws otherwise
    assert with_torch.returncode == 0, with_torch.stderr
    assert fast.stdout == with_torch.stdout and fast.stdout.count("\n---\n") == 1


def test_a_damaged_checkpoint_is_still_one_line(small_run, capsys, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    for weights in run.glob("*/model.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = run_cli(capsys, "sample", run, "--max-new-tokens", 3)
    assert code == 2 and "truncated or corrupt" in err and len(err.strip().splitlines()) == 1
