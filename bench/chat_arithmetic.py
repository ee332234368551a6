"""Benchmark: a small model learns arithmetic word problems with a calculator, from scratch, on the CPU.

Writes the arithmetic task's training conversations, trains the chat_arithmetic preset on them, then
scores the run on the shipped held-out task (500 problems) twice: with the calculator, and with tools
disabled (the same model must then write the calculator's output itself). One JSON line per step:

    python bench/chat_arithmetic.py [--count 60000] [--max-iters N] [--limit 500] [--burst 0]

--burst N only times N training steps (after 5 warm-up steps) and prints steps/s: a short measurement
to repeat on a shared machine. The 10-minute target is for two quiet CPU cores.
"""
import argparse
import json
import os
import tempfile
import time

import torch

from nanostack.chat.evals import evaluate_task
from nanostack.chat.task_files import write_task
from nanostack.chat.tools import parse_tools_option
from nanostack.train import train

PRESET = "chat_arithmetic"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=60000, help="training conversations (default: 60000)")
    parser.add_argument("--max-iters", type=int, default=None, help="override the preset's steps")
    parser.add_argument("--limit", type=int, default=500, help="held-out problems to score (default: all 500)")
    parser.add_argument("--burst", type=int, default=0, help="only time this many steps")
    parser.add_argument("--out", help="keep the run in this folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = f"{tmp}/train.jsonl"
        write_task("arithmetic", data, split="train", count=args.count)
        out = args.out or f"{tmp}/run"
        overrides = {"data": data, "device": "cpu"}
        if args.burst:
            burst(out, overrides, args.burst)
            return
        if args.max_iters:
            overrides.update(max_iters=args.max_iters, lr_decay_iters=args.max_iters)
        t0 = time.time()
        summary = train(out, overrides, preset=PRESET, force=True, log=lambda *a: None)
        print(json.dumps({"case": "train", "preset": PRESET, "conversations": args.count, "steps": summary["step"],
                          "ms_per_step_median": round(summary["ms_per_step_median"], 1),
                          "train_s": round(summary["elapsed_s"], 1), "wall_s": round(time.time() - t0, 1),
                          "val_loss": round(summary["val_loss"], 5), "torch_threads": torch.get_num_threads(),
                          "load_average_1min": os.getloadavg()[0]}), flush=True)
        for tools in ("calculator", "none"):
            r = evaluate_task(out, "arithmetic", which="latest", tools=parse_tools_option(tools), limit=args.limit)
            print(json.dumps({"case": "eval", "task": "arithmetic", "tools": tools, "items": r["items"],
                              "accuracy": round(r["accuracy"], 4), "interval": [round(v, 4) for v in r["interval"]],
                              "eval_s": round(r["seconds"], 1)}), flush=True)


def burst(out, overrides, steps):
    """Steps per second over `steps` steps (the first 5 are not counted)."""
    summary = train(out, {**overrides, "max_iters": steps + 5, "eval_interval": 10 ** 6, "ckpt_interval": 10 ** 6,
                          "log_interval": 1}, preset=PRESET, force=True, log=lambda *a: None)
    from nanostack.run import open_run  # noqa: PLC0415

    times = [r["ms_per_step"] for r in open_run(out).metrics() if r.get("kind") == "train"][5:]
    times.sort()
    print(json.dumps({"case": "burst", "preset": PRESET, "steps": len(times),
                      "ms_per_step_median": round(times[len(times) // 2], 1),
                      "steps_per_s": round(1000 * len(times) / sum(times), 2),
                      "wall_s": round(summary["elapsed_s"], 1)}), flush=True)


if __name__ == "__main__":
    main()
