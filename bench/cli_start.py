"""Benchmark: how long whole CLI processes take, start-up included (issue 17, section 2).

    python bench/cli_start.py [--nanogpt DIR] [--tokens 2000] [--repeats 3]

Times, each the best of --repeats fresh processes, run alternately so all see the same machine:
`nanostack --help`, `nanostack tokenizer encode hello` (GPT-2's tokenizer, from NANOSTACK_DATA_DIR or
the download cache; `tokenizer_encode_first` after removing the cached merges, so they are recovered
from GPT-2's ranks file as on a first run), and `nanostack sample` of --tokens tokens from a cpu_small run (random-ish
weights: one training step; speed does not depend on them): by default (the numpy decoder, no torch)
and with --backend torch. With --nanogpt, nanoGPT's own sample.py
samples the same number of tokens from a cpu_small-shaped checkpoint in a temporary copy of its
folder (char vocabulary of the same 65 characters, one sample, CPU, float32, no compile). Then the
modules `nanostack --help` spends the most import time on (python -X importtime). One JSON line each.
"""
import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nanostack.io import cache_dir

NANOSTACK = [sys.executable, "-m", "nanostack"]


def seconds(command, cwd=None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed: {done.stderr.strip()[-500:]}")
    return elapsed


def nanogpt_folder(peer: Path, run: Path, root: Path) -> Path:
    """A copy of nanoGPT's sampling files with a cpu_small-shaped checkpoint and the run's characters."""
    sys.path.insert(0, str(peer))
    import torch
    from model import GPT, GPTConfig  # nanoGPT's model.py

    folder = root / "nanogpt"
    folder.mkdir()
    for name in ("sample.py", "model.py", "configurator.py"):
        shutil.copy(peer / name, folder / name)
    chars = json.loads((run / "tokenizer.json").read_text())["chars"]
    (folder / "data" / "chars").mkdir(parents=True)
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}
    (folder / "data" / "chars" / "meta.pkl").write_bytes(pickle.dumps(meta))
    args = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, bias=True, vocab_size=len(chars), dropout=0.0)
    model = GPT(GPTConfig(**args))
    (folder / "out").mkdir()
    torch.save({"model": model.state_dict(), "model_args": args, "config": {"dataset": "chars"}},
               folder / "out" / "ckpt.pt")
    return folder


def import_profile(top: int = 6) -> list:
    done = subprocess.run([*NANOSTACK[:1], "-X", "importtime", *NANOSTACK[1:], "--help"], capture_output=True,
                          text=True)
    rows = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m and len(m.group(3)) <= 3:  # top-level imports only (their cumulative time includes the rest)
            rows.append((int(m.group(2)), m.group(4)))
    return [{"module": name, "ms": round(us / 1000, 1)} for us, name in sorted(rows, reverse=True)[:top]]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", help="a nanoGPT checkout, to time its sample.py beside nanostack sample")
    parser.add_argument("--tokens", type=int, default=2000, help="tokens to sample (default: 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case; the best is kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = root / "run"
        subprocess.run([*NANOSTACK, "train", "--config", "cpu_small", "--data", "shakespeare", "--out", run,
                        "--max-iters", "1", "--eval-interval", "1", "--eval-iters", "1", "--probe-every", "0"],
                       check=True, capture_output=True)
        cases = {
            "help": (NANOSTACK + ["--help"], None),
            "tokenizer_encode": (NANOSTACK + ["tokenizer", "encode", "hello"], None),
            "tokenizer_encode_first": (NANOSTACK + ["tokenizer", "encode", "hello"], None),
            "sample": (NANOSTACK + ["sample", str(run), "--max-new-tokens", str(args.tokens)], None),
            "sample_torch": (NANOSTACK + ["sample", str(run), "--max-new-tokens", str(args.tokens), "--backend", "torch"],
                             None),
        }
        if args.nanogpt:
            folder = nanogpt_folder(Path(args.nanogpt).resolve(), run, root)
            cases["nanogpt_sample"] = ([sys.executable, "sample.py", "--out_dir=out", "--device=cpu", "--num_samples=1",
                                        f"--max_new_tokens={args.tokens}", "--compile=False", "--dtype=float32"],
                                       folder)
        times = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, (command, cwd) in cases.items():
                if name == "tokenizer_encode_first":  # GPT-2's merges recovered again (the run caches them anew)
                    shutil.rmtree(cache_dir() / "tiktoken_merges", ignore_errors=True)
                times[name].append(seconds(command, cwd))
        for name in cases:
            print(json.dumps({"case": name, "s_best": round(min(times[name]), 3),
                              "s_all": [round(t, 3) for t in times[name]]}), flush=True)
        if args.nanogpt:
            print(json.dumps({"case": "sample_vs_nanogpt",
                              "ratio": round(min(times["sample"]) / min(times["nanogpt_sample"]), 3)}), flush=True)
        print(json.dumps({"case": "help_imports", "top": import_profile(),
                          "threads": os.cpu_count()}), flush=True)


if __name__ == "__main__":
    main()
