"""Fixtures for the data engine's tests: telemetry files as the server writes them, planted defects with
fixed seeds, and brute-force ground truth (every pair, plain Python sets) to measure the engine by."""
import json
import random
import string
import unicodedata
from pathlib import Path

import numpy as np

from nanostack.data.examples import segment

ALPHABET = string.ascii_lowercase


def write_telemetry(folder, prompts, seed=0, files=2, nll_missing_every=7) -> Path:
    """folder/telemetry-0000N.parquet with the server's columns (ts, request_id, run, endpoint, prompt,
    completion, prompt_tokens, completion_tokens, prompt_nll_mean (sometimes null), prompt_token_nll)."""
    import duckdb

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    chunks = np.array_split(np.arange(len(prompts)), files)
    for f, rows in enumerate(chunks):
        n = len(rows)
        nll = [rng.random(len(prompts[i])).round(3).tolist() for i in rows]
        mean = np.array([np.nan if (i % nll_missing_every == 0) else float(np.mean(x) if x else 0) for i, x in
                         zip(rows, nll)])
        frame = {"ts": 1.7e9 + rows.astype(np.float64), "request_id": np.array([f"req-{i}" for i in rows], dtype=object),
                 "run": np.array(["runs/demo"] * n, dtype=object),
                 "endpoint": np.array(["/v1/completions"] * n, dtype=object),
                 "prompt": np.array([prompts[i] for i in rows], dtype=object),
                 "completion": np.array(["..."] * n, dtype=object),
                 "prompt_tokens": np.array([len(prompts[i]) for i in rows], dtype=np.int64),
                 "completion_tokens": np.full(n, 3, dtype=np.int64), "mean": mean,
                 "nll_json": np.array([json.dumps(x) for x in nll], dtype=object)}
        con = duckdb.connect()
        con.register("frame", frame)
        path = folder / f"telemetry-{f:05d}.parquet"
        con.execute("COPY (SELECT ts, request_id, run, endpoint, prompt, completion, prompt_tokens, completion_tokens, "
                    "CASE WHEN isnan(mean) THEN NULL ELSE mean END AS prompt_nll_mean, "
                    f"CAST(nll_json AS FLOAT[]) AS prompt_token_nll FROM frame) TO '{path}' (FORMAT parquet)")
        con.close()
    return folder


def shakespeare_paragraphs(path) -> list:
    text = Path(path).read_text(encoding="utf-8")
    return [t for t, _, _ in segment([("s", text)], "paragraphs")]


def substitute_words(text: str, fraction: float, vocab, rng: random.Random) -> str:
    """The text with about `fraction` of its words replaced by random vocabulary words (at least one)."""
    lines = [line.split(" ") for line in text.split("\n")]
    places = [(i, j) for i, words in enumerate(lines) for j in range(len(words))]
    for i, j in rng.sample(places, max(1, round(fraction * len(places)))):
        lines[i][j] = rng.choice(vocab)
    return "\n".join(" ".join(words) for words in lines)


def case_space_variant(text: str, rng: random.Random) -> str:
    """The same text up to case and runs of whitespace."""
    words = text.split(" ")
    out = []
    for w in words:
        w = w.upper() if rng.random() < 0.3 else w.title() if rng.random() < 0.3 else w
        out.append(w)
    joined = ("  " if rng.random() < 0.5 else " \t").join(out)
    return joined if joined != text else text.upper() + "  "


def random_strings(lengths, rng: random.Random) -> list:
    return ["".join(rng.choice(ALPHABET) for _ in range(n)) for n in lengths]


def char_shingles(text: str, k: int = 5) -> frozenset:
    return frozenset([text]) if len(text) < k else frozenset(text[i:i + k] for i in range(len(text) - k + 1))


def brute_force_pairs(texts, threshold: float = 0.8) -> dict:
    """{(i, j): Jaccard} over first occurrences of distinct texts, every pair whose char-5 Jaccard >= threshold.
    Pairs whose set sizes differ by more than the threshold allows are skipped (J <= small/large, exactly)."""
    first = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
    ids = sorted(first.values(), key=lambda i: len(char_shingles(texts[i])))
    sets = {i: char_shingles(texts[i]) for i in ids}
    sizes = [len(sets[i]) for i in ids]
    out = {}
    for a, i in enumerate(ids):
        sa = sizes[a]
        for b in range(a + 1, len(ids)):
            if sa < threshold * sizes[b]:
                break
            j = ids[b]
            inter = len(sets[i] & sets[j])
            jac = inter / (sa + sizes[b] - inter)
            if jac >= threshold:
                out[(min(i, j), max(i, j))] = jac
    return out


def plain_normalize(text: str) -> str:
    """An independent spelling of the engine's normalization (NFKC, casefold, whitespace runs)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def write_lines(path, lines) -> Path:
    path = Path(path)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
