"""Benchmark: the data engine's budgets (issue 13), one JSON line per figure.

    python bench/dataengine.py [--only NAME,...] [--lines 10000000] [--loop-iters 3000]

- import:        `data import` of a 1M-line file (names.txt repeated with a counter): MB/s and examples/s
                 (target >= 200 MB/s or >= 1M examples/s)
- dedup:         normalized dedup (NFKC + casefold + whitespace, grouped) of --lines lines (target 1e7 < 20 s)
- signatures:    one-permutation MinHash signatures of tinyshakespeare's paragraphs, MB/s on one core
                 (target >= 2.5 MB/s; the reference 128-permutation MinHash for comparison on a slice)
- report:        `data report` on names (target < 3 s) and on tinyshakespeare with --near-dup (< 5 s)
- score:         scoring tokens/s against the trainer's on the same model (names preset, 4 layers, 64 wide;
                 target >= 2x)
- loss_table:    a 1e7-row loss table written to Parquet from numpy and its worst 100 found (each < 3 s)
- loop:          one round of `engine loop` on names with the names preset at --loop-iters steps: the
                 engine's share of the loop's time (target < 10%)

Needs NANOSTACK_DATA_DIR (or the download cache) for names.txt and tinyshakespeare.txt. Machines are
noisy: the figures print with the load average at the start.
"""
import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from nanostack.data.sources import builtin_path


def emit(name, **figures):
    print(json.dumps({"bench": name, "load_avg_1min": round(os.getloadavg()[0], 2), **figures}), flush=True)


class Timer:
    """Wall seconds and this process's CPU seconds (all its threads): on a shared machine the CPU time is
    the steadier figure."""

    def __enter__(self):
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.t, time.process_time() - self.c


