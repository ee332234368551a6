"""Benchmark: what the recipe costs on cpu_small (issue 12's budgets).

    python bench/recipe.py [--steps 500] [--rounds 2]

1. probes: the same cpu_small run on tiny shakespeare with --probe-every 0 and 100, alternated
   (A B A B) so both see the same machine; added time in percent, and probes.jsonl bytes scaled to
   5000 steps;
2. doctor: the full check list and --quick on a cpu_small config before training, wall time of the
   command in this process (imports already warm).
One JSON line per figure. Needs tiny shakespeare (NANOSTACK_DATA_DIR, or it downloads once).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

from nanostack.cli import main as cli
from nanostack.train import train


def timed_run(out: Path, steps: int, probe_every: int) -> float:
    settings = {"data": "shakespeare", "max_iters": steps, "lr_decay_iters": steps, "probe_every": probe_every,
                "eval_interval": steps, "ckpt_interval": steps}
    t0 = time.perf_counter()
    train(out, settings, preset="cpu_small", force=True, log=lambda *a: None)
    return time.perf_counter() - t0


def timed_doctor(*flags) -> tuple:
    t0 = time.perf_counter()
    code = cli(["doctor", "--data", "shakespeare", "--config", "cpu_small", "--no-plots", *flags])
    return time.perf_counter() - t0, code


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500, help="training steps per run (default: 500)")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds of probes off / on (default: 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        timed_run(root / "warm", 20, 0)  # shards cached, torch warmed up
        times = {0: [], 100: []}
        for _ in range(args.rounds):
            for every in (0, 100):
                times[every].append(timed_run(root / f"p{every}", args.steps, every))
        off, on = min(times[0]), min(times[100])
        size = (root / "p100" / "probes.jsonl").stat().st_size
        print(json.dumps({"case": "probes", "steps": args.steps, "s_off": [round(t, 2) for t in times[0]],
                          "s_on": [round(t, 2) for t in times[100]], "added_pct": round(100 * (on / off - 1), 2),
                          "probes_jsonl_bytes_per_5000_steps": int(size * 5000 / args.steps)}), flush=True)
        for name, flags in (("doctor_full", ()), ("doctor_quick", ("--quick",))):
            seconds, code = timed_doctor(*flags)
            print(json.dumps({"case": name, "s": round(seconds, 2), "exit": code}), flush=True)


if __name__ == "__main__":
    main()
