"""The doctor and the probes on the models nanostack trains beyond the plain GPT: outputs that start at zero
(the learned bigram, `--zero-init --untied-head`, cpu_modern), Muon, rotary and QK-norm attention, ReLU²;
and the messages that name an extra to install or say why a check skipped."""
import math
import re
import tomllib
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import nanostack
from testkit import TINY, run_cli, shared_file, one_torch_thread  # noqa: F401 (one_torch_thread: a fixture)
from recipe_helpers import GPT_SHAPE, NonCausalAttention, adamw
from nanostack.data import open_dataset
from nanostack.models import ModelConfig
from nanostack.models.engines import build_model
from nanostack.recipe import Doctor, DoctorContext
from nanostack.recipe.dependence import context_reach
from nanostack.recipe.training import set_lr
from nanostack.run.config import make_config
from nanostack.train import train
from nanostack.train.muon import MuonAdamW
from nanostack.train.probes import attention_maps

quiet = lambda *a: None  # noqa: E731
SMALL = {"n_layer": 2, "n_embd": 32, "n_head": 2}


def results_of(ctx, only, quick=True) -> dict:
    return {r.id: r for r in Doctor(ctx).run(only=set(only), quick=quick)}


def gpt_context(corpus, **shape) -> DoctorContext:
    """The tests' 2-layer char GPT with model options `shape`; "noncausal": True swaps in attention without a mask."""
    noncausal = shape.pop("noncausal", False)
    bias = shape.pop("dead_bias", None)
    data = open_dataset(str(corpus), "char", "stream", 1337, log=quiet)
    config = ModelConfig(vocab_size=data.tokenizer.vocab_size, kind="transformer", **{**GPT_SHAPE, **shape})

    def new_model(seed):
        model = build_model("torch", config, seed)
        if noncausal:
            for block in model.transformer.h:
                block.attn.__class__ = NonCausalAttention
        if bias is not None:  # every unit of the first MLP's nonlinearity gets a large negative input
            with torch.no_grad():
                model.transformer.h[0].mlp.c_fc.bias.fill_(bias)
        return model

    return DoctorContext(data, new_model, adamw, learning_rate=1e-3, batch_size=8, seed=1337,
                         block_size=data.block_size(GPT_SHAPE["block_size"]))


# ---- causality (and overfit-batch's floor) on models whose output ignores the input at init ---------------------
@pytest.mark.parametrize("args", [
    ["--data", "names", "--config", "names", "--model", "bigram"],  # a learned table that starts at all zeros
    ["--data", "shakespeare", "--config", "cpu_small", "--n-layer", "2", "--n-embd", "32", "--n-head", "2",
     "--zero-init", "--untied-head"],
    ["--data", "shakespeare", "--config", "cpu_modern"],
])
def test_causality_passes_where_the_output_ignores_the_input_at_init(capsys, args):
    shared_file("names.txt" if "names" in args else "tinyshakespeare.txt")
    code, out, err = run_cli(capsys, "doctor", *args, "--quick", "--only", "causality")
    assert code == 0, out + err
    line = next(line for line in out.splitlines() if "causality" in line)
    assert line.startswith("PASS") and "noise" in line, line  # it says the chart is of a perturbed copy


def test_the_quick_doctor_passes_cpu_modern(capsys):
    """Every modern option at once (rotary, RMSNorm, QK-norm, ReLU², zero-initialised outputs, Muon)."""
    shared_file("tinyshakespeare.txt")
    code, out, err = run_cli(capsys, "doctor", "--data", "shakespeare", "--config", "cpu_modern", "--quick")
    assert code == 0, out + err
    lines = {line.split()[1]: line for line in out.splitlines() if line[:4] in ("PASS", "WARN", "FAIL", "SKIP")}
    assert lines["dead-units"].startswith("PASS") and lines["act-scale"].startswith("PASS"), out
    assert lines["grad-flow"].startswith("SKIP") and "starts at zero" in lines["grad-flow"], out


@pytest.mark.parametrize("noncausal", [False, True])
def test_the_noisy_copy_still_finds_a_leak_and_the_whole_context(corpus, noncausal):
    ctx = gpt_context(corpus, zero_init=True, untied_head=True, noncausal=noncausal)
    result = results_of(ctx, ["causality"])["causality"]
    assert ctx.dependence["perturbed"], "the zero head must send the chart to the noisy copy"
    if noncausal:
        assert result.status == "FAIL" and result.value > 0, result.line()
    else:
        assert result.status == "PASS", result.line()
        # overfit-batch's target: the model reads the whole context, so its floor is 0, not a 1-token entropy
        assert context_reach(ctx.dependence) == ctx.dependence["t"] + 1


def test_the_learned_bigram_reads_exactly_one_token():
    shared_file("names.txt")
    ctx = DoctorContext.from_config(make_config("names", {"data": "names", "model": "bigram"}))
    assert ctx.dependence["method"] == "perturbation" and ctx.dependence["perturbed"]
    assert context_reach(ctx.dependence) == 1  # overfit-batch's floor: the entropy of the next token given one


