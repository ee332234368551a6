"""The modern GPT options (rotary, RMSNorm, QK-norm, ReLU², tanh GELU, untied head, zero init) and Muon."""
import io
import json
import math
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from testkit import TINY, flags, nanostack_cmd, run_nanostack
from nanostack.errors import UserError
from nanostack.models import GPT, GPTConfig, ModelConfig
from nanostack.models.gpt_numpy import NumpyGPT
from nanostack.models.rotary import Rotary, apply_rotary
from nanostack.train import make_config, train
from nanostack.train.ema import WeightAverage
from nanostack.loss import split_loss
from nanostack.train.muon import Muon, MuonAdamW, hidden_matrices, make_muon_adamw, orthogonalize

ALL_ON = dict(rotary=True, rmsnorm=True, qk_norm=True, activation="relu2", untied_head=True, zero_init=True)
EACH = [dict(rotary=True), dict(rmsnorm=True), dict(qk_norm=True), dict(activation="relu2"),
        dict(activation="gelu_tanh"), dict(untied_head=True), dict(zero_init=True),
        dict(zero_init=True, untied_head=True), ALL_ON]


def cli_flags(settings: dict) -> list:
    """conftest.flags, with booleans as --name / --no-name."""
    bools = [f"--{'' if v else 'no-'}{k.replace('_', '-')}" for k, v in settings.items() if isinstance(v, bool)]
    return flags({k: v for k, v in settings.items() if not isinstance(v, bool)}) + bools


def tiny_gpt(seed=0, dtype=torch.float32, vocab=50, block=16, **options):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=2, n_embd=32, **options)).to(dtype)


# --- Newton-Schulz and Muon ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (3, 96, 32), (128, 384)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_newton_schulz_orthogonalises_random_matrices(shape, dtype):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 5.0
    before = torch.linalg.svdvals(g)
    assert (before.amax(-1) / before.amin(-1)).min() > 2  # not orthogonal to begin with
    o = orthogonalize(g, dtype=dtype)
    assert o.shape == g.shape and o.dtype == g.dtype
    after = torch.linalg.svdvals(o)
    assert after.min() > 0.6 and after.max() < 1.25, (after.min(), after.max())
    # the singular vectors are kept: o points where U V^T does
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    polar = u @ vh
    cosine = (o * polar).sum((-2, -1)) / (o.norm(dim=(-2, -1)) * polar.norm(dim=(-2, -1)))
    assert cosine.min() > 0.97


def test_newton_schulz_lifts_small_singular_values():
    gen = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(64, 64, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(128, 64, generator=gen))
    spread = torch.logspace(0, -2, 64)  # singular values from 1 down to 0.01
    after = torch.linalg.svdvals(orthogonalize(u @ torch.diag(spread) @ v.T))
    assert after.min() > 0.6 and after.max() < 1.25


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    model = tiny_gpt(**ALL_ON)
    opt = make_muon_adamw(model, learning_rate=1e-3, muon_lr=0.02, momentum=0.95, weight_decay=0.1,
                          betas=(0.9, 0.99), device_type="cpu")
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for g in opt.muon.param_groups for p in g["params"]}
    in_adamw = {names[id(p)] for g in opt.adamw.param_groups for p in g["params"]}
    assert in_muon == set(hidden_matrices(model)) and not in_muon & in_adamw
    assert in_muon | in_adamw == set(names.values())
    assert all(n.startswith("transformer.h.") and n.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight"))
               for n in in_muon)
    assert {"transformer.wte.weight", "lm_head.weight"} <= in_adamw
    assert [g["lr_scale"] for g in opt.param_groups] == [20.0, 1.0, 1.0]
    assert [g["weight_decay"] for g in opt.adamw.param_groups] == [0.1, 0.0]  # norms and gains: no decay


def test_muon_step_is_orthogonal_and_scaled():
    w = torch.nn.Parameter(torch.zeros(96, 32))
    opt = Muon([w], lr=0.1, momentum=0.0, nesterov=False)
    w.grad = torch.randn(96, 32)
    opt.step()
    s = torch.linalg.svdvals(w.detach() / (-0.1 * math.sqrt(96 / 32)))  # tall: scaled by sqrt(rows / cols)
    assert s.min() > 0.6 and s.max() < 1.25
    with pytest.raises(ValueError, match="matrices"):
        Muon([torch.nn.Parameter(torch.zeros(5))])


