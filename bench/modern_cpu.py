"""Benchmark: wall time to reach val loss 1.886 on tiny shakespeare, cpu_small-sized, on the CPU.

    python bench/modern_cpu.py [--nanogpt DIR] [--rounds 1] [--target 1.886] [--presets cpu_modern,cpu_small]

Each round runs, one after another so they share the machine's noise and never its cores:
  - nanostack's presets (cpu_modern: rotary, RMSNorm, QK-norm, ReLU², untied zero-initialised head,
    Muon; cpu_small: GPT-2's architecture with AdamW), each as `nanostack train --stop-at-val TARGET`:
    at every evaluation the loss over the whole val split is computed, and the run stops at the
    first one at or below TARGET. Its time is the whole process, launch to exit.
  - with --nanogpt DIR (a nanoGPT checkout whose data/shakespeare_char is prepared), nanoGPT's own
    train.py with its README's CPU settings for this size (bench/train_cpu_small.py; 2000 steps,
    which is where its val figure 1.886 comes from). Its output lines are stamped as they arrive;
    its time to TARGET is launch to the first "val loss" line at or below TARGET (its estimate:
    20 random batches), or to exit if none is. Its final checkpoint is also scored over the whole
    val split with nanostack's evaluator (the two prepare identical val tokens), as a cross-check.

One JSON line per run, then per round one line with the ratios (nanostack time / nanoGPT time).
Each line carries the load average before the run and the process's CPU time / wall time: on a
shared machine a ratio well below the thread count means another job took the cores.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from nanostack.data import open_dataset
from nanostack.loss import split_loss
from nanostack.models import GPT, GPTConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_cpu_small import NANOGPT_ARGS  # noqa: E402  nanoGPT's settings for this size, shared with that bench


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_lines(cmd, cwd=None):
    """Run cmd; return (its output lines, each with seconds since launch, wall seconds, CPU seconds)."""
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = [(time.perf_counter() - t0, line.rstrip("\n")) for line in proc.stdout]
    if proc.wait() != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n" + "\n".join(line for _, line in lines[-20:]))
    return lines, time.perf_counter() - t0, children_cpu_s() - cpu0


def run_nanostack(preset: str, target: float, seed: int, max_iters) -> dict:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as out:
        extra = ["--max-iters", str(max_iters), "--lr-decay-iters", str(max_iters)] if max_iters else []
        _, wall, cpu = timed_lines([sys.executable, "-m", "nanostack", "train", "--config", preset,
                                    "--data", "shakespeare", "--out", f"{out}/run", "--stop-at-val", str(target),
                                    "--seed", str(seed), *extra])
        records = [json.loads(line) for line in Path(f"{out}/run/metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    steps = [r["ms_per_step"] for r in records if r["kind"] == "train"]
    return {"impl": "nanostack", "preset": preset, "seed": seed, "reached": evals[-1]["val_loss_full"] <= target,
            "step": evals[-1]["step"], "val_loss_full": round(evals[-1]["val_loss_full"], 4),
            "seconds_to_target": round(wall, 1), "ms_per_step_median": round(sorted(steps)[len(steps) // 2], 2),
            "cpu_per_wall": round(cpu / wall, 2), "load_before": round(load, 2)}


def run_nanogpt(path: str, target: float, max_iters: int) -> dict:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as out:
        lines, wall, cpu = timed_lines([sys.executable, "-u", "train.py", *NANOGPT_ARGS, f"--max_iters={max_iters}",
                                        f"--lr_decay_iters={max_iters}", f"--out_dir={out}"], cwd=path)
        full = score_nanogpt_checkpoint(Path(out) / "ckpt.pt")
    evals = [(t, int(line.split()[1].rstrip(":")), float(line.rsplit("val loss", 1)[1]))
             for t, line in lines if "val loss" in line]
    reached = [(t, step, val) for t, step, val in evals if val <= target]
    t_target, step, val = reached[0] if reached else (wall, *evals[-1][1:])
    times = sorted(float(line.split("time ")[1].split("ms")[0]) for _, line in lines if line.startswith("iter "))
    return {"impl": "nanogpt", "reached": bool(reached), "step": step, "val_loss": val,
            "val_loss_full_of_best_ckpt": round(full, 4), "seconds_to_target": round(t_target, 1),
            "seconds_total": round(wall, 1), "ms_per_step_median": round(times[len(times) // 2], 2),
            "cpu_per_wall": round(cpu / wall, 2), "load_before": round(load, 2)}


def score_nanogpt_checkpoint(path: Path) -> float:
    """nanoGPT's saved model (its best val estimate) scored over the whole val split by nanostack."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    args = ckpt["model_args"]
    model = GPT(GPTConfig(vocab_size=args["vocab_size"], block_size=args["block_size"], n_layer=args["n_layer"],
                          n_head=args["n_head"], n_embd=args["n_embd"], bias=args["bias"]))
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state, strict=False)  # lm_head.weight arrives through its tied twin
    assert model.lm_head.weight is model.transformer.wte.weight
    return split_loss(model, open_dataset("shakespeare", log=lambda *a: None), "val", args["block_size"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", help="path to a nanoGPT checkout (data/shakespeare_char prepared)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat; round i uses seed 1337 + i for nanostack")
    parser.add_argument("--target", type=float, default=1.886, help="val loss to reach (nanoGPT's at 2000 steps)")
    parser.add_argument("--presets", default="cpu_modern,cpu_small", help="nanostack presets to run")
    parser.add_argument("--nanogpt-iters", type=int, default=2000)
    parser.add_argument("--max-iters", type=int, help="override the presets' max_iters (and lr_decay_iters)")
    args = parser.parse_args()
    open_dataset("shakespeare", log=lambda *a: None)  # tokenized and cached once, outside the timings
    for i in range(args.rounds):
        results = {}
        for preset in args.presets.split(","):
            results[preset] = run_nanostack(preset, args.target, 1337 + i, args.max_iters)
            print(json.dumps(results[preset]), flush=True)
        if args.nanogpt:
            ref = run_nanogpt(args.nanogpt, args.target, args.nanogpt_iters)
            print(json.dumps(ref), flush=True)
            print(json.dumps({"round": i, "target": args.target, **{
                f"{name}_vs_nanogpt": round(r["seconds_to_target"] / ref["seconds_to_target"], 3)
                for name, r in results.items()}}), flush=True)


if __name__ == "__main__":
    main()
