"""Nothing lost, ever: faults a real user meets, injected one at a time. For each: the exit code, no
traceback, and every file that was good before is still good after.

Kills (SIGKILL) land at every kind of write of a run, not only between steps; a full disk is a real
tmpfs where the machine allows mounting one, and ENOSPC at each kind of write everywhere; a read-only
folder is a run owned by root that another user resumes; two processes share a run folder and a cache
key; every numeric setting gets nan, inf, -1 and 0; run files are damaged one at a time.
"""
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from testkit import TINY, flags, nanostack_cmd, run_cli
from nanostack.run.config import FIELDS

DRIVER = Path(__file__).with_name("driver.py")
SMALL = {**TINY, "max_iters": 6, "eval_interval": 3, "log_interval": 2, "ckpt_interval": 2, "dropout": 0.1}


# one torch thread in every process of these tests: the kill sweep runs two processes at a time, and
# runs compared bit for bit must all use the same thread count
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def drive(mode, n, out, *args, env=None, count_file=None):
    count_file = count_file or str(Path(out).parent / f"count-{Path(out).name}.txt")
    return subprocess.run([sys.executable, str(DRIVER), mode, str(n), count_file, "--", *map(str, args)],
                          capture_output=True, text=True, timeout=180, env=env or ONE_THREAD)


def nanostack(*args, env=None, timeout=180):
    return subprocess.run(nanostack_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=env or ONE_THREAD)


def assert_one_line(done, *needles):
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def snapshot(folder: Path) -> dict:
    """sha256 of every file below folder (but the lock, which holds the last trainer's process id)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "run.lock"}


def good_checkpoints(run: Path) -> dict:
    """{which: step} of every checkpoint that loads completely (weights, state, optimizer for latest)."""
    from nanostack.run import RunFolder

    folder, found = RunFolder(run), {}
    for which in ("latest", "best"):
        path = folder.checkpoint(which)
        if path is None:
            continue
        load_file(str(path / "model.safetensors"))
        state = json.loads((path / "state.json").read_text())
        if which == "latest":
            torch.load(path / "optimizer.pt", weights_only=True)
        found[which] = state["step"]
    return found


def checkpoint_is_whole(run: Path, which: str) -> bool:
    path = run / which
    try:
        load_file(str(path / "model.safetensors"))
        int(json.loads((path / "state.json").read_text())["step"])
        if which == "latest":
            torch.load(path / "optimizer.pt", weights_only=True)
    except Exception:  # noqa: BLE001 (any way of being unreadable)
        return False
    return True


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a / "latest" / "model.safetensors")), load_file(str(b / "latest" / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted SMALL run, and the list of its write events in order."""
    root = tmp_path_factory.mktemp("reference")
    corpus = root / "corpus.txt"
    corpus.write_text(" ".join(["the quick brown fox jumps over the lazy dog"] * 400), encoding="utf-8")
    out = root / "run"
    prepared = nanostack("prepare", "--data", corpus)  # the shards are cached first, so every run of the tests
    assert prepared.returncode == 0, prepared.stderr  # makes the same writes in the same order as this one
    done = drive("count", 0, out, "train", "--out", out, "--data", corpus, *flags(SMALL),
                 count_file=str(root / "events.txt"))
    assert done.returncode == 0, done.stderr
    events = [line.split(" ", 1)[1] for line in (root / "events.txt").read_text().splitlines()]
    return {"corpus": corpus, "run": out, "events": events}


def kill_points(events) -> list:
    """Event numbers to kill at: the first occurrence of every (previous, this, next) kind of write. That is
    every state a crash can leave: before and after each write of a first checkpoint and of one that
    replaces an older one, between metrics lines and in the middle of one (51 events, 22 points here)."""
    first = {}
    for i, name in enumerate(events):
        context = (events[i - 1] if i else "start", name, events[i + 1] if i + 1 < len(events) else "end")
        first.setdefault(context, i + 1)
    return sorted(first.values())


@pytest.mark.slow
def test_sigkill_at_every_write_then_resume_equals_an_uninterrupted_run(reference, tmp_path):
    args = ["--data", reference["corpus"], *flags(SMALL)]

    def kill_and_resume(n):
        out = tmp_path / f"killed-{n}"
        killed = drive("kill", n, out, "train", "--out", out, *args, count_file=str(tmp_path / f"events-{n}.txt"))
        assert killed.returncode == -signal.SIGKILL, (n, reference["events"][n - 1], killed.stderr[-500:])
        good_checkpoints(out)  # whatever checkpoint is there loads whole
        again = nanostack("train", "--out", out, "--resume") if (out / "config.json").is_file() \
            else nanostack("train", "--out", out, *args)  # killed before the run existed: a retry starts it
        assert again.returncode == 0, (n, reference["events"][n - 1], again.stderr[-1000:])
        assert same_weights(reference["run"], out), (n, reference["events"][n - 1])
        steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert steps == sorted(steps), n  # a line cut by the kill is gone; nothing is logged twice

    with ThreadPoolExecutor(max_workers=2) as pool:  # each point is its own folder: two at a time
        for done in [pool.submit(kill_and_resume, n) for n in kill_points(reference["events"])]:
            done.result()


