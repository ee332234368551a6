"""`nanostack data report V`: what a dataset version holds and hides.

As in cleanlab's Datalab, each check gives every example a score or a flag (stored as columns of
signals.parquet beside the version, queryable by `--where`) and the dataset a summary:

- lengths: histogram, empty examples, outliers (MAD z-score of log length above 4);
- encoding: files skipped at import (binary, not UTF-8; with byte offsets), and byte-order marks,
  U+FFFD replacement characters and control characters inside examples (with character offsets);
- characters: the most common, and those rarer than 1 in 100,000;
- tokens: vocabulary used and unused, test tokens never seen in train, bytes per token;
- duplicates: exact and normalized copies; with --near-dup, near copies;
- leaks: test examples with a copy in train (exact, normalized, near) and shared word 13-grams.

The report knows no model: per-example losses are `nanostack engine score`'s.
"""
import json
import time
from collections import Counter

import numpy as np

from nanostack.data.examples import examples_tokenizer
from nanostack.data.versions import DATASET_KIND
from nanostack.dataengine import dups
from nanostack.dataengine.tables import write_parquet
from nanostack.dataengine.text import suspect_characters
from nanostack.errors import UserError
from nanostack.io import write_atomic
from nanostack.tokenizer import TokenizerSpec

OUTLIER_Z = 4.0
RARE = 1e-5
SHOW = 5  # examples listed per finding


