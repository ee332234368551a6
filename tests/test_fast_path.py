"""The GPU fast path, checked on the CPU: everything around what only a GPU runs.

A CUDA device gets bf16 autocast, torch.compile, the fused optimizer, the chunked cross-entropy
and MFU by default (checked here by the choices an Engine makes for a device named cuda); the
chunked cross-entropy equals F.cross_entropy in loss and gradients; a step reads the host once;
FLOPs per token are the spec's 854.65M for GPT-2 124M. What cannot run here (bf16 kernels on a GPU,
compiled CUDA graphs, a device's real peak) is bench/gpu_vs_nanogpt.py's.
"""
import json

import pytest
import torch
import torch.nn.functional as F

import nanostack.train.backends as backends
from testkit import TINY
from nanostack.models import ModelConfig, build
from nanostack.models.chunked_loss import linear_cross_entropy
from nanostack.train import train
from nanostack.train.backends import Engine
from nanostack.train.mfu import Utilisation, flops_per_token, matmul_params, peak_of_name

quiet = lambda *a: None  # noqa: E731


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-13)])
@pytest.mark.parametrize("chunk_rows", [1, 7, 0])  # 0: the default size (one chunk here)
def test_the_chunked_cross_entropy_equals_torchs(dtype, tol, chunk_rows):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(45, 24, dtype=dtype, generator=g, requires_grad=True)
    w = torch.randn(37, 24, dtype=dtype, generator=g, requires_grad=True)
    targets = torch.randint(37, (45,), generator=g)
    targets[[3, 10, 11]] = -1  # ignored, as in F.cross_entropy
    expected = F.cross_entropy(x @ w.t(), targets, ignore_index=-1)
    loss = linear_cross_entropy(x, w, targets, chunk_rows)
    assert loss.dtype == dtype and abs(loss.item() - expected.item()) < tol * abs(expected.item())  # relative
    for ours, theirs in zip(torch.autograd.grad(3 * loss, (x, w)), torch.autograd.grad(3 * expected, (x, w))):
        assert (ours - theirs).abs().max() < tol * theirs.abs().max()