def bench_import(tmp):
    import nanostack.dataengine as de

    names = builtin_path("names").read_text().split()
    path = Path(tmp) / "million.txt"
    lines = [f"{names[i % len(names)]}{i // len(names)}" for i in range(1_000_000)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    size = path.stat().st_size
    engine = de.open_engine(Path(tmp) / "import-store")
    with Timer() as t:
        v = engine.import_path(path, name="million")
    emit("import", kind="lines", examples=v.counts["examples"], mb=round(size / 1e6, 1), seconds=round(t.wall, 2),
         cpu_s=round(t.cpu, 2), mb_per_s=round(size / 1e6 / t.wall, 1), examples_per_s=round(v.counts["examples"] / t.wall),
         examples_per_cpu_s=round(v.counts["examples"] / t.cpu))
    folder = Path(tmp) / "books"  # documents: 100 files of 1.1 MB each, one example per file
    folder.mkdir()
    text = builtin_path("shakespeare").read_text()
    for i in range(100):
        (folder / f"book{i:03d}.txt").write_text(f"copy {i}\n" + text, encoding="utf-8")
    size = sum(f.stat().st_size for f in folder.iterdir())
    with Timer() as t:
        v = engine.import_path(folder, examples="files", name="books")
    emit("import", kind="files", examples=v.counts["examples"], mb=round(size / 1e6, 1), seconds=round(t.wall, 2),
         cpu_s=round(t.cpu, 2), mb_per_s=round(size / 1e6 / t.wall, 1), mb_per_cpu_s=round(size / 1e6 / t.cpu, 1))


def bench_dedup(n):
    from nanostack.dataengine.dups import exact_labels, normalized_labels

    names = builtin_path("names").read_text().split()
    rng = random.Random(0)
    variants = [str.upper, str.title, lambda s: s, lambda s: s, lambda s: " " + s + "  "]
    lines = [rng.choice(variants)(names[i % len(names)]) + (str(i % 1000) if i % 3 else "") for i in range(n)]
    with Timer() as t:
        normalized = normalized_labels(lines)
    with Timer() as e:
        exact = exact_labels(lines)
    emit("dedup", lines=n, normalized_s=round(t.wall, 2), normalized_cpu_s=round(t.cpu, 2),
         normalized_lines_per_s=round(n / t.wall), normalized_copies=int((normalized != np.arange(n)).sum()),
         exact_s=round(e.wall, 2), exact_cpu_s=round(e.cpu, 2), exact_copies=int((exact != np.arange(n)).sum()))


def bench_signatures():
    from nanostack.data.examples import segment
    from nanostack.dataengine import minhash_reference as reference
    from nanostack.dataengine.near import near_duplicates, one_permutation_signatures, shingle_hashes

    text = builtin_path("shakespeare").read_text()
    docs = [t for t, _, _ in segment([("s", text)], "paragraphs")] * 4
    size = sum(len(d.encode("utf-8")) for d in docs)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(3):
        with Timer() as t:
            hashes, owners = shingle_hashes(docs)
            one_permutation_signatures(hashes, owners, len(docs))
        best, best_cpu = min(best, t.wall), min(best_cpu, t.cpu)
    part = docs[:300]
    part_size = sum(len(d.encode("utf-8")) for d in part)
    perms = reference.permutations(128)
    t = time.perf_counter()
    for d in part:
        reference.signature(reference.char_shingles(d), perms)
    ref_dt = time.perf_counter() - t
    t = time.perf_counter()
    found = near_duplicates(docs[:len(docs) // 4])
    emit("signatures", mb=round(size / 1e6, 2), one_permutation_mb_per_s=round(size / 1e6 / best, 2),
         one_permutation_mb_per_cpu_s=round(size / 1e6 / best_cpu, 2),
         reference_128_perm_mb_per_s=round(part_size / 1e6 / ref_dt, 3),
         near_duplicates_tinyshakespeare_s=round(time.perf_counter() - t, 2), candidates=found.candidates,
         pairs=int(len(found.pairs)))


def bench_report(tmp):
    import nanostack.dataengine as de

    engine = de.open_engine(Path(tmp) / "report-store")
    names = engine.import_path(builtin_path("names"), name="names", seed=3407)
    shakespeare = engine.import_path(builtin_path("shakespeare"), examples="paragraphs", name="shakespeare")
    for version, near in ((names, False), (names, True), (shakespeare, True)):
        with Timer() as t:
            report = version.report(near_dup=near)
        emit("report", data=version.name, near_dup=near, seconds=round(t.wall, 2), cpu_s=round(t.cpu, 2),
             parts=report["timing_s"])


def bench_score(tmp):
    import nanostack.dataengine as de
    from nanostack.run import open_run
    from nanostack.train import train

    engine = de.open_engine(Path(tmp) / "score-store")
    names = engine.import_path(builtin_path("names"), name="names", seed=3407)
    run = Path(tmp) / "names-run"
    train(run, {"data": str(names.path), "max_iters": 200, "eval_interval": 200, "ckpt_interval": 200,
                "log_interval": 10, "device": "cpu"}, "names", force=True, log=lambda *a: None)
    metrics = [m for m in open_run(run).metrics() if m.get("kind") == "train"]
    trainer = float(np.median([m["tokens_per_s"] for m in metrics[2:]]))
    with Timer() as t:
        score = engine.score(run, names)
    dt = t.wall
    real = sum(v["tokens"] for v in score.summary().values())
    padded = score.manifest["block_size"] * sum(v["examples"] for v in score.summary().values())
    emit("score", model="names preset (transformer 4x64)", examples=names.counts["examples"], seconds=round(dt, 2),
         cpu_s=round(t.cpu, 2),
         score_tokens_per_s=round(real / dt), score_positions_per_s=round(padded / dt),
         trainer_positions_per_s=round(trainer), ratio_positions=round(padded / dt / trainer, 2),
         note="trainer tokens/s counts every position of its padded rows, as score_positions_per_s does")


def bench_loss_table(tmp):
    from nanostack.dataengine.tables import read_parquet, write_parquet

    n = 10_000_000
    rng = np.random.default_rng(0)
    columns = {"row": np.arange(n, dtype=np.int64), "example_id": rng.integers(-2**63, 2**63 - 1, n),
               "split": np.where(rng.random(n) < 0.1, "test", "train").astype(object),
               "nll_sum": rng.gamma(2.0, 5.0, n), "tokens": rng.integers(1, 40, n)}
    columns["nll_mean"] = columns["nll_sum"] / columns["tokens"]
    path = Path(tmp) / "loss.parquet"
    with Timer() as ingest:
        write_parquet(path, columns, categorical=("split",))
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    with Timer() as table:  # into DuckDB's own table, in memory (what a query over the loss table starts from)
        con.register("frame", {k: v for k, v in columns.items() if k != "split"})
        con.execute("CREATE TABLE losses AS SELECT * FROM frame")
    con.close()
    with Timer() as top:
        worst = read_parquet(path, columns=["row", "nll_mean"], where="split = 'train' AND tokens >= 2",
                             order="nll_mean DESC LIMIT 100")
    assert np.isclose(worst["nll_mean"][0], columns["nll_mean"][(columns["split"] == "train") &
                                                              (columns["tokens"] >= 2)].max())
    emit("loss_table", rows=n, ingest_s=round(ingest.wall, 2), ingest_cpu_s=round(ingest.cpu, 2),
         duckdb_table_ingest_s=round(table.wall, 2), duckdb_table_ingest_cpu_s=round(table.cpu, 2),
         worst_100_s=round(top.wall, 3), worst_100_cpu_s=round(top.cpu, 3),
         mb=round(path.stat().st_size / 1e6, 1))


def bench_loop(tmp, iters):
    import nanostack.dataengine as de

    engine = de.open_engine(Path(tmp) / "loop-store")
    names = engine.import_path(builtin_path("names"), name="names", seed=3407)
    record = engine.loop(names, "names", rounds=1, curate="dedupe=near; drop=worst:0.5%",
                         overrides={"max_iters": iters, "lr_decay_iters": iters, "eval_interval": iters,
                                    "ckpt_interval": iters}, out=Path(tmp) / "loop", log=lambda *a: None)
    rounds = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
               if k in ("round", "test_nll", "train_s", "engine_s", "delta", "train")} for r in record["rounds"]]
    emit("loop", config=f"names preset, {iters} steps", engine_share=round(record["engine_share"], 4),
         rounds=rounds, stopped=record["stopped"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="import,dedup,signatures,report,score,loss_table,loop")
    parser.add_argument("--lines", type=int, default=10_000_000, help="lines for the dedup benchmark")
    parser.add_argument("--loop-iters", type=int, default=3000, help="training steps per loop round")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    wanted = args.only.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            if name == "import":
                bench_import(tmp)
            elif name == "dedup":
                bench_dedup(args.lines)
            elif name == "signatures":
                bench_signatures()
            elif name == "report":
                bench_report(tmp)
            elif name == "score":
                bench_score(tmp)
            elif name == "loss_table":
                bench_loss_table(tmp)
            elif name == "loop":
                bench_loop(tmp, args.loop_iters)


if __name__ == "__main__":
    main()