def test_muon_state_saves_plainly_and_continues_exactly():
    x, y = torch.randint(50, (4, 16), generator=torch.Generator().manual_seed(2)), torch.randint(50, (4, 16))

    def run(model, opt, steps):
        for _ in range(steps):
            _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    def fresh():
        model = tiny_gpt(**ALL_ON)
        return model, make_muon_adamw(model, 1e-3, 0.02, 0.95, 0.0, (0.9, 0.99), "cpu")

    straight, opt = fresh()
    run(straight, opt, 6)
    first, opt = fresh()
    run(first, opt, 3)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    weights = {k: v.clone() for k, v in first.state_dict().items()}
    resumed, opt2 = fresh()
    resumed.load_state_dict(weights)
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    run(resumed, opt2, 3)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


# --- the modern options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("options", EACH, ids=lambda o: "+".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("bias", [True, False])
def test_each_option_trains_and_overfits_a_batch(options, bias):
    model = tiny_gpt(bias=bias, **options)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randint(50, (4, 16), generator=gen), torch.randint(50, (4, 16), generator=gen)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(120):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_all_options_with_muon_overfit_a_batch():
    model = tiny_gpt(bias=False, **ALL_ON)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randint(50, (4, 16), generator=gen), torch.randint(50, (4, 16), generator=gen)
    opt = make_muon_adamw(model, 1e-2, 0.05, 0.95, 0.0, (0.9, 0.99), "cpu")
    for group in opt.param_groups:
        group["lr"] = 1e-2 * group["lr_scale"]
    for _ in range(120):
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert loss.item() < 0.1


def test_options_change_the_architecture_they_name():
    plain = tiny_gpt()
    assert plain.config.modern_options() == [] and plain.rotary is None
    assert plain.lm_head.weight is plain.transformer.wte.weight
    modern = tiny_gpt(bias=False, **ALL_ON)
    assert modern.config.modern_options() == list(ALL_ON)
    names = dict(modern.named_parameters())
    assert "transformer.wpe.weight" not in names  # rotary: no learned positions
    assert modern.lm_head.weight is not modern.transformer.wte.weight
    assert isinstance(modern.transformer.ln_f, torch.nn.RMSNorm) and not any(n.endswith(".bias") for n in names)
    for name in ("transformer.h.0.attn.c_proj.weight", "transformer.h.1.mlp.c_proj.weight", "lm_head.weight"):
        assert not names[name].any(), name  # zero init
    assert names["transformer.h.0.attn.qk_gain"].shape == (32,)
    _, loss = modern(torch.randint(50, (2, 16)), torch.randint(50, (2, 16)))
    assert loss.item() == pytest.approx(math.log(50), abs=1e-6)  # a zero head predicts uniformly
    # the state dict holds no rotary tables: they are not weights
    assert not any("cos" in k or "sin" in k for k in modern.state_dict())


def test_activations_are_the_functions_they_name():
    x = torch.linspace(-4, 4, 101)
    tanh = tiny_gpt(activation="gelu_tanh").transformer.h[0].mlp.act(x)
    expected = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))  # GPT-2's gelu_new
    assert torch.allclose(tanh, expected, atol=1e-6)
    assert torch.equal(tiny_gpt(activation="relu2").transformer.h[0].mlp.act(x), torch.relu(x) ** 2)
    assert torch.equal(tiny_gpt().transformer.h[0].mlp.act(x), torch.nn.functional.gelu(x))  # default: erf


def test_rotary_attention_depends_on_relative_position_only():
    rotary = Rotary(head_dim=8, block_size=32).double()
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, generator=gen, dtype=torch.float64), torch.randn(8, generator=gen, dtype=torch.float64)

    def score(m, n):
        return (apply_rotary(q, *rotary(torch.tensor([m]))) * apply_rotary(k, *rotary(torch.tensor([n])))).sum().item()

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-6)  # the tables are float32
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
    assert score(0, 0) == pytest.approx((q * k).sum().item(), abs=1e-12)  # position 0: no rotation


@pytest.mark.parametrize("options", [dict(rotary=True), ALL_ON, dict(rotary=True, qk_norm=True, bias=False)])
def test_kv_cache_with_rotary_equals_a_full_forward(options):
    model = tiny_gpt(dtype=torch.float64, **options)
    for p in model.parameters():  # move zero-initialised weights away from zero so every path matters
        p.data.add_(0.05 * torch.randn_like(p))
    model.eval()
    x = torch.randint(50, (3, 16))
    full, _ = model(x, torch.zeros_like(x))
    cache = model.new_kv_cache(3)
    prefill, _ = model(x[:, :5], kv_cache=cache)
    assert torch.allclose(prefill[:, -1], full[:, 4], atol=1e-12)
    for t in range(5, 16):
        step, _ = model(x[:, t:t + 1], kv_cache=cache)
        assert torch.allclose(step[:, -1], full[:, t], atol=1e-12), t


