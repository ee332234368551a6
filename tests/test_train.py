import json
import shutil
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from testkit import TINY, flags, nanostack_cmd, run_nanostack
from nanostack.errors import UserError
from nanostack.train import train

# big enough that a run lasts a few seconds, so a kill lands in the middle of it
RESUMABLE = {**TINY, "n_layer": 2, "n_embd": 48, "block_size": 32, "batch_size": 8, "max_iters": 200,
             "lr_decay_iters": 200, "ckpt_interval": 40, "eval_interval": 50, "dropout": 0.1}


def weights(run_dir, which="latest"):
    return load_file(str(run_dir / which / "model.safetensors"))


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_run_folder_holds_everything(corpus, tmp_path):
    out = tmp_path / "run"
    summary = train(out, {**TINY, "data": str(corpus)}, log=lambda *a: None)
    assert summary["step"] == 30
    assert {p.name for p in out.iterdir()} == {"config.json", "tokenizer.json", "metrics.jsonl", "probes.jsonl",
                                               "latest", "best", "run.lock"}  # probes: --probe-every 100 by default
    assert {p.name for p in (out / "latest").iterdir()} == {"model.safetensors", "optimizer.pt", "state.json"}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [10, 20, 30]
    assert [r["step"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20, 25, 30]
    evals = [r["val_loss"] for r in records if r["kind"] == "eval"]
    assert evals[-1] < evals[0]  # it learns
    state = json.loads((out / "best" / "state.json").read_text())
    assert state["val_loss"] == min(evals)
    config = json.loads((out / "config.json").read_text())
    assert config["data_hash"] and config["model"]["vocab_size"] == len(set(corpus.read_text()))
    opt = torch.load(out / "latest" / "optimizer.pt", weights_only=True)
    assert opt["state"]  # real optimizer moments, loadable without pickle code


def test_resume_after_a_clean_stop_extends_the_run(corpus, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    quiet = lambda *a: None
    train(straight, {**TINY, "data": str(corpus), "max_iters": 30}, log=quiet)
    train(split, {**TINY, "data": str(corpus), "max_iters": 20}, log=quiet)
    train(split, {"max_iters": 30}, resume=True, log=quiet)
    assert_same_weights(straight, split)
    steps = [json.loads(line)["step"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) + 3  # eval and train records share a step


@pytest.mark.parametrize("kill_after", ["config.json", "latest/state.json"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(corpus, tmp_path, kill_after):
    args = flags({**RESUMABLE, "data": corpus})
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run_nanostack("train", "--out", straight, *args)
    assert done.returncode == 0, done.stderr

    proc = subprocess.Popen(nanostack_cmd("train", "--out", killed, *args),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (killed / kill_after).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"

    resumed = run_nanostack("train", "--out", killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(straight, killed)


def test_ctrl_c_saves_and_resume_finishes_identically(corpus, tmp_path):
    args = flags({**RESUMABLE, "data": corpus, "ckpt_interval": 1000})  # only Ctrl-C writes a mid-run checkpoint
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert run_nanostack("train", "--out", straight, *args).returncode == 0
    proc = subprocess.Popen(nanostack_cmd("train", "--out", stopped, *args),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (stopped / "metrics.jsonl").exists() or not (stopped / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline, "the run ended before it logged a step"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    step = json.loads((stopped / "latest" / "state.json").read_text())["step"]
    assert 0 < step < RESUMABLE["max_iters"]
    assert run_nanostack("train", "--out", stopped, "--resume").returncode == 0
    assert_same_weights(straight, stopped)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    train(out, {**TINY, "data": str(corpus), "max_iters": 20}, log=lambda *a: None)
    good = (out / "latest" / "model.safetensors").read_bytes()
    with pytest.raises(UserError, match=r"loss became nan at step (2[1-9]|3\d); the last good checkpoint \(step 20\)"):
        train(out, {"max_iters": 40, "learning_rate": 1e6, "grad_clip": 0.0}, resume=True, log=lambda *a: None)
    assert (out / "latest" / "model.safetensors").read_bytes() == good


def test_existing_run_is_not_clobbered(corpus, tmp_path):
    out = tmp_path / "run"
    train(out, {**TINY, "data": str(corpus)}, log=lambda *a: None)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match="already holds a run.*--resume.*--force"):
        train(out, {**TINY, "data": str(corpus)}, log=lambda *a: None)
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    train(out, {**TINY, "data": str(corpus), "max_iters": 10}, force=True, log=lambda *a: None)
    assert json.loads((out / "latest" / "state.json").read_text())["step"] == 10


def test_resume_refuses_changed_data(corpus, tmp_path):
    out = tmp_path / "run"
    train(out, {**TINY, "data": str(corpus), "max_iters": 10}, log=lambda *a: None)
    corpus.write_text(corpus.read_text() + " and more")
    with pytest.raises(UserError, match="has changed since this run started"):
        train(out, {"max_iters": 20}, resume=True, log=lambda *a: None)


def test_interrupted_swap_still_finds_a_checkpoint(corpus, tmp_path):
    """A crash between the two renames of a checkpoint swap leaves only latest.old: resume uses it."""
    out = tmp_path / "run"
    train(out, {**TINY, "data": str(corpus), "max_iters": 20}, log=lambda *a: None)
    shutil.move(out / "latest", out / "latest.old")
    summary = train(out, {"max_iters": 30}, resume=True, log=lambda *a: None)
    assert summary["step"] == 30 and (out / "latest").is_dir() and not (out / "latest.old").exists()


def test_resuming_a_finished_run_trains_nothing(corpus, tmp_path):
    out = tmp_path / "run"
    train(out, {**TINY, "data": str(corpus)}, log=lambda *a: None)
    before = (out / "latest" / "model.safetensors").read_bytes()
    logs = []
    summary = train(out, {}, resume=True, log=logs.append)
    assert summary["step"] == TINY["max_iters"] and summary["val_loss"] is None
    assert any("nothing to train" in line for line in logs)
    assert (out / "latest" / "model.safetensors").read_bytes() == before