# ---- the optimizer the run trains with ---------------------------------------------------------------------------
def test_the_checks_build_muon_as_the_trainer_does():
    shared_file("tinyshakespeare.txt")
    cfg = make_config("cpu_small", {"data": "shakespeare", **SMALL, "optimizer": "muon", "muon_lr": 0.02,
                                    "learning_rate": 1e-3})
    ctx = DoctorContext.from_config(cfg)
    model = ctx.new_model()

    def rates(optimizer):
        return [group["lr"] for group in optimizer.muon.param_groups], \
               [group["lr"] for group in optimizer.adamw.param_groups]

    at_peak = ctx.new_optimizer(model)
    assert isinstance(at_peak, MuonAdamW) and at_peak.muon.param_groups[0]["params"]
    muon, adam = rates(at_peak)
    assert muon == pytest.approx([0.02]) and adam == pytest.approx([1e-3] * len(adam))
    # another lr (lr-range, input-dependence) scales both as the trainer's schedule does
    muon, adam = rates(ctx.new_optimizer(model, lr=1e-4))
    assert muon == pytest.approx([0.002]) and adam == pytest.approx([1e-4] * len(adam))
    set_lr(at_peak, 1e-5)
    muon, adam = rates(at_peak)
    assert muon == pytest.approx([2e-4]) and adam == pytest.approx([1e-5] * len(adam))


# ---- attention maps ------------------------------------------------------------------------------------------------
def test_attention_maps_are_the_attention_the_model_computes(monkeypatch):
    config = ModelConfig(vocab_size=20, kind="transformer", rotary=True, qk_norm=True, rmsnorm=True, **GPT_SHAPE)
    model = build_model("torch", config, 0).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the init (QK-norm's gains of 1 included), so every part matters
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.3)
    x = torch.randint(0, 20, (2, 12), generator=generator)
    attended, sdpa = [], F.scaled_dot_product_attention

    def recording(q, k, v, *args, **kwargs):
        attended.append((q.detach(), k.detach()))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    maps = attention_maps(model, x)
    assert len(attended) == GPT_SHAPE["n_layer"] and len(maps) == GPT_SHAPE["n_layer"] * GPT_SHAPE["n_head"]
    T = x.size(1)
    for entry in maps:
        q, k = attended[entry["layer"]]
        scores = (q[0, entry["head"]] @ k[0, entry["head"]].T) / math.sqrt(q.size(-1))
        want = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        for i, row in enumerate(entry["map"]):
            torch.testing.assert_close(row, want[i, :i + 1])


# ---- ReLU² ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dead_bias", [None, -10.0])
def test_relu_squared_layers_are_probed(corpus, dead_bias):
    ctx = gpt_context(corpus, activation="relu2", dead_bias=dead_bias)
    results = results_of(ctx, ["dead-units", "act-scale", "grad-flow"])
    assert {layer["kind"] for layer in ctx.init_stats.values()} >= {"relu2"}
    dead = results["dead-units"]
    if dead_bias is None:
        assert not [r.line() for r in results.values() if r.status == "SKIP"]
        assert dead.status == "PASS", dead.line()
    else:  # relu(x)^2 is 0 wherever x < 0: every unit of the first MLP is dead
        assert dead.status == "FAIL" and dead.value == 1.0 and "h.0.mlp" in dead.detail, dead.line()


# ---- messages ------------------------------------------------------------------------------------------------------
def test_every_extra_a_message_names_is_defined():
    root = Path(nanostack.__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    text = "\n".join(p.read_text(encoding="utf-8") for p in [*(root / "nanostack").rglob("*.py"),
                                                              root / "docs" / "recipe.md"])
    named = set(re.findall(r"nanostack\[(\w+)\]", text))
    assert {"plots", "tensorboard"} <= named
    assert named <= set(extras), named - set(extras)
    assert any(r.startswith("matplotlib") for r in extras["plots"])
    assert any(r.startswith("tensorboard") for r in extras["tensorboard"])


def test_update_ratio_says_the_probes_are_all_inside_the_warmup(corpus, tmp_path):
    run = tmp_path / "run"
    train(run, {**TINY, "data": str(corpus), "max_iters": 12, "lr_decay_iters": 12, "warmup_iters": 12,
                "eval_interval": 6, "ckpt_interval": 6, "log_interval": 3, "probe_every": 4}, log=quiet)
    ctx = DoctorContext.from_run(run)
    assert [r["step"] for r in ctx.probes() if r.get("kind") == "probe"]
    result = results_of(ctx, ["update-ratio"])["update-ratio"]
    assert result.status == "SKIP"
    assert "warmup (first 12 steps)" in result.detail and "no probe" not in result.detail, result.detail
