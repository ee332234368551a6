"""Probes: what `--probe-every` records, that 0 registers no hook at all, and that probing never changes
training (weights bit-identical with probes on and off, on CPU, with dropout)."""
import json

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from testkit import TINY, one_torch_thread  # noqa: F401 (one_torch_thread: a fixture)
from nanostack.train import train
from nanostack.train.probe_stats import Capture, to_host
from nanostack.train.probes import make_probe

quiet = lambda *a: None  # noqa: E731
RUN = {**TINY, "n_layer": 2, "dropout": 0.1, "max_iters": 12, "eval_interval": 6, "ckpt_interval": 6,
       "log_interval": 3, "lr_decay_iters": 12}


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "probes.jsonl").read_text().splitlines()]


def test_probing_every_step_leaves_training_bit_identical(corpus, tmp_path):
    train(tmp_path / "off", {**RUN, "data": str(corpus), "probe_every": 0}, log=quiet)
    train(tmp_path / "on", {**RUN, "data": str(corpus), "probe_every": 1}, log=quiet)
    for which in ("latest", "best"):
        off = load_file(str(tmp_path / "off" / which / "model.safetensors"))
        on = load_file(str(tmp_path / "on" / which / "model.safetensors"))
        assert off.keys() == on.keys()
        assert all(torch.equal(off[k], on[k]) for k in off), which
    losses = [[(r["step"], r.get("loss"), r.get("val_loss")) for r in map(json.loads, (tmp_path / d / "metrics.jsonl")
               .read_text().splitlines())] for d in ("off", "on")]
    assert losses[0] == losses[1]
    assert not (tmp_path / "off" / "probes.jsonl").exists()
    assert [r["step"] for r in records(tmp_path / "on") if r["kind"] == "probe"] == list(range(12))


def test_probes_off_register_no_hook(corpus, tmp_path, monkeypatch):
    calls = []
    for owner, name in ((nn.Module, "register_forward_hook"), (nn.Module, "register_forward_pre_hook"),
                        (nn.Module, "register_full_backward_hook"), (torch.Tensor, "register_hook")):
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda self, *a, _o=original, _n=name, **k: calls.append(_n) or _o(self, *a, **k))
    train(tmp_path / "off", {**RUN, "data": str(corpus), "probe_every": 0}, log=quiet)
    assert calls == []
    train(tmp_path / "on", {**RUN, "data": str(corpus), "probe_every": 5}, log=quiet)
    assert "register_forward_hook" in calls and "register_hook" in calls  # the counting above does see hooks


def test_probe_records_layers_updates_predictions_and_attention(corpus, tmp_path):
    train(tmp_path / "run", {**RUN, "data": str(corpus), "probe_every": 5}, log=quiet)
    found = records(tmp_path / "run")
    window = found[0]
    assert window["kind"] == "window" and len(window["x"]) == len(window["y"]) == RUN["block_size"]
    probes = [r for r in found if r["kind"] == "probe"]
    assert [r["step"] for r in probes] == [0, 5, 10, 11]  # step 0, every 5th, and the last
    layers = {layer["name"]: layer for layer in probes[0]["layers"]}
    assert {layer["kind"] for layer in layers.values()} == {"embedding", "norm", "linear", "gelu"}
    gelu = layers["transformer.h.0.mlp.act"]
    assert gelu["act"]["dead"] == 0 and gelu["act"]["units"] == 4 * RUN["n_embd"]
    assert sum(gelu["act"]["hist"]) > 0 and len(gelu["act"]["hist"]) == 64 and gelu["grad"]["std"] > 0
    weights = {w["name"]: w for w in probes[0]["weights"]}
    assert weights["transformer.wte.weight"]["role"] == "embedding"
    assert weights["transformer.h.0.attn.c_attn.weight"]["role"] == "hidden"
    assert -6 < weights["transformer.h.0.attn.c_attn.weight"]["update"] < 0
    evals = [r for r in found if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [6, 12]
    assert len(evals[0]["pred"]) == len(evals[0]["nll"]) == RUN["block_size"]
    assert "attention" not in evals[0]
    maps = evals[-1]["attention"]
    assert len(maps) == RUN["n_layer"] * RUN["n_head"]
    assert all(abs(sum(row) - 1) < 0.01 and len(row) == i + 1 for m in maps for i, row in enumerate(m["map"]))


def test_a_resumed_run_probes_each_step_once(corpus, tmp_path):
    out = tmp_path / "run"
    train(out, {**RUN, "data": str(corpus), "probe_every": 4, "max_iters": 6}, log=quiet)
    train(out, {"max_iters": 12}, resume=True, log=quiet)
    steps = [r["step"] for r in records(out) if r["kind"] == "probe"]
    assert steps == [0, 4, 5, 8, 11]  # 5 was the last step of the first part
    assert sum(r["kind"] == "window" for r in records(out)) == 1


def test_capture_statistics_match_a_direct_computation():
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(8, 32), nn.Tanh())
    with torch.no_grad():
        layer[0].bias[:4] = 50.0  # four units saturated at every position: dead
    x1, x2 = torch.randn(10, 8) * 3, torch.randn(6, 8) * 3
    with Capture(layer) as capture:
        layer(x1).sum().backward()
        layer(x2).sum().backward()  # a module called twice: one set of statistics over both calls
    stats = to_host(capture.layers["1"]["act"].reduce())
    h = torch.tanh(torch.cat([layer[0](x1), layer[0](x2)])).detach()
    assert abs(stats["mean"] - h.mean().item()) < 1e-5 and abs(stats["std"] - h.std().item()) < 1e-5
    assert abs(stats["saturated"] - (h.abs() > 0.97).float().mean().item()) < 1e-6
    assert stats["dead"][:4] == [True] * 4 and sum(stats["dead"]) == int(((h.abs() > 0.99).all(0)).sum())
    assert sum(stats["hist"]) == h.numel()  # fewer than 16,384 values: every one is in the histogram
    grads = to_host(capture.layers["1"]["grad"].reduce())
    assert grads["std"] == 0.0 and grads["absmax"] == 1.0  # d(sum)/d(output) is 1 everywhere


def test_a_numpy_model_is_not_probed():
    class Config:
        probe_every, max_iters, block_size = 10, 20, 8

    notes = []
    assert make_probe(None, Config, None, object(), None, 0, notes.append) is None
    assert "not probed" in notes[0]