def test_rotary_generation_with_and_without_cache_is_identical_past_the_block():
    model = tiny_gpt(dtype=torch.float64, **ALL_ON)
    for p in model.parameters():
        p.data.add_(0.3 * torch.randn_like(p))
    prompt = torch.randint(50, (2, 3))
    cached = model.generate(prompt, 40, temperature=0, use_cache=True)  # 43 tokens: the window slides twice
    plain = model.generate(prompt, 40, temperature=0, use_cache=False)
    assert torch.equal(cached, plain)


# --- config, refusals and the trainer ----------------------------------------------------------------------

def test_numpy_backend_refuses_the_modern_options():
    for option in [{"rotary": True}, {"rmsnorm": True}, {"qk_norm": True}, {"activation": "relu2"},
                   {"untied_head": True}, {"zero_init": True}, {"optimizer": "muon"}]:
        with pytest.raises(UserError, match="numpy backend") as e:
            make_config(None, {"backend": "numpy", **option})
        assert "--backend torch" in e.value.hint
    with pytest.raises(UserError, match="numpy GPT has none of the modern options \\(rotary\\)"):
        NumpyGPT(ModelConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8, rotary=True))


def test_numpy_refusal_is_one_line_on_the_command_line(corpus, tmp_path):
    done = run_nanostack("train", "--out", tmp_path / "run", "--data", corpus, "--backend", "numpy", "--rotary")
    assert done.returncode == 2
    assert "numpy backend" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_bad_modern_settings_are_refused():
    with pytest.raises(UserError, match="unknown activation 'swish'"):
        make_config(None, {"activation": "swish"})
    with pytest.raises(UserError, match="unknown optimizer 'sgd'"):
        make_config(None, {"optimizer": "sgd"})
    with pytest.raises(UserError, match="options of the transformer, not of the mlp"):
        make_config(None, {"model": "mlp", "optimizer": "muon"})
    with pytest.raises(UserError, match="even head size"):
        make_config(None, {"rotary": True, "n_embd": 36, "n_head": 4})
    with pytest.raises(UserError, match="muon_momentum"):
        make_config(None, {"muon_momentum": 1.0})


def test_modern_preset_turns_the_options_on_together():
    cfg = make_config("cpu_modern")
    assert (cfg.rotary, cfg.rmsnorm, cfg.qk_norm, cfg.activation, cfg.untied_head, cfg.zero_init, cfg.optimizer) == \
        (True, True, True, "relu2", True, True, "muon")
    small = make_config("cpu_small")
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size) == (small.n_layer, small.n_head, small.n_embd,
                                                                     small.block_size)


@pytest.mark.slow
def test_a_modern_muon_run_trains_samples_and_refuses_another_optimizer_on_resume(corpus, tmp_path):
    out = tmp_path / "run"
    summary = train(out, {**TINY, "data": str(corpus), "bias": False, "optimizer": "muon", **ALL_ON},
                    log=lambda *a: None)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["val_loss"] for r in records if r["kind"] == "eval"]
    assert evals[-1] < evals[0] < math.log(29) + 0.1  # it learns, from a uniform start
    assert summary["step"] == TINY["max_iters"]
    opt = torch.load(out / "latest" / "optimizer.pt", weights_only=True)
    assert set(opt) == {"muon", "adamw"} and opt["muon"]["state"]
    last_lr = [r["lr"] for r in records if r["kind"] == "train"][-1]  # the schedule's rate, AdamW's
    assert opt["adamw"]["param_groups"][0]["lr"] == last_lr
    assert opt["muon"]["param_groups"][0]["lr"] == pytest.approx(last_lr * 0.02 / 1e-3)  # Muon's, at its own peak
    assert "transformer.wpe.weight" not in load_file(str(out / "latest" / "model.safetensors"))
    sampled = run_nanostack("sample", out, "--max-new-tokens", "20", "--seed", "1")
    assert sampled.returncode == 0, sampled.stderr
    numpy_sample = run_nanostack("sample", out, "--backend", "numpy", "--max-new-tokens", "5")
    assert numpy_sample.returncode == 2 and "it has no rotary" in numpy_sample.stderr
    assert "--backend torch" in numpy_sample.stderr and "Traceback" not in numpy_sample.stderr
    with pytest.raises(UserError, match="optimizer cannot change on --resume"):
        train(out, {"max_iters": 40, "optimizer": "adamw"}, resume=True, log=lambda *a: None)


