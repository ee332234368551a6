"""Benchmark: train the cpu_small preset on tiny shakespeare; print ms/step, val loss and wall time.

val_loss is the trainer's estimate (eval_iters=20 random batches, as nanoGPT's figure was taken);
val_loss_full is the exact loss over the whole val split, the stable figure to compare by.

    python bench/train_cpu_small.py [--max-iters 2000] [--nanogpt DIR] [--rounds 1]

With --nanogpt pointing at a nanoGPT checkout whose data/shakespeare_char has been prepared,
nanoGPT's train.py runs with the same settings (its README's CPU command) alternately with
nanostack, so both see the same machine noise. One JSON line per run.
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time

from nanostack.loss import split_loss
from nanostack.run import open_run
from nanostack.train import train

NANOGPT_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
                "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
                "--n_embd=128", "--dropout=0.0"]


def run_nanostack(max_iters: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        s = train(f"{out}/run", {"data": "shakespeare", "max_iters": max_iters, "lr_decay_iters": max_iters,
                                 "seed": seed}, preset="cpu_small", log=lambda *a: None)
        run = open_run(f"{out}/run")
        model = run.load_model("latest")
        full = split_loss(model, run.dataset(), "val", model.config.block_size)
    return {"impl": "nanostack", "max_iters": max_iters, "seed": seed,
            "ms_per_step_median": round(s["ms_per_step_median"], 2), "val_loss": round(s["val_loss"], 4),
            "val_loss_full": round(full, 4), "total_s": round(s["elapsed_s"], 1)}


def run_nanogpt(path: str, max_iters: int) -> dict:
    t0 = time.time()
    with tempfile.TemporaryDirectory() as out:
        log = subprocess.run([sys.executable, "train.py", *NANOGPT_ARGS, f"--max_iters={max_iters}",
                              f"--lr_decay_iters={max_iters}", f"--out_dir={out}"],
                             cwd=path, capture_output=True, text=True, check=True).stdout
    times = [float(t) for t in re.findall(r"time ([\d.]+)ms", log)][1:]  # the first step includes start-up
    val = re.findall(r"val loss ([\d.]+)", log)
    return {"impl": "nanogpt", "max_iters": max_iters, "ms_per_step_median": round(statistics.median(times), 2),
            "val_loss": float(val[-1]), "total_s": round(time.time() - t0, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-iters", type=int, default=2000)
    parser.add_argument("--nanogpt", help="path to a nanoGPT checkout to run alongside")
    parser.add_argument("--rounds", type=int, default=1, help="repeat; round i uses seed 1337 + i for nanostack")
    args = parser.parse_args()
    for i in range(args.rounds):
        print(json.dumps(run_nanostack(args.max_iters, 1337 + i)), flush=True)
        if args.nanogpt:
            print(json.dumps(run_nanogpt(args.nanogpt, args.max_iters)), flush=True)


if __name__ == "__main__":
    main()
