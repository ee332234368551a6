"""Many processes, same result: torchrun with 2 ranks (gloo, CPU) against one process.

One process with gradient accumulation 4 is the reference (float64 weights, no dropout). The same
settings under `torchrun --nproc_per_node=2` (2 ranks x 2 micro-steps) give the same weights to 1e-10
with DDP and with FSDP2, the same evaluations, and the same files, written by rank 0 alone (the
launches go through tests/dist/driver.py, which fails any other rank that writes into the run
folder). A 2-rank run SIGKILLed after its step-4 checkpoint and resumed equals the uninterrupted
one bit for bit; resumed in one process (re-sharded), it equals the one-process run. Four torchrun
launches in all (~10 s each on an idle 2-core machine); the rest runs in this process.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from testkit import flags, run_cli
from nanostack.data import open_dataset
from nanostack.errors import UserError
from nanostack.run import RunFolder
from nanostack.train import train
from nanostack.train.distributed import FollowerRun, Ranks, check_parallel_settings
from nanostack.train.sampler import GlobalSampler

DRIVER = Path(__file__).resolve().parent / "dist" / "driver.py"
SETTINGS = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 4, "max_iters": 10,
            "eval_interval": 5, "eval_iters": 3, "log_interval": 1, "ckpt_interval": 2, "warmup_iters": 2,
            "lr_decay_iters": 10, "device": "cpu", "dtype": "float64", "gradient_accumulation_steps": 4,
            "probe_every": 0}  # probes run in one process only: the folders compared must not differ by them
quiet = lambda *a: None  # noqa: E731


def torchrun(*args, kill_after=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(DRIVER),
               *([f"--kill-after={kill_after}"] if kill_after else []), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def launch_train(out, corpus, **extra):
    done = torchrun("train", "--out", out, *flags({**SETTINGS, "data": corpus, **extra}))
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(run_dir, which="latest"):
    return load_file(str(Path(run_dir) / which / "model.safetensors"))


def max_weight_difference(a, b, which="latest") -> float:
    wa, wb = weights(a, which), weights(b, which)
    assert wa.keys() == wb.keys()
    assert all(w.dtype == torch.float64 for w in wa.values())
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def records(run_dir, kind):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    import random

    rng = random.Random(0)
    words = "the quick brown fox jumps over lazy dog and cat sat on mat with a hat\n".split(" ")
    path = tmp_path_factory.mktemp("dist") / "corpus.txt"
    path.write_text(" ".join(rng.choice(words) for _ in range(6000)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def single(data_file, tmp_path_factory):
    """The reference: one process, 4 micro-batches per step."""
    out = tmp_path_factory.mktemp("single") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's ranks run; a model this small is faster on one thread
    try:
        train(out, {**SETTINGS, "data": str(data_file)}, log=quiet)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def ddp(data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    return out, launch_train(out, data_file)


# ---- the sampler, in this process ---------------------------------------------------------------------
@pytest.mark.parametrize("examples", ["stream", "lines"])
def test_rank_slices_are_disjoint_and_cover_the_one_process_batches(data_file, examples):
    data = open_dataset(str(data_file), "char", examples, 0, log=quiet)
    block = data.block_size(16, log=quiet)
    world, micro_steps = 2, 3
    one = torch.Generator().manual_seed(5)
    reference = [data.batch("train", 4, block, one) for _ in range(world * micro_steps)]
    dealt = {}
    for rank in range(world):
        generator = torch.Generator().manual_seed(5)
        sampler = GlobalSampler(data, rank, world)
        for k in range(micro_steps):
            dealt[k * world + rank] = sampler.batch("train", 4, block, generator)
        assert torch.equal(generator.get_state(), one.get_state())  # every rank's stream stays in step
    assert sorted(dealt) == list(range(world * micro_steps))  # each micro-batch to exactly one rank
    for j, (x, y) in enumerate(reference):
        assert torch.equal(dealt[j][0], x) and torch.equal(dealt[j][1], y)
    alone, direct = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x, y = GlobalSampler(data).batch("train", 4, block, alone)  # one rank: exactly Dataset.batch
    assert torch.equal(x, data.batch("train", 4, block, direct)[0])


# ---- refusals, in this process ------------------------------------------------------------------------
def test_settings_several_ranks_cannot_run_are_refused():
    cfg = SimpleNamespace(backend="torch", gradient_accumulation_steps=3, parallel="ddp", model="transformer")
    with pytest.raises(UserError, match="3.*2 ranks do not divide it"):
        check_parallel_settings(cfg, 2)
    check_parallel_settings(cfg, 1)  # one process: anything goes
    check_parallel_settings(SimpleNamespace(**{**vars(cfg), "gradient_accumulation_steps": 4}), 2)
    with pytest.raises(UserError, match="Muon"):
        check_parallel_settings(SimpleNamespace(**{**vars(cfg), "gradient_accumulation_steps": 4, "parallel": "fsdp",
                                                   "optimizer": "muon"}), 2)
    with pytest.raises(UserError, match="numpy backend trains in one process"):
        check_parallel_settings(SimpleNamespace(**{**vars(cfg), "backend": "numpy"}), 2)
    ok = {**vars(cfg), "gradient_accumulation_steps": 4}
    with pytest.raises(UserError, match="--examples chat trains in one process"):  # ranks would skip batches apart
        check_parallel_settings(SimpleNamespace(**{**ok, "examples": "chat"}), 2)
    with pytest.raises(UserError, match="--init loads the base run's weights into a whole model"):
        check_parallel_settings(SimpleNamespace(**{**ok, "parallel": "fsdp", "init": "/runs/base"}), 2)
    check_parallel_settings(SimpleNamespace(**{**ok, "init": "/runs/base"}), 2)  # DDP holds whole models
    with pytest.raises(UserError, match="cannot be shared"):
        Ranks(0, 2).device("cuda:1")


class RankZeroOfTwo(Ranks):
    """Rank 0 of a 2-rank job whose other rank is not there (nothing is sent)."""

    def __init__(self):
        super().__init__(0, 2)

    def _broadcast(self, box):
        pass


def test_a_rank_count_that_does_not_divide_the_batch_is_one_line_exit_2(data_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Ranks, "join", classmethod(lambda cls: RankZeroOfTwo()))
    code, out, err = run_cli(capsys, "train", "--out", tmp_path / "run", *flags(
        {**SETTINGS, "data": data_file, "gradient_accumulation_steps": 3}))
    assert code == 2 and "2 ranks do not divide it" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_follower_reads_the_run_folder_and_writes_nothing(single, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(single, copy)
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*")}
    view = Ranks(1, 2).view(RunFolder(copy))
    assert isinstance(view, FollowerRun)
    assert view.train_config().n_layer == 2 and view.checkpoint("latest") is not None  # it reads
    with view.lock(), view.open_metrics() as metrics:
        metrics.write("x\n")
        view.clear()
        view.truncate_metrics(0)
        view.save_checkpoint("latest", None, {})
        view.write_config(None, None, None)
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*")} == before
    with pytest.raises(AttributeError, match="may read the run folder"):
        view.some_new_writer()


# ---- torchrun --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_equals_one_process_with_accumulation(single, ddp):
    out, done = ddp
    assert max_weight_difference(single, out) < 1e-10
    assert max_weight_difference(single, out, "best") < 1e-10
    # 2-rank evaluation (3 batches: 2 on rank 0, 1 on rank 1) equals one process's
    ours, theirs = records(out, "eval"), records(single, "eval")
    assert [r["step"] for r in ours] == [r["step"] for r in theirs] == [5, 10]
    for a, b in zip(ours, theirs):
        assert abs(a["val_loss"] - b["val_loss"]) < 1e-12 and abs(a["train_loss"] - b["train_loss"]) < 1e-12
    losses = [r[k] for r in records(out, "train") for k in ("loss", "grad_norm")]
    assert losses == pytest.approx([r[k] for r in records(single, "train") for k in ("loss", "grad_norm")], abs=1e-12)
    # rank 0 alone wrote (the driver fails any other rank that tries) and logged
    assert {p.name for p in out.iterdir()} == {p.name for p in single.iterdir()}
    said = done.stdout + done.stderr
    assert said.count("model: ") == 1 and said.count("train loss") == 2 and said.count("run at step 10") == 1
    state = json.loads((out / "latest" / "state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng"]["ranks"]) == 2
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in weights(out))  # plain: loads anywhere


@pytest.mark.slow
def test_fsdp_equals_one_process_with_accumulation(single, data_file, tmp_path):
    out = tmp_path / "run"
    launch_train(out, data_file, parallel="fsdp")
    assert max_weight_difference(single, out) < 1e-10
    ours, theirs = records(out, "eval"), records(single, "eval")
    assert [r[k] for r in ours for k in ("val_loss", "train_loss")] == \
        pytest.approx([r[k] for r in theirs for k in ("val_loss", "train_loss")], abs=1e-12)
    # the optimizer state is plain too: torch's own layout, the same moments
    a = torch.load(out / "latest" / "optimizer.pt", weights_only=True)
    b = torch.load(single / "latest" / "optimizer.pt", weights_only=True)
    assert [g["params"] for g in a["param_groups"]] == [g["params"] for g in b["param_groups"]]
    assert max((a["state"][i][k] - b["state"][i][k]).abs().max().item()
               for i in b["state"] for k in ("exp_avg", "exp_avg_sq")) < 1e-10


@pytest.mark.slow
def test_a_killed_distributed_run_resumes_exactly(single, ddp, data_file, tmp_path):
    out = tmp_path / "run"
    killed = torchrun("train", "--out", out, *flags({**SETTINGS, "data": data_file}), kill_after=4)
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr
    assert json.loads((out / "latest" / "state.json").read_text())["step"] == 4
    elsewhere = tmp_path / "one_process"
    shutil.copytree(out, elsewhere)
    done = torchrun("train", "--out", out, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert max_weight_difference(ddp[0], out) == 0.0  # bit for bit the uninterrupted 2-rank run
    assert [r["step"] for r in records(out, "train")] == list(range(1, 11))
    # the same checkpoint resumed in one process: re-sharded, it continues the same batches
    logged = []
    train(elsewhere, {}, resume=True, log=logged.append)
    assert any("trained on 2 rank(s) and resumes on 1" in line for line in logged)
    assert max_weight_difference(single, elsewhere) < 1e-10