@pytest.mark.slow
def test_enospc_at_each_kind_of_write_is_one_line_and_loses_nothing(reference, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(reference["run"], base)
    (base / "run.lock").unlink(missing_ok=True)
    shutil.copytree(base, tmp_path / "probe")  # the same resume, counted, to know its writes in order
    count = drive("count", 0, tmp_path / "probe", "train", "--out", tmp_path / "probe", "--resume", "--max-iters", 12,
                  "--lr-decay-iters", 12, count_file=str(tmp_path / "events.txt"))
    assert count.returncode == 0, count.stderr
    events = [line.split(" ", 1)[1] for line in (tmp_path / "events.txt").read_text().splitlines()]
    first_of_kind = sorted({name: i for i, name in reversed(list(enumerate(events, 1)))}.values())
    for n in first_of_kind:
        out = tmp_path / f"full-{n}"
        shutil.copytree(base, out)
        before = snapshot(out)
        done = drive("enospc", n, out, "train", "--out", out, "--resume", "--max-iters", 12, "--lr-decay-iters", 12)
        assert_one_line(done, "No space left on device")
        assert good_checkpoints(out)["latest"] >= 6, n
        changed = {k for k in before if snapshot(out).get(k) != before[k]}
        assert changed <= {"metrics.jsonl", "config.json", "tokenizer.json", "latest/model.safetensors",
                           "latest/optimizer.pt", "latest/state.json", "best/model.safetensors",
                           "best/state.json"}, changed
        resumed = nanostack("train", "--out", out, "--resume", "--max-iters", 12, "--lr-decay-iters", 12)
        assert resumed.returncode == 0, (n, events[n - 1], resumed.stderr[-800:])  # once there is space again


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_a_really_full_disk(reference, tmp_path):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "4m"):
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN); the ENOSPC injection test covers each write")
    try:
        out = disk / "run"
        shutil.copytree(reference["run"], out)
        before = good_checkpoints(out)
        filler = disk / "filler"
        with open(filler, "wb") as f:  # fill the disk to the last byte
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        done = nanostack("train", "--out", out, "--resume", "--max-iters", 12, "--lr-decay-iters", 12)
        assert_one_line(done, "No space left on device")
        assert good_checkpoints(out) == before
        filler.unlink()
        done = nanostack("train", "--out", out, "--resume", "--max-iters", 12, "--lr-decay-iters", 12)
        assert done.returncode == 0, done.stderr
        assert good_checkpoints(out)["latest"] == 12
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_read_only_run_folder_and_a_cache_that_is_a_file(reference):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as another user (root ignores file permissions)")
    root = Path(tempfile.mkdtemp())
    try:
        os.chmod(root, 0o755)
        out = root / "run"
        shutil.copytree(reference["run"], out)
        for p in [out, *out.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        cache = root / "cache"
        cache.mkdir(mode=0o777)
        os.chmod(cache, 0o777)
        before = snapshot(out)
        env = {**os.environ, "NANOSTACK_CACHE_DIR": str(cache), "HOME": str(cache)}
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        done = subprocess.run([*as_nobody, *nanostack_cmd("train", "--out", out, "--resume", "--max-iters", 12)],
                              capture_output=True, text=True, timeout=180, env=env)
        assert_one_line(done, "Permission denied")
        assert snapshot(out) == before
        file_cache = root / "cache-file"
        file_cache.write_text("not a folder")
        done = nanostack("prepare", "--data", reference["corpus"], env={**os.environ,
                                                                         "NANOSTACK_CACHE_DIR": str(file_cache)})
        assert_one_line(done, str(file_cache))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_two_processes_on_one_run_folder(reference, tmp_path):
    out = tmp_path / "run"
    long = {**TINY, "max_iters": 100_000, "lr_decay_iters": 100_000, "eval_interval": 1000, "ckpt_interval": 1000}
    first = subprocess.Popen(nanostack_cmd("train", "--out", out, "--data", reference["corpus"], *flags(long)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "config.json").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second could start"
        for args in (["--resume"], ["--force", "--data", reference["corpus"], *flags(TINY)],
                     ["--data", reference["corpus"], *flags(TINY)]):
            second = nanostack("train", "--out", out, *args)
            if "--force" in args or "--resume" in args:
                assert_one_line(second, f"is in use by process {first.pid}")
            else:
                assert_one_line(second)  # refused: in use, or already holds a run
    finally:
        first.kill()
        first.wait()
    resumed = nanostack("train", "--out", out, "--resume", "--max-iters", 10)  # a killed run's lock blocks nothing
    assert resumed.returncode == 0, resumed.stderr


def test_two_processes_preparing_the_same_new_data(tmp_path):
    corpus = tmp_path / "big.txt"
    corpus.write_text("".join(chr(97 + (i * 7919) % 26) + ("\n" if i % 80 == 0 else "") for i in range(3_000_000)))
    for round_ in range(3):
        env = {**os.environ, "NANOSTACK_CACHE_DIR": str(tmp_path / f"cache{round_}")}
        procs = [subprocess.Popen(nanostack_cmd("prepare", "--data", corpus), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
        outs = [p.communicate(timeout=180) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        paths = {line for out, _ in outs for line in out.splitlines() if line.startswith("shards: ")}
        assert len(paths) == 1
        shards = Path(paths.pop().split(": ", 1)[1])
        assert sorted(p.name for p in shards.iterdir()) == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]
        assert not list(shards.parent.glob("*.tmp"))


NUMERIC = [name for name, f in FIELDS.items() if type(f.default) in (int, float)]


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_every_numeric_setting_is_checked_before_anything_is_written(capsys, tmp_path, value):
    for name in NUMERIC:
        out = tmp_path / f"run-{name}"
        code, _, err = run_cli(capsys, "train", "--out", out, "--data", tmp_path / "missing.txt",
                               f"--{name.replace('_', '-')}", value)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, (name, value, err)
        if value in ("nan", "inf") or (value == "-1" and name != "seed"):
            assert name in lines[0] or name.replace("_", "-") in lines[0], (name, value, lines[0])
        else:  # a valid value: the run got as far as the data
            assert "does not exist" in lines[0] or name in lines[0], (name, value, lines[0])
        assert not out.exists(), (name, value)


@pytest.fixture(scope="module")
def trained(reference, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    shutil.copytree(reference["run"], out)
    return out


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_every_numeric_sampling_option(capsys, trained, value):
    for option in ("--temperature", "--top-k", "--top-p", "--max-new-tokens", "--num-samples", "--seed"):
        code, _, err = run_cli(capsys, "sample", trained, option, value, "--max-new-tokens", 5) \
            if option != "--max-new-tokens" else run_cli(capsys, "sample", trained, option, value)
        assert code in (0, 2) and "Traceback" not in err, (option, value, err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1, err
        if value in ("nan", "inf") and option in ("--temperature", "--top-p"):
            assert code == 2, (option, value)


DAMAGE = {"config.json": b"{not json", "tokenizer.json": b'{"kind": "char"', "metrics.jsonl": b'{"step": 2, "ki',
          "latest/state.json": b"{}", "latest/model.safetensors": b"\x00" * 100,
          "latest/optimizer.pt": b"PK\x03\x04 not a zip", "best/model.safetensors": b"garbage"}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_run_files_one_at_a_time(reference, tmp_path, name):
    out = tmp_path / "run"
    shutil.copytree(reference["run"], out)
    (out / name).write_bytes(DAMAGE[name])
    before = snapshot(out)
    for args in (["sample", out, "--max-new-tokens", 5], ["eval", out],
                 ["train", "--out", out, "--resume", "--max-iters", 8, "--lr-decay-iters", 8]):
        done = nanostack(*args)
        assert "Traceback" not in done.stderr, (name, args, done.stderr[-1500:])
        if done.returncode != 0:
            assert_one_line(done)
            assert snapshot(out) == before, (name, args)  # a refused command changes nothing
    for which in {"latest", "best"} - {name.split("/")[0]}:  # the undamaged checkpoint is still whole
        assert checkpoint_is_whole(out, which), which


def test_a_nan_loss_keeps_the_last_good_checkpoint(reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference["run"], out)
    before = snapshot(out / "latest")
    done = nanostack("train", "--out", out, "--resume", "--max-iters", 12, "--lr-decay-iters", 12,
                     "--learning-rate", "1e30", "--min-lr", "1e29")
    assert_one_line(done, "training diverged")
    assert snapshot(out / "latest") == before
    assert math.isfinite(json.loads((out / "best" / "state.json").read_text())["val_loss"])
