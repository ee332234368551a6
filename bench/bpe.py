"""Benchmark: BPE training and encoding, nanostack against rustbpe, HF tokenizers and tiktoken.

    python bench/bpe.py [--cases train_shakespeare,train_pystdlib,encode_pystdlib] [--peers]
                        [--cores all,1] [--repeat 1]

Every measurement runs in a fresh process, once free to use every core this process may use
("all") and once pinned to one core ("1", with os.sched_setaffinity: nanostack's workers and the
thread pools of HF tokenizers and rustbpe size themselves by it; tiktoken is given that many
threads). Rounds run all engines one after another, so that a busy neighbour disturbs them alike;
--repeat gives ranges.

Cases:
- train_shakespeare: vocab 4096, GPT-4 split pattern, on tiny shakespeare;
- train_pystdlib: vocab 32768 on the first 20 MB of the Python standard library's .py files;
- encode_pystdlib: encode those 20 MB (one encode() per file) with the 32768 tokenizer trained on
  them: in the process that trained it (`after_training`: the trainer hands over the encodings of
  its chunks), with a new tokenizer in that same process (`new_tokenizer_same_process`: an empty
  chunk cache, a heap that training has used), in a fresh process that loads the tokenizer file
  (`fresh_process`), and as one 20 MB string, the way `nanostack prepare` encodes a split
  (`one_string`); encode_batch on the allowed cores after training and in the fresh process; and
  tiktoken through to_tiktoken(), on 1 thread, on the allowed cores and on the one string.
With --peers, rustbpe, HF tokenizers and tiktoken (those installed) run the same cases.
Prints one JSON line per measurement (seconds, MB/s, CPU seconds of the process and its workers,
peak RSS of the process and of its largest worker, and neighbours_load: the share of the machine's
cores that other processes used meanwhile, from /proc/stat), then one summary line per engine,
then nanostack's time over each peer's, paired within rounds (for encoding: over tiktoken's on one
thread, so below 1 is faster).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

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


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def report(**fields):
    fields["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    workers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if workers_rss:
        fields["peak_worker_rss_mb"] = round(workers_rss)
    print(json.dumps(fields), flush=True)


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (from /proc/stat), or 0."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def timed(run):
    """(result, seconds, our CPU seconds, the share of the machine's cores that other processes
    used meanwhile): a busy neighbour shows in the last."""
    c0, b0, t0 = cpu_seconds(), machine_busy_seconds(), time.perf_counter()
    result = run()
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    others = max(0.0, machine_busy_seconds() - b0 - cpu) / (seconds * (os.cpu_count() or 1))
    return result, seconds, cpu, others


def train_with(impl, docs, vocab_size):
    from nanostack.tokenizer.patterns import GPT4

    if impl == "nanostack":
        from nanostack.tokenizer import BPETokenizer

        return BPETokenizer.train(docs, vocab_size, pattern="gpt4")
    if impl == "rustbpe":
        import rustbpe

        return rustbpe.Tokenizer().train_from_iterator(docs, vocab_size, pattern=GPT4)
    if impl == "hf_tokenizers":  # its ByteLevel pre-tokenizer splits with the GPT-2 pattern
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        return tok.train_from_iterator(docs, trainer)
    raise ValueError(impl)


def train_case(case, impl, cores):
    docs, vocab_size = (shakespeare(), 4096) if case == "train_shakespeare" else (pystdlib_20mb(), 32768)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    _, seconds, cpu, others = timed(lambda: train_with(impl, docs, vocab_size))
    report(case=case, impl=impl, cores=cores, vocab_size=vocab_size, mb=round(n_bytes / MB, 2),
           seconds=round(seconds, 3), cpu_seconds=round(cpu, 2), neighbours_load=round(others, 2))


def encode_case(case, impl, cores, tokenizer_file, peers):
    from nanostack.tokenizer import BPETokenizer

    docs = pystdlib_20mb()
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)

    def measure(name, run):
        ids, seconds, cpu, others = timed(run)
        report(case=case, impl=name, cores=cores, mb=round(n_bytes / MB, 2), seconds=round(seconds, 3),
               mb_per_s=round(n_bytes / MB / seconds, 2), cpu_seconds=round(cpu, 2), tokens=sum(map(len, ids)),
               neighbours_load=round(others, 2))
        return ids

    if impl == "same_process":
        tok = BPETokenizer.train(docs, 32768, pattern="gpt4")
        tok.save(tokenizer_file)
        measure("nanostack_after_training", lambda: [tok.encode_ordinary(d) for d in docs])
        if cores != "1":
            measure("nanostack_encode_batch_after_training", lambda: tok.encode_batch(docs, allowed_special="none"))
        new = BPETokenizer.load(tokenizer_file)
        measure("nanostack_new_tokenizer_same_process", lambda: [new.encode_ordinary(d) for d in docs])
        joined = "".join(docs)  # as `nanostack prepare` encodes a split: one string
        new = BPETokenizer.load(tokenizer_file)
        measure("nanostack_one_string_new_tokenizer", lambda: [new.encode_ordinary(joined)])
    else:
        tok = BPETokenizer.load(tokenizer_file)
        measure("nanostack_fresh_process", lambda: [tok.encode_ordinary(d) for d in docs])
        if cores != "1":
            new = BPETokenizer.load(tokenizer_file)
            measure("nanostack_encode_batch", lambda: new.encode_batch(docs, allowed_special="none"))
        if peers and _installed("tiktoken"):
            fast = tok.to_tiktoken()
            measure("tiktoken_1_thread", lambda: fast.encode_ordinary_batch(docs, num_threads=1))
            joined = "".join(docs)
            measure("tiktoken_one_string", lambda: [fast.encode_ordinary(joined)])
            threads = len(os.sched_getaffinity(0))
            if threads > 1:
                measure("tiktoken_all_threads", lambda: fast.encode_ordinary_batch(docs, num_threads=threads))


def child(case, impl, cores, tokenizer_file, peers):
    if cores == "1":
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if case.startswith("train"):
        train_case(case, impl, cores)
    else:
        encode_case(case, impl, cores, tokenizer_file, peers)


def summarise(lines):
    """One line per (case, impl, cores): min, median and max of seconds (and MB/s) over the rounds."""
    groups = {}
    for row in lines:
        groups.setdefault((row["case"], row["impl"], row["cores"]), []).append(row)
    for (case, impl, cores), rows in groups.items():
        out = {"summary": case, "impl": impl, "cores": cores, "runs": len(rows)}
        for key in ("seconds", "mb_per_s", "cpu_seconds", "neighbours_load"):
            if key in rows[0]:
                values = sorted(r[key] for r in rows)
                out[key] = [values[0], round(statistics.median(values), 3), values[-1]]
        print(json.dumps(out), flush=True)


def compare(lines):
    """nanostack's time over each peer's, taken within each round (so both saw the same neighbours):
    the range over rounds. For encoding, against tiktoken on one thread."""
    by_key = {(r["round"], r["case"], r["impl"], r["cores"]): r["seconds"] for r in lines}
    pairs = {}
    for (round_, case, impl, cores), seconds in by_key.items():
        if case.startswith("train") and impl != "nanostack":
            ours = by_key.get((round_, case, "nanostack", cores))
        elif case == "encode_pystdlib" and impl.startswith("nanostack"):
            ours, seconds = seconds, by_key.get((round_, case, "tiktoken_1_thread", cores))
            impl = impl + "/tiktoken_1_thread"
        else:
            continue
        if ours and seconds:
            pairs.setdefault((case, impl, cores), []).append(ours / seconds)
    for (case, impl, cores), ratios in pairs.items():
        ratios.sort()
        print(json.dumps({"time_ratio": case, "nanostack_over": impl, "cores": cores,
                          "min_median_max": [round(ratios[0], 2), round(statistics.median(ratios), 2),
                                             round(ratios[-1], 2)]}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="train_shakespeare,train_pystdlib,encode_pystdlib")
    parser.add_argument("--peers", action="store_true", help="also run rustbpe, HF tokenizers, tiktoken if installed")
    parser.add_argument("--cores", default="all,1", help="all (every usable core), 1 (pinned), or both")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every measurement")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)  # case impl cores tokenizer_file peers
    args = parser.parse_args()
    if args.child:
        case, impl, cores, tokenizer_file, peers = args.child
        child(case, impl, cores, tokenizer_file, peers == "1")
        return
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat):
            for case in args.cases.split(","):
                for cores in args.cores.split(","):
                    for impl in _impls(case, args.peers):
                        tokenizer_file = str(Path(tmp) / f"pystdlib_{cores}.json")
                        out = subprocess.run([sys.executable, __file__, "--child", case, impl, cores, tokenizer_file,
                                              "1" if args.peers else "0"], check=True, capture_output=True, text=True)
                        for line in out.stdout.splitlines():
                            row = {**json.loads(line), "round": round_}
                            print(json.dumps(row), flush=True)
                            lines.append(row)
    summarise(lines)
    compare(lines)


def _impls(case, peers):
    if case == "encode_pystdlib":
        return ["same_process", "fresh_process"]  # the second reads the tokenizer the first saved
    impls = ["nanostack"]
    if peers:
        impls += [name for name, module in (("rustbpe", "rustbpe"), ("hf_tokenizers", "tokenizers"))
                  if _installed(module)]
    return impls


def _installed(module) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