def test_stop_at_val_stops_on_the_exact_val_loss(corpus, tmp_path):
    out = tmp_path / "run"
    summary = train(out, {**TINY, "data": str(corpus), "stop_at_val": 3.21, "eval_interval": 5, "ckpt_interval": 100},
                    log=lambda *a: None)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    full = [(r["step"], r["val_loss_full"]) for r in records if r["kind"] == "eval"]
    assert summary["reached_val"] and summary["step"] == full[-1][0] < TINY["max_iters"]
    assert full[-1][1] <= 3.21 < min(v for _, v in full[:-1])  # stopped at the first evaluation that reached it
    assert json.loads((out / "latest" / "state.json").read_text())["step"] == summary["step"]  # and saved it
    from nanostack.data import open_dataset
    from nanostack.sample import load_run
    model, _ = load_run(out, "latest")
    dataset = open_dataset(str(corpus), log=lambda *a: None)
    assert full[-1][1] == pytest.approx(split_loss(model, dataset, "val", TINY["block_size"]), abs=1e-6)


@pytest.mark.slow
def test_sigkill_then_resume_with_muon_equals_an_uninterrupted_run(corpus, tmp_path):
    settings = {**TINY, "data": corpus, "n_layer": 2, "n_embd": 48, "block_size": 32, "batch_size": 8,
                "max_iters": 200, "lr_decay_iters": 200, "ckpt_interval": 40, "eval_interval": 50, "dropout": 0.1,
                "optimizer": "muon", "bias": False, **ALL_ON}
    args = cli_flags(settings)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run_nanostack("train", "--out", straight, *args)
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen(nanostack_cmd("train", "--out", killed, *args),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (killed / "latest/state.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = run_nanostack("train", "--out", killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(straight / "latest" / "model.safetensors"))
    b = load_file(str(killed / "latest" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- weight averaging (--ema) ----------------------------------------------------------------------------

def test_weight_average_follows_the_weights_and_resumes_exactly():
    model = tiny_gpt()
    x, y = torch.randint(50, (4, 16)), torch.randint(50, (4, 16))
    opt = WeightAverage(torch.optim.AdamW(model.parameters(), lr=1e-2), model, decay=0.9)
    expected = [p.detach().clone() for p in model.parameters()]
    for step in range(5):
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        expected = [0.9 * e + 0.1 * p.detach() for e, p in zip(expected, model.parameters())]
        if step == 2:
            saved = torch.load(save_to_buffer(opt.state_dict()), weights_only=True)
            weights = {k: v.clone() for k, v in model.state_dict().items()}
    for e, a in zip(expected, opt.model.parameters()):
        assert torch.allclose(e, a, atol=1e-6)
    assert opt.model.lm_head.weight is opt.model.transformer.wte.weight  # the copy stays tied
    assert not torch.equal(opt.model.lm_head.weight, model.lm_head.weight)
    resumed = tiny_gpt(seed=5)
    resumed.load_state_dict(weights)
    opt2 = WeightAverage(torch.optim.AdamW(resumed.parameters(), lr=1e-2), resumed, decay=0.9)
    opt2.load_state_dict(saved)
    for _ in range(2):
        _, loss = resumed(x, y)
        loss.backward()
        opt2.step()
        opt2.zero_grad(set_to_none=True)
    for a, b in zip(opt.model.parameters(), opt2.model.parameters()):
        assert torch.equal(a, b)


def save_to_buffer(state) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_ema_run_keeps_the_average_as_best_and_resumes_exactly(corpus, tmp_path):
    settings = {**TINY, "data": str(corpus), "ema": 0.9, "eval_interval": 30}
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(straight, settings, log=lambda *a: None)
    train(split, {**settings, "max_iters": 20}, log=lambda *a: None)
    train(split, {"max_iters": 30}, resume=True, log=lambda *a: None)
    for which in ("latest", "best"):
        a, b = (load_file(str(run / which / "model.safetensors")) for run in (straight, split))
        assert all(torch.equal(a[k], b[k]) for k in a), which
    live, best = (load_file(str(straight / which / "model.safetensors")) for which in ("latest", "best"))
    average = torch.load(straight / "latest" / "optimizer.pt", weights_only=True)["average"]
    assert not torch.equal(live["lm_head.weight"], best["lm_head.weight"])
    assert any(torch.equal(best["lm_head.weight"], a) for a in average)  # best/ holds the average
    with pytest.raises(UserError, match="--ema is for the torch backend"):
        make_config(None, {"backend": "numpy", "ema": 0.99})
