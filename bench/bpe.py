"""Benchmark: BPE training and encoding, nanostack against rustbpe, HF tokenizers and tiktoken.

    python bench/bpe.py [--cases train_shakespeare,train_pystdlib,encode_pystdlib] [--peers]

Cases (each in a fresh process pinned to one core, so peak memory and speed are its own):
- train_shakespeare: vocab 4096, GPT-4 split pattern, on tiny shakespeare;
- train_pystdlib: vocab 32768 on the first 20 MB of the Python standard library's .py files;
- encode_pystdlib: encode those 20 MB with the 32768 tokenizer trained on them: fresh (an empty
  chunk cache) on one core, with encode_batch on every core (2 here) fresh and with a warm cache,
  then through to_tiktoken().
With --peers, rustbpe, HF tokenizers and tiktoken (those installed) run the same cases.
Prints one JSON line per measurement, with seconds, MB/s and the process's peak RSS.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from nanostack.tokenizer import BPETokenizer
from nanostack.tokenizer.patterns import GPT4

MB = 1_000_000


def shakespeare() -> list:
    from nanostack.data.sources import builtin_path

    return [builtin_path("shakespeare").read_text(encoding="utf-8")]


def pystdlib_20mb() -> list:
    """The stdlib's .py files in sorted path order, until 20 MB of UTF-8."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs, size = [], 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        docs.append(text)
        size += len(text.encode("utf-8"))
        if size >= 20 * MB:
            break
    return docs


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(**fields):
    print(json.dumps({**fields, "peak_rss_mb": round(peak_mb())}), flush=True)


def train_case(name, docs, vocab_size, impl):
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    t0 = time.perf_counter()
    if impl == "nanostack":
        BPETokenizer.train(docs, vocab_size, pattern="gpt4")
    elif impl == "rustbpe":
        import rustbpe

        rustbpe.Tokenizer().train_from_iterator(docs, vocab_size, pattern=GPT4)
    elif impl == "hf_tokenizers":
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(docs, trainer)
    report(case=name, impl=impl, vocab_size=vocab_size, mb=round(n_bytes / MB, 2),
           seconds=round(time.perf_counter() - t0, 3))


def encode_case(docs, impl):
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    trained = BPETokenizer.train(docs, 32768, pattern="gpt4")
    runs = {"nanostack": lambda tok: [tok.encode_ordinary(d) for d in docs],
            "nanostack_batch": lambda tok: tok.encode_batch(docs, allowed_special="none"),
            # the workers fork with the parent's chunk cache: a tokenizer that has seen such text before
            "nanostack_batch_warm_cache": lambda tok: tok.encode_batch(docs, allowed_special="none"),
            "tiktoken_via_to_tiktoken": lambda tok: tok.to_tiktoken().encode_ordinary_batch(docs, num_threads=1)}
    for name, run in runs.items():
        if name.startswith("tiktoken") and impl != "peers":
            continue
        tok = BPETokenizer(trained.merges, trained.pattern)  # fresh: an empty chunk cache
        if name.endswith("warm_cache"):
            tok.encode_batch(docs, allowed_special="none", workers=1)
        t0 = time.perf_counter()
        ids = run(tok)
        seconds = time.perf_counter() - t0
        report(case="encode_pystdlib", impl=name, mb=round(n_bytes / MB, 2), seconds=round(seconds, 3),
               mb_per_s=round(n_bytes / MB / seconds, 2), tokens=sum(map(len, ids)))


def run_case(case, impl):
    if case != "encode_pystdlib":
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    if case == "train_shakespeare":
        train_case(case, shakespeare(), 4096, impl)
    elif case == "train_pystdlib":
        train_case(case, pystdlib_20mb(), 32768, impl)
    elif case == "encode_pystdlib":
        encode_case(pystdlib_20mb(), impl)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="train_shakespeare,train_pystdlib,encode_pystdlib")
    parser.add_argument("--peers", action="store_true", help="also run rustbpe, HF tokenizers, tiktoken if installed")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        run_case(*args.one)
        return
    for case in args.cases.split(","):
        impls = ["nanostack"]
        if args.peers and case.startswith("train"):
            impls += [name for name, module in (("rustbpe", "rustbpe"), ("hf_tokenizers", "tokenizers"))
                      if _installed(module)]
        if case == "encode_pystdlib":
            impls = ["peers" if args.peers and _installed("tiktoken") else "nanostack"]
        for impl in impls:
            subprocess.run([sys.executable, __file__, "--one", case, impl], check=True)


def _installed(module) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
