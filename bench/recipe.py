"""Benchmark: what the recipe costs on cpu_small (issue 12's budgets).

    python bench/recipe.py [--steps 1000] [--rounds 2]

1. probes: the same cpu_small run on tiny shakespeare with --probe-every 0 and 100, alternated
   (A B A B) so both see the same machine; added time in percent, and the size probes.jsonl reaches
   in a 5000-step cpu_small run (its probe records every 100 steps, its evaluation records every
   eval_interval, and the attention maps once, each at the size measured here);
2. doctor: the full check list and --quick on a cpu_small config before training, wall time of the
   command in this process (imports already warm).
One JSON line per figure. Needs tiny shakespeare (NANOSTACK_DATA_DIR, or it downloads once).
"""
import argparse
import json
import tomllib
import tempfile
import time
from pathlib import Path

from nanostack.cli import main as cli
from nanostack.run.config import PRESETS_DIR
from nanostack.train import train


def timed_run(out: Path, steps: int, probe_every: int) -> float:
    settings = {"data": "shakespeare", "max_iters": steps, "lr_decay_iters": steps, "probe_every": probe_every,
                "eval_interval": steps, "ckpt_interval": steps}
    t0 = time.perf_counter()
    train(out, settings, preset="cpu_small", force=True, log=lambda *a: None)
    return time.perf_counter() - t0


def bytes_per_5000_steps(path: Path, probe_every: int) -> int:
    """probes.jsonl's size after 5000 steps of cpu_small, from the sizes of the records of this run."""
    eval_interval = tomllib.loads((PRESETS_DIR / "cpu_small.toml").read_text())["eval_interval"]
    sizes = {"probe": [], "eval": [], "attention": [], "window": []}
    for line in path.read_bytes().splitlines(keepends=True):
        record = json.loads(line)
        kind = "attention" if "attention" in record else record["kind"]
        sizes[kind].append(len(line))
    mean = {k: sum(v) / len(v) if v else 0 for k, v in sizes.items()}
    return int(mean["window"] + mean["probe"] * (5000 // probe_every + 1) + mean["eval"] * (5000 // eval_interval)
               + mean["attention"])


def timed_doctor(*flags) -> tuple:
    t0 = time.perf_counter()
    code = cli(["doctor", "--data", "shakespeare", "--config", "cpu_small", "--no-plots", *flags])
    return time.perf_counter() - t0, code


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="training steps per run (default: 1000)")
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
        size = bytes_per_5000_steps(root / "p100" / "probes.jsonl", 100)
        print(json.dumps({"case": "probes", "steps": args.steps, "s_off": [round(t, 2) for t in times[0]],
                          "s_on": [round(t, 2) for t in times[100]], "added_pct": round(100 * (on / off - 1), 2),
                          "probes_jsonl_bytes_per_5000_steps": size}), flush=True)
        for name, flags in (("doctor_full", ()), ("doctor_quick", ("--quick",))):
            seconds, code = timed_doctor(*flags)
            print(json.dumps({"case": name, "s": round(seconds, 2), "exit": code}), flush=True)


if __name__ == "__main__":
    main()
