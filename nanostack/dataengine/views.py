"""Looking at scores: the worst and best examples, the most surprising tokens, a review file for a person,
the paired comparison of two runs on the pinned test set, runs per version, and read-only SQL.

"When you sort your dataset by loss you are guaranteed to find something unexpected." Examples are
ranked by mean NLL per token, among those of 2 tokens or more (a one-token example's loss is mostly
the model's prior on lengths). compare pairs the two runs' losses example by example over the same
test examples and bootstraps the difference (1,000 resamples of examples), so a 95% interval that
excludes 0 means the change is not luck in which examples happened to be in the test set.
"""
import json

import numpy as np

from nanostack.dataengine.score import Score, score_run
from nanostack.dataengine.tables import query, read_parquet
from nanostack.dataengine.version import Version
from nanostack.errors import UserError

CONTEXT = 40
BOOTSTRAP = 1000


def texts_of(version: Version, rows) -> dict:
    """row -> text for a few rows, read from the version's Parquet without loading all of it."""
    rows = [int(r) for r in rows]
    if not rows:
        return {}
    found = read_parquet(version.path / "examples.parquet", columns=["row", "text"],
                         where=f"row IN ({', '.join(map(str, rows))})")
    return dict(zip(found["row"].tolist(), found["text"].tolist()))


def ranked(store, score: Score, n: int = 20, split: str = "test", best: bool = False) -> list:
    """The n examples of the split with the highest (best: lowest) mean NLL per token."""
    split = "test" if split == "val" else split
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r}", "use train or test")
    if n < 1:
        raise UserError("-n must be at least 1", "e.g. -n 20")
    order = "ASC" if best else "DESC"
    found = read_parquet(score.shards(), columns=["row", "example_id", "split", "nll_sum", "tokens", "nll_mean"],
                         where=f"split = '{split}' AND tokens >= 2", order=f"nll_mean {order}, row LIMIT {int(n)}")
    text = texts_of(Version(store, score.vid), found["row"])
    return [{"row": int(r), "id": int(i), "split": s, "nll_mean": float(m), "nll_sum": float(t), "tokens": int(k),
             "text": text.get(int(r), "")}
            for r, i, s, t, k, m in zip(found["row"], found["example_id"], found["split"], found["nll_sum"],
                                        found["tokens"], found["nll_mean"])]


def review(store, score: Score, n: int = 200, split: str = "train") -> str:
    """JSONL of the n worst examples, for a person to fix: edit "text", or add "drop": true, then
    `nanostack data relabel V --file review.jsonl` (unchanged lines change nothing)."""
    rows = ranked(store, score, n, split)
    return "".join(json.dumps({"id": r["id"], "split": r["split"], "loss": round(r["nll_mean"], 4),
                               "text": r["text"]}, ensure_ascii=False) + "\n" for r in rows)


def surprising_tokens(store, score: Score, n: int = 20, device: str = "cpu") -> list:
    """The n tokens with the highest NLL, each with CONTEXT characters around it and the model's top 3."""
    import torch  # noqa: PLC0415

    from nanostack.run import open_run  # noqa: PLC0415

    table = score.table()
    picks = []
    for shard in range(score.manifest["world_size"]):
        losses = score.token_losses(shard)
        if not len(losses):
            continue
        k = min(n, len(losses))
        top = np.argpartition(-losses.astype(np.float32), k - 1)[:k]
        picks.extend((float(losses[i]), shard, int(i)) for i in top)
    picks = sorted(picks, reverse=True)[:n]
    run = open_run(score.manifest["run"])
    model = run.load_model(score.manifest["checkpoint"], device)
    tokenizer = run.tokenizer()
    boundary = run.example_boundary
    boundary_id = tokenizer.encode(boundary, allowed_special="all")[0]
    version = Version(store, score.vid)
    out = []
    for loss, shard, position in picks:
        mine = np.flatnonzero(table["shard"] == shard)
        mine = mine[np.argsort(table["token_start"][mine], kind="stable")]  # in the order of the token file
        starts = table["token_start"][mine]
        k = mine[np.searchsorted(starts, position, side="right") - 1]
        row, j = int(table["row"][k]), position - int(table["token_start"][k])
        text = texts_of(version, [row])[row]
        ids = tokenizer.encode(text)
        targets = ids + [boundary_id]
        x = torch.tensor([[boundary_id] + ids], dtype=torch.long, device=device)
        y = torch.tensor([targets], dtype=torch.long, device=device)
        with torch.no_grad():
            logits, _ = model(x, y)  # with targets, every position's logits
        probs = torch.softmax(logits[0, j].float(), dim=-1)
        top_p, top_i = probs.topk(3)
        before = tokenizer.decode(ids[:j])[-CONTEXT:]
        after = tokenizer.decode(targets[j + 1:])[:CONTEXT]
        out.append({"nll": loss, "row": row, "id": int(table["example_id"][k]), "split": table["split"][k],
                    "token": tokenizer.decode([targets[j]]), "before": before, "after": after,
                    "top3": [(tokenizer.decode([int(i)]), round(float(p), 4)) for p, i in zip(top_p, top_i)]})
    return out