def build_report(version, near_dup: bool = False, tokenizer: str = "char", threshold: float = 0.8) -> dict:
    """The report as a dict; also writes signals.parquet and report.md / report.json into the version."""
    timing = {}
    t0 = time.perf_counter()
    table = version.table()
    texts, splits = table["text"], table["split"]
    timing["load"] = time.perf_counter() - t0
    signals = {"row": table["row"], "example_id": table["example_id"]}
    report = {"version": {"vid": version.vid, "ref": version.ref, "kind": version.kind, **version.counts}}
    for name, part in (("lengths", lengths_part), ("encoding", encoding_part), ("characters", characters_part)):
        t = time.perf_counter()
        report[name] = part(version, table, signals)
        timing[name] = time.perf_counter() - t
    t = time.perf_counter()
    report["tokens"] = tokens_part(version, table, tokenizer)
    timing["tokens"] = time.perf_counter() - t
    t = time.perf_counter()
    report["duplicates"], leaks = duplicates_part(table, signals)
    timing["duplicates"] = time.perf_counter() - t
    if near_dup:
        t = time.perf_counter()
        report["near_duplicates"], leaks["near"] = near_part(table, signals, threshold)
        timing["near_duplicates"] = time.perf_counter() - t
    t = time.perf_counter()
    leaks["ngram13"] = dups.ngram_overlap(texts[splits == "train"], texts[splits == "test"])
    timing["ngram13"] = time.perf_counter() - t
    report["leaks"] = leaks
    report["timing_s"] = {k: round(v, 4) for k, v in timing.items()}
    write_parquet(version.path / "signals.parquet", signals)
    write_atomic(version.path / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_atomic(version.path / "report.md", to_markdown(report))
    return report


# ---- parts ----------------------------------------------------------------------------------------

def _example(table, row: int, **extra) -> dict:
    text = table["text"][row]
    return {"row": int(row), "id": int(table["example_id"][row]), "split": table["split"][row],
            "text": text if len(text) <= 80 else text[:77] + "...", **extra}


def lengths_part(version, table, signals) -> dict:
    lengths = np.fromiter((len(t) for t in table["text"]), dtype=np.int64, count=len(table["text"]))
    logs = np.log1p(lengths)
    median = float(np.median(logs)) if len(logs) else 0.0
    mad = float(np.median(np.abs(logs - median))) if len(logs) else 0.0
    z = 0.6745 * (logs - median) / mad if mad > 0 else np.zeros(len(logs))
    outlier = np.abs(z) > OUTLIER_Z
    signals.update(length=lengths, length_z=z, length_outlier=outlier, empty=lengths == 0)
    edges = np.unique(np.round(np.geomspace(1, max(2, lengths.max(initial=1) + 1), 11)).astype(np.int64))
    counts, _ = np.histogram(lengths, bins=np.concatenate([[0], edges]))
    worst = np.argsort(-np.abs(z))[:SHOW]
    return {"unit": "characters", "min": int(lengths.min()) if len(lengths) else 0, "median": float(np.median(lengths)) if
            len(lengths) else 0, "mean": float(lengths.mean()) if len(lengths) else 0,
            "max": int(lengths.max(initial=0)), "empty": int((lengths == 0).sum()),
            "histogram": [[int(lo), int(hi), int(c)] for lo, hi, c in zip(np.concatenate([[0], edges[:-1]]),
                                                                          edges, counts)],
            "outliers": int(outlier.sum()), "outlier_rule": f"|MAD z of log length| > {OUTLIER_Z:g}",
            "outlier_examples": [_example(table, r, length=int(lengths[r]), z=round(float(z[r]), 2))
                                 for r in worst if outlier[r]]}


def encoding_part(version, table, signals) -> dict:
    problems = []
    flags = np.full(len(table["text"]), None, dtype=object)
    for row, text in enumerate(table["text"]):
        if text.isascii() and text.isprintable():
            continue
        for kind, at in suspect_characters(text):
            flags[row] = kind if flags[row] is None else f"{flags[row]},{kind}"
            problems.append({"kind": kind, "source": table["source"][row], "offset": int(table["offset"][row]) + at,
                             "row": row, "id": int(table["example_id"][row])})
    signals["encoding"] = flags
    skipped = version.manifest.get("skipped", [])
    problems = [{"kind": n["kind"], "source": n["file"], "offset": n["offset"], "row": None, "id": None}
                for n in version.manifest.get("encoding", [])] + problems  # leading BOMs, dropped at import
    counts = Counter(p["kind"] for p in problems) + Counter(s["kind"] for s in skipped)
    return {"skipped_files": skipped, "problems": problems[:200], "problem_count": len(problems),
            "counts": dict(sorted(counts.items()))}


def characters_part(version, table, signals) -> dict:
    counts = Counter("".join(table["text"]))
    total = sum(counts.values()) or 1
    rare = {c for c, n in counts.items() if n / total < RARE}
    rare_rows = np.zeros(len(table["text"]), dtype=np.int64)
    where = {c: [] for c in rare}
    if rare:
        for row, text in enumerate(table["text"]):
            hit = rare.intersection(text)
            if hit:
                rare_rows[row] = len(hit)
                for c in hit:
                    if len(where[c]) < 3:
                        where[c].append(int(table["example_id"][row]))
    signals["rare_chars"] = rare_rows
    return {"distinct": len(counts), "total": total,
            "top": [[c, n] for c, n in counts.most_common(20)],
            "rare_threshold": RARE, "rare": [{"char": c, "codepoint": f"U+{ord(c):04X}", "count": counts[c],
                                             "ids": where[c]} for c in sorted(rare, key=lambda c: counts[c])][:50],
            "rare_count": len(rare)}


def tokens_part(version, table, tokenizer: str) -> dict:
    kind = DATASET_KIND[version.kind]
    train, test = table["text"][table["split"] == "train"], table["text"][table["split"] == "test"]
    spec = TokenizerSpec.parse(tokenizer)
    try:
        tok = examples_tokenizer(spec, kind, list(train), list(test))
    except UserError:
        raise
    except Exception as e:  # a tokenizer that cannot be built on this data
        raise UserError(f"tokenizer {tokenizer} cannot be made from version {version.ref} ({e})",
                        "use --tokenizer char") from None
    used_train, used_test = Counter(), Counter()
    n_tokens = []
    for texts, used in ((train, used_train), (test, used_test)):
        if tok.kind == "char":  # one token per character: count characters, no encoding needed
            used.update(tok.encode_ordinary("".join(set(texts))))
            n_tokens.extend(map(len, texts))
            continue
        for text in texts:
            ids = tok.encode_ordinary(text)
            used.update(ids)
            n_tokens.append(len(ids))
    total_bytes = sum(len(t.encode("utf-8")) for t in table["text"])
    total_tokens = sum(n_tokens) or 1
    ordinary = tok.vocab_size - len(tok.special_tokens)
    test_only = sorted(set(used_test) - set(used_train))
    return {"tokenizer": tokenizer, "vocab_size": tok.vocab_size, "used_in_train": len(used_train),
            "unused": ordinary - len(set(used_train) | set(used_test)), "test_only_tokens": len(test_only),
            "test_only_examples": [tok.decode([i]) for i in test_only[:10]],
            "bytes_per_token": round(total_bytes / total_tokens, 3),
            "tokens_per_example": {"median": float(np.median(n_tokens)) if n_tokens else 0,
                                   "max": int(max(n_tokens, default=0))}}


def duplicates_part(table, signals):
    texts, splits = table["text"], table["split"]
    exact = dups.exact_labels(texts)
    normalized = dups.normalized_labels(texts)
    signals.update(exact_cluster=exact, normalized_cluster=normalized)
    ex, no = dups.cluster_stats(exact), dups.cluster_stats(normalized)
    variants = (normalized != np.arange(len(normalized))) & (exact == np.arange(len(exact)))
    part = {"exact": {**ex, "examples": _cluster_examples(table, exact)},
            "normalized": {**no, "beyond_exact": int(variants.sum()),
                           "examples": _cluster_examples(table, normalized, variants)}}
    leaks = {}
    for name, labels in (("exact", exact), ("normalized", normalized)):
        leaked = dups.leaked_rows(labels, splits)
        signals[f"leak_{name}"] = leaked
        leaks[name] = {"test_rows": int(leaked.sum()),
                       "examples": [_example(table, r) for r in np.flatnonzero(leaked)[:SHOW]]}
    return part, leaks


def _cluster_examples(table, labels, only=None):
    rows = np.flatnonzero((labels != np.arange(len(labels))) if only is None else only)[:SHOW]
    return [_example(table, r, copy_of=int(labels[r])) for r in rows]


def near_part(table, signals, threshold: float):
    texts, splits = table["text"], table["split"]
    near = dups.near_labels(list(texts), threshold)
    if near.method == "minhash":
        signals["near_cluster"] = near.labels
        leaked = dups.leaked_rows(near.labels, splits)
        stats = dups.cluster_stats(near.labels)
        note = (f"char-5 MinHash of the normalized text (one permutation, 128 bins, 16x8 bands), exact "
                f"Jaccard >= {threshold}")
    else:
        leaked = dups.leaked_pairs(near.pairs, splits)
        stats = {"clusters": None, "rows_in_clusters": None, "extra_copies": None}
        note = "short lines: pairs at edit distance 1 (reported, never dropped)"
    signals["leak_near"] = leaked
    part = {"method": near.method, "rule": note, "pairs": int(len(near.pairs)), "candidates": int(near.candidates),
            **stats, "examples": [{"a": _example(table, a), "b": _example(table, b)}
                                  for a, b in near.pairs[:SHOW].tolist()]}
    return part, {"test_rows": int(leaked.sum()), "method": near.method,
                  "examples": [_example(table, r) for r in np.flatnonzero(leaked)[:SHOW]]}


# ---- markdown -------------------------------------------------------------------------------------

def _pct(n, total) -> str:
    return f"{n:,} ({100 * n / total:.1f}%)" if total else f"{n:,}"


def _quote(text: str) -> str:
    return "`" + text.replace("`", "'").replace("\n", "⏎") + "`"


def to_markdown(r: dict) -> str:
    v = r["version"]
    n = v["examples"]
    out = [f"# Data report: {v['ref']} ({v['vid'][:12]})", "",
           f"{n:,} {v['kind']} examples: {v['train']:,} train, {v['test']:,} test; {v['distinct']:,} distinct texts.",
           ""]
    L = r["lengths"]
    out += ["## Lengths", "", f"characters: min {L['min']}, median {L['median']:g}, mean {L['mean']:.1f}, "
            f"max {L['max']}; empty {L['empty']}; outliers ({L['outlier_rule']}): {L['outliers']}", "",
            "| length | examples |", "|---|---|"]
    out += [f"| {lo}–{hi} | {c:,} |" for lo, hi, c in L["histogram"] if c]
    out += [f"- row {e['row']} ({e['split']}, {e['length']} chars, z {e['z']}): {_quote(e['text'])}"
            for e in L["outlier_examples"]]
    E = r["encoding"]
    out += ["", "## Encoding", ""]
    if not E["skipped_files"] and not E["problem_count"]:
        out.append("No binary or non-UTF-8 files, byte-order marks, U+FFFD or control characters.")
    out += [f"- skipped file {s['file']}: {s['kind']} at byte {s['offset']}" for s in E["skipped_files"]]
    out += [f"- {p['kind']} in {p['source']} at character {p['offset']}" + (f" (row {p['row']})" if p["row"] is not None
            else " (dropped at import)") for p in E["problems"][:20]]
    if E["problem_count"] > 20:
        out.append(f"- … {E['problem_count'] - 20} more (report.json, signals.parquet)")
    C = r["characters"]
    top = " ".join(f"{_quote(c)} {k:,}" for c, k in C["top"][:10])
    out += ["", "## Characters", "", f"{C['distinct']} distinct; most common: {top}",
            f"rarer than {C['rare_threshold']:g}: {C['rare_count']}" +
            (": " + ", ".join(f"{_quote(x['char'])} {x['codepoint']} ×{x['count']}" for x in C["rare"][:15])
             if C["rare"] else "")]
    T = r["tokens"]
    out += ["", "## Tokens", "", f"tokenizer {T['tokenizer']}: vocabulary {T['vocab_size']}, used in train "
            f"{T['used_in_train']}, unused {T['unused']}, in test but never in train {T['test_only_tokens']}; "
            f"{T['bytes_per_token']} bytes per token; tokens per example: median {T['tokens_per_example']['median']:g},"
            f" max {T['tokens_per_example']['max']}"]
    D = r["duplicates"]
    out += ["", "## Duplicates", "", "| kind | clusters | rows sharing their text | extra copies |", "|---|---|---|---|",
            f"| exact | {D['exact']['clusters']:,} | {_pct(D['exact']['rows_in_clusters'], n)} | "
            f"{_pct(D['exact']['extra_copies'], n)} |",
            f"| normalized (NFKC, case, spaces) | {D['normalized']['clusters']:,} | "
            f"{_pct(D['normalized']['rows_in_clusters'], n)} | {_pct(D['normalized']['extra_copies'], n)} |", ""]
    out += [f"- row {e['row']} = row {e['copy_of']}: {_quote(e['text'])}" for e in D["exact"]["examples"]]
    if "near_duplicates" in r:
        N = r["near_duplicates"]
        out += ["", "### Near duplicates", "", f"{N['rule']}: {N['pairs']:,} pairs"
                + (f" in {N['clusters']:,} clusters ({N['extra_copies']:,} extra copies)" if N["clusters"] is not None
                   else "") + f"; {N['candidates']:,} candidates checked", ""]
        out += [f"- {_quote(p['a']['text'])} ~ {_quote(p['b']['text'])}" for p in N["examples"]]
    K = r["leaks"]
    out += ["", "## Leaks between splits", "", "| copy kind | test examples with a copy in train |", "|---|---|",
            f"| exact | {_pct(K['exact']['test_rows'], v['test'])} |",
            f"| normalized | {_pct(K['normalized']['test_rows'], v['test'])} |"]
    if "near" in K:
        out.append(f"| near ({K['near']['method']}) | {_pct(K['near']['test_rows'], v['test'])} |")
    g = K["ngram13"]
    out += ["", f"word {g['n']}-grams: {g['shared_with_train']:,} of the test split's {g['test_ngrams']:,} occur in "
            "train"]
    out += [f"- leaked (exact): {_quote(e['text'])}" for e in K["exact"]["examples"]]
    out += ["", f"_computed in {sum(r['timing_s'].values()):.2f} s_", ""]
    return "\n".join(out)

