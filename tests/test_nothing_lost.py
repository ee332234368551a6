"""The defects of the "Nothing lost, ever" issue, one test each (the fault-injection suite is in faults/)."""
import json
import os
import shutil
import stat

import pytest

from testkit import TINY, run_cli
from nanostack.errors import UserError
from nanostack.run import open_run
from nanostack.train import train

quiet = lambda *a, **k: None  # noqa: E731


@pytest.fixture
def run(corpus, tmp_path):
    out = tmp_path / "run"
    train(out, {**TINY, "data": str(corpus)}, log=quiet)
    return out


def test_force_removes_the_runs_own_files_and_nothing_else(run, corpus):
    mine = [run / "best_backup" / "model.safetensors", run / "latest-good" / "state.json", run / "metrics.jsonl.bak",
            run / "config.json.orig"]
    for path in mine:
        path.parent.mkdir(exist_ok=True)
        path.write_text("mine")
    train(run, {**TINY, "data": str(corpus), "max_iters": 10}, force=True, log=quiet)
    assert all(path.read_text() == "mine" for path in mine)
    assert json.loads((run / "latest" / "state.json").read_text())["step"] == 10


def test_resume_without_latest_is_refused_not_started_over(run):
    shutil.rmtree(run / "latest")
    best = (run / "best" / "model.safetensors").read_bytes()
    metrics = (run / "metrics.jsonl").read_text()
    with pytest.raises(UserError, match="latest/ checkpoint is missing, so it cannot be resumed"):
        train(run, {}, resume=True, log=quiet)
    assert (run / "best" / "model.safetensors").read_bytes() == best and (run / "metrics.jsonl").read_text() == metrics


def test_cutting_metrics_back_is_atomic(run, monkeypatch):
    before = (run / "metrics.jsonl").read_text()
    folder = open_run(run)

    def crash(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        folder.truncate_metrics(10)
    assert (run / "metrics.jsonl").read_text() == before
    assert not list(run.glob("*.tmp"))


def test_resume_and_force_together_are_refused(run):
    with pytest.raises(UserError, match="--resume and --force ask for opposite things"):
        train(run, {}, resume=True, force=True, log=quiet)


@pytest.mark.parametrize("flag, value", [("n_embd", 32), ("model", "gru"), ("block_size", 8), ("tokenizer", "bpe:300")])
def test_a_shape_setting_cannot_change_on_resume_and_the_error_says_which(run, flag, value):
    with pytest.raises(UserError, match=f"{flag.replace('_', '-')} cannot change on --resume"):
        train(run, {flag: value, "max_iters": 40}, resume=True, log=quiet)


def test_resuming_with_fewer_steps_changes_nothing(run):
    config = (run / "config.json").read_bytes()
    summary = train(run, {"max_iters": 10}, resume=True, log=quiet)
    assert summary["step"] == TINY["max_iters"] and (run / "config.json").read_bytes() == config


def test_a_relative_data_path_works_from_anywhere(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(corpus.parent)
    train(tmp_path / "rel", {**TINY, "data": corpus.name}, log=quiet)
    monkeypatch.chdir(tmp_path.parent)
    assert open_run(tmp_path / "rel").train_config().data == str(corpus.resolve())
    code, _, err = run_cli(capsys, "eval", tmp_path / "rel")
    assert code == 0, err
    train(tmp_path / "rel", {"max_iters": 40}, resume=True, log=quiet)


def test_byte_order_marks_skipped_files_and_non_utf8_names(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.txt").write_bytes("\ufeff".encode() + b"hello world, hello there. " * 200)
    (folder / "b.txt").write_bytes(b"the same again and again. " * 200)
    (folder / "c.txt").write_bytes(b"bytes \xff\xfe")
    (folder / "d.txt").write_bytes(b"more words for the val side. " * 30)
    os.close(os.open(bytes(folder) + b"/\xff\xfe.txt", os.O_CREAT | os.O_WRONLY))
    logs = []
    train(tmp_path / "run", {**TINY, "data": str(folder), "block_size": 8}, log=logs.append)
    assert "\ufeff" not in open_run(tmp_path / "run").tokenizer().chars
    note = [line for line in logs if "left out" in line]
    assert len(note) == 1 and "2 file(s)" in note[0] and "c.txt" in note[0]


def test_a_hand_edited_impossible_config_is_one_line(run, capsys):
    config = json.loads((run / "config.json").read_text())
    config["model"]["n_embd"] = -3
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "sample", run)
    assert code == 2 and "impossible model: n_embd must be a positive whole number" in err


@pytest.mark.parametrize("device", ["cuda:5", "tpu", "mps"])
def test_sampling_on_a_device_that_is_not_there(run, capsys, device):
    code, _, err = run_cli(capsys, "sample", run, "--device", device, "--max-new-tokens", 3)
    assert code == 2 and len(err.strip().splitlines()) == 1 and device.split(":")[0] in err


def test_eval_after_the_data_gained_a_character(run, corpus, capsys):
    corpus.write_text(corpus.read_text() + " Ω")
    code, _, err = run_cli(capsys, "eval", run)
    assert code == 2 and "has changed since this run started" in err


def test_metrics_measure_the_gradient_norm_when_clipping_is_off(corpus, tmp_path):
    train(tmp_path / "run", {**TINY, "data": str(corpus), "grad_clip": 0.0}, log=quiet)
    norms = [r["grad_norm"] for r in open_run(tmp_path / "run").metrics() if r["kind"] == "train"]
    assert norms and all(n > 0 for n in norms)


def test_weights_are_written_with_the_same_mode_as_every_other_file(run):
    mode = stat.S_IMODE((run / "latest" / "model.safetensors").stat().st_mode)
    assert mode == stat.S_IMODE((run / "latest" / "state.json").stat().st_mode) == stat.S_IMODE(
        (run / "config.json").stat().st_mode)


def test_a_bpe_vocabulary_larger_than_the_data_supports_says_so(capsys, tmp_path):
    (tmp_path / "tiny.txt").write_text("abab abab " * 50)
    code, out, _ = run_cli(capsys, "tokenizer", "train", "--data", tmp_path / "tiny.txt", "--vocab-size", 1000,
                           "--out", tmp_path / "t.json")
    assert code == 0 and "note: the text supports only" in out and "not 1,000" in out


def test_logs_without_a_terminal_and_the_summary(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("nanostack.train.trainer.LOG_EVERY_S", 0.0)
    code, out, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--data", corpus,
                             *[a for k, v in TINY.items() for a in (f"--{k.replace('_', '-')}", str(v))])
    assert code == 0
    progress = [line for line in out.splitlines() + err.splitlines() if line.startswith("step ") and "/30" in line]
    assert len(progress) >= 3  # a line between evaluations, though no terminal is attached
    assert "best val loss" in out and "s; run folder" in out
    assert "4.0K parameters" in out + err  # not "0.00M"


def test_version_and_help(capsys):
    from nanostack import __version__
    from nanostack.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "(default: auto, as train)" in capsys.readouterr().out