def compare(store, run_a, run_b, on=None, n: int = 10, device: str = "cpu", seed: int = 0) -> dict:
    """Run B against run A, example by example on the test split of `on` (default: B's version)."""
    from nanostack.run import open_run  # noqa: PLC0415

    if on is None:
        recorded = open_run(run_b).config.get("data_version") or open_run(run_a).config.get("data_version")
        if not recorded:
            raise UserError("neither run trained on a dataset version", "say which test set: --on V")
        version = Version(store, store.resolve(recorded["vid"]))
    else:
        version = on if isinstance(on, Version) else Version(store, store.resolve(on.split(":")[0]),
                                                             on.split(":")[0])
    a = score_run(store, run_a, version, splits=("test",), device=device, log=lambda *_: None)
    b = score_run(store, run_b, version, splits=("test",), device=device, log=lambda *_: None)
    ta, tb = a.table(), b.table()
    rows = np.intersect1d(ta["row"], tb["row"])
    ia, ib = np.searchsorted(ta["row"], rows), np.searchsorted(tb["row"], rows)
    nll_a, nll_b = ta["nll_sum"][ia], tb["nll_sum"][ib]
    if (ta["tokens"][ia] == tb["tokens"][ib]).all():
        units, unit = ta["tokens"][ia].astype(np.float64), "token"
    else:  # different tokenizers: compare per byte of text (plus its boundary)
        text = texts_of(version, rows) if len(rows) <= 100_000 else dict(zip(version.table()["row"].tolist(),
                                                                            version.table()["text"].tolist()))
        units, unit = np.array([len(text[int(r)].encode("utf-8")) + 1 for r in rows], dtype=np.float64), "byte"
    if not len(rows):
        raise UserError("the two runs share no scored test example", "compare runs on one pinned test set")
    delta = nll_b - nll_a
    estimate = float(delta.sum() / units.sum())
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(rows), size=(BOOTSTRAP, len(rows)))
    boot = delta[draws].sum(axis=1) / units[draws].sum(axis=1)
    low, high = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
    per_example = delta / units
    worst = np.argsort(-per_example)[:n]
    text = texts_of(version, rows[worst])
    return {"version": version.vid, "version_ref": version.ref, "examples": int(len(rows)), "unit": unit,
            "a": {"run": a.manifest["run"], "score": a.score_id, "nll": float(nll_a.sum() / units.sum())},
            "b": {"run": b.manifest["run"], "score": b.score_id, "nll": float(nll_b.sum() / units.sum())},
            "delta": estimate, "ci95": [low, high], "better": high < 0, "worse": low > 0,
            "regressions": [{"row": int(rows[i]), "delta_per_unit": float(per_example[i]),
                             "text": text.get(int(rows[i]), "")} for i in worst if per_example[i] > 0]}


def runs(store, version=None) -> list:
    """Training runs on versions (runs.jsonl), the newest record per run folder, optionally of one version."""
    latest = {}
    for record in store.runs():
        latest[record["run"]] = record
    records = sorted(latest.values(), key=lambda r: r.get("time", 0))
    if version is not None:
        records = [r for r in records if r["vid"] == version.vid]
    return records


def sql(store, text: str, version=None, score=None) -> dict:
    """A read-only SELECT over: versions, runs, and with a version `examples`, with a score `losses`."""
    from nanostack.dataengine.catalog import list_versions  # noqa: PLC0415

    listed = list_versions(store)
    tables = {"versions": {"vid": np.array([v["vid"] for v in listed], dtype=object),
                           "refs": np.array([",".join(v.get("refs", [])) for v in listed], dtype=object),
                           "kind": np.array([v.get("kind", "") for v in listed], dtype=object),
                           "examples": np.array([v.get("counts", {}).get("examples", 0) for v in listed]),
                           "op": np.array([v.get("op", "") for v in listed], dtype=object)}}
    recorded = runs(store)
    tables["runs"] = {"run": np.array([r["run"] for r in recorded], dtype=object),
                      "vid": np.array([r["vid"] for r in recorded], dtype=object),
                      "ref": np.array([r.get("ref", "") for r in recorded], dtype=object),
                      "time": np.array([float(r.get("time", 0)) for r in recorded])}
    if version is not None:
        tables["examples"] = [version.path / "examples.parquet"]
    if score is not None:
        tables["losses"] = score.shards()
    return query(text, tables, what="the query")
