"""Run the nanostack CLI as a torchrun worker, watched: a rank other than 0 that tries to write into
the run folder (open for writing, mkdir, rename, remove, lock) fails at once, naming the file; with
--kill-after=STEP, rank 0 is SIGKILLed right after writing the latest checkpoint of step STEP (a
distributed run killed mid-way; torchrun then ends the other ranks). Lives in tests/: nanostack
itself has no fault hooks.

    torchrun --standalone --nproc_per_node=2 tests/dist/driver.py [--kill-after=STEP] train --out RUN ...
"""
import os
import signal
import sys
from pathlib import Path

import nanostack.train.trainer as trainer
from nanostack.cli import main

OPTIONS = [a for a in sys.argv[1:] if a.startswith("--kill-after=")]
ARGS = [a for a in sys.argv[1:] if a not in OPTIONS]
RANK = int(os.environ.get("RANK", "0"))
RUN = Path(ARGS[ARGS.index("--out") + 1]).resolve()
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
CHANGES = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree", "os.symlink",
           "os.link", "os.chmod", "fcntl.flock"}


def in_run(path) -> bool:
    try:
        return Path(os.fsdecode(path)).resolve().is_relative_to(RUN)
    except (TypeError, ValueError):
        return False


def watch(event, args):
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[:3]
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
        if writing and in_run(path):
            raise RuntimeError(f"rank {RANK} opened {path} for writing")
    elif event in CHANGES and args and (event == "fcntl.flock" or in_run(args[0])):
        raise RuntimeError(f"rank {RANK} called {event}{args}")


if RANK != 0:
    sys.addaudithook(watch)

if OPTIONS:
    kill_after = int(OPTIONS[0].split("=")[1])
    save_latest = trainer.save_latest

    def save_then_die(run, model, optimizer, engine, streams, step, best_val):
        save_latest(run, model, optimizer, engine, streams, step, best_val)
        if step >= kill_after and engine.ranks.main:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer.save_latest = save_then_die

sys.exit(main(ARGS))