def test_the_chunked_cross_entropy_under_bf16_autocast_gives_an_fp32_loss():
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(64, 32, generator=g), torch.randn(50, 32, generator=g, requires_grad=True)
    targets = torch.randint(50, (64,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(x, w, targets, 16)
        expected = F.cross_entropy((x @ w.t()).float(), targets)
    assert loss.dtype == torch.float32 and abs(loss.item() - expected.item()) < 0.05
    loss.backward()
    assert w.grad.dtype == torch.float32 and torch.isfinite(w.grad).all()


def test_the_gpt_gives_its_loss_without_logits():
    torch.manual_seed(0)
    model = build(ModelConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16)).double()
    x, y = torch.randint(40, (3, 16)), torch.randint(40, (3, 16))
    _, expected = model(x, y)
    logits, loss = model(x, y, loss_only=True)
    assert logits is None and abs(loss.item() - expected.item()) < 1e-13


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_a_cuda_device_gets_the_fast_path_by_default(monkeypatch):
    monkeypatch.setattr(backends, "resolve_device", lambda name: "cuda" if name in ("auto", "cuda") else name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    fast = Engine("torch", "auto", "auto", "auto")
    assert fast.compile and fast.loss_only and fast.autocast.fast_dtype == torch.bfloat16
    assert not Engine("torch", "auto", "auto", "false").compile
    cpu = Engine("torch", "cpu", "auto", "auto")
    assert not cpu.compile and not cpu.loss_only and not isinstance(cpu.autocast, torch.autocast)
    assert Engine("torch", "cpu", "auto", "true").compile and Engine("torch", "cpu", "auto", True).compile


def test_a_step_reads_the_host_once(corpus, tmp_path, monkeypatch):
    """Four micro-batches per step, clipping on: one read of the host per step (plus one per
    evaluation batch); before, every micro-batch's loss.item() was a read."""
    reads = []
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, _f=original, _n=name: reads.append(_n) or _f(self))
    settings = {**TINY, "data": str(corpus), "max_iters": 6, "eval_interval": 100, "eval_iters": 2,
                "log_interval": 100, "ckpt_interval": 100, "gradient_accumulation_steps": 4, "grad_clip": 1.0,
                "probe_every": 0}  # a probed step reads its statistics too (by design: one step in probe_every)
    train(tmp_path / "run", settings, log=quiet)
    assert reads.count("tolist") == 6  # the step's numbers, together
    assert reads.count("item") == 2 * 2 + 2  # the one evaluation: 2 batches of each split, and each mean


@pytest.mark.slow
def test_the_chunked_loss_traces_as_one_graph_for_torch_compile():
    """torch.compile (dynamo) takes the GPT's loss_only path, custom backward and all, under bf16
    autocast, as one graph; compiled (aot_eager: no C compiler needed) it gives the same loss and gradients."""
    import torch._dynamo as dynamo

    torch.manual_seed(0)
    model = build(ModelConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16))
    x, y = torch.randint(50, (2, 16)), torch.randint(50, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        explained = dynamo.explain(model)(x, y, loss_only=True)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    dynamo.reset()
    _, loss = torch.compile(model, backend="aot_eager")(x, y, loss_only=True)
    loss.backward()
    grad = model.lm_head.weight.grad.clone()
    model.zero_grad()
    _, expected = model(x, y)
    expected.backward()
    assert abs(loss.item() - expected.item()) < 1e-6 and (grad - model.lm_head.weight.grad).abs().max() < 1e-6
    dynamo.reset()


def test_mfu_follows_the_spec():
    with torch.device("meta"):  # GPT-2 124M's shapes, no memory
        gpt2 = build(ModelConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=False))
    assert matmul_params(gpt2) == 123_568_128
    assert flops_per_token(gpt2, 1024) == 854_654_976
    assert peak_of_name("NVIDIA H100 80GB HBM3") == peak_of_name("NVIDIA H200") == 989e12
    assert peak_of_name("NVIDIA H100 PCIe") == 756e12 and peak_of_name("NVIDIA A100-SXM4-40GB") == 312e12
    assert peak_of_name("a CPU") is None and Utilisation(gpt2, 1024, "cpu").mfu(1e6) is None
    half = 0.5 * 989e12 / 854_654_976  # tokens/s at 50% MFU on one H100
    assert Utilisation(gpt2, 1024, "cpu", peak=989e12).mfu(half) == pytest.approx(0.5)
    assert Utilisation(gpt2, 1024, "cpu", devices=2, peak=989e12).mfu(half) == pytest.approx(0.25)


def test_mfu_is_in_the_metrics_where_the_peak_is_known(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr("nanostack.train.mfu.peak_flops", lambda device: 1e12)
    train(tmp_path / "run", {**TINY, "data": str(corpus), "max_iters": 10}, log=quiet)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    mfus = [r["mfu"] for r in records if r["kind"] == "train"]
    assert len(mfus) == 2 and all(0 < m < 1 for m in mfus)


def test_compiling_on_a_cpu_without_a_cpp_compiler_trains_uncompiled_and_says_so(monkeypatch):
    monkeypatch.setattr(backends.shutil, "which", lambda name: None)
    engine = Engine("torch", "cpu", "auto", "true")
    assert not engine.compile and len(engine.notes) == 1 and "g++" in engine.notes[0]
    monkeypatch.setattr(backends.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert Engine("torch", "cpu", "auto", "true").compile and not Engine("torch", "cpu", "auto", "true").notes


@pytest.mark.slow
def test_a_compiled_cpu_run_trains_like_an_eager_one(tmp_path, corpus, monkeypatch):
    """names_10min compiles on the CPU (inductor builds C++): a tiny compiled run ends where the eager run of
    the same seed does, to float rounding (dropout 0: the compiled graph draws its own dropout masks)."""
    if not backends.cpp_compiler():
        pytest.skip("no C++ compiler here: torch.compile cannot build CPU code (the run would train eager)")
    logs, compiled_models = [], []
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compiled_models.append(model) or compile_(model, **kw))
    settings = {**TINY, "data": str(corpus), "max_iters": 20, "eval_interval": 20, "dropout": 0.0}
    compiled = train(str(tmp_path / "compiled"), {**settings, "compile": "true"}, log=logs.append)
    eager = train(str(tmp_path / "eager"), {**settings, "compile": "false"}, log=quiet)
    assert len(compiled_models) == 1 and not any("C++ compiler" in line for line in logs)
    assert abs(compiled["best_val_loss"] - eager["best_val_loss"]) < 1e-3
