"""`nanostack engine loop`: train -> score -> compare with the last round on the pinned test set -> curate ->
retrain, round by round, tabulated in loop.md.

Round 0 trains on the given version; each later round trains on what the curation of the round before
made. Every round is compared with the one before on the same test examples (the root's test split,
which ops never touch), with a bootstrap 95% interval. The loop stops after N curated rounds, at a
fixed point (curation changes nothing), or when a round no longer helps at 95% confidence (the
interval of its change does not lie below 0). With review, it stops after scoring and writes the
worst examples to review.jsonl for a person (then `data relabel`, and run the loop again).

The curation is a list of ops separated by ';':
    dedupe=exact|normalized|near      drop=worst:0.5%       upweight=worst:5%:2       filter=SQL
"""
import hashlib
import json
import time
from pathlib import Path

from nanostack.dataengine import ops
from nanostack.dataengine.score import score_run
from nanostack.dataengine.store import canonical
from nanostack.dataengine.version import Version
from nanostack.dataengine.views import compare, review
from nanostack.errors import UserError
from nanostack.io import write_atomic, write_json

OPS = ("dedupe", "drop", "upweight", "filter")


def parse_curation(text: str) -> list:
    """[(op, argument)] of 'dedupe=near; drop=worst:0.5%'."""
    steps = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        op, sep, arg = part.partition("=")
        op, arg = op.strip(), arg.strip()
        if not sep or op not in OPS or not arg:
            raise UserError(f"--curate step {part!r} is not OP=ARG with OP one of {', '.join(OPS)}",
                            'e.g. --curate "dedupe=near; drop=worst:0.5%"')
        if op == "dedupe" and arg not in ops.DEDUPE_MODES:
            raise UserError(f"--curate dedupe={arg}: unknown mode", f"use {', '.join(ops.DEDUPE_MODES)}")
        if op in ("drop", "upweight") and not arg.startswith("worst:"):
            raise UserError(f"--curate {op}={arg}: say which examples", f"e.g. {op}=worst:1%"
                            + (":2" if op == "upweight" else ""))
        steps.append((op, arg))
    return steps


def curate(store, version: Version, score, steps: list) -> tuple:
    """Apply the steps in order; returns (new version, notes)."""
    notes = []
    for op, arg in steps:
        if op == "dedupe":
            result = ops.dedupe(store, version, mode=arg)
        elif op == "drop":
            result = ops.drop(store, version, score=score, worst=arg.split(":", 1)[1])
        elif op == "upweight":
            _, top, *factor = arg.split(":")
            result = ops.upweight(store, version, score, top=top, factor=int(factor[0]) if factor else 2)
        else:
            result = ops.filter_rows(store, version, arg, score=score)
        notes.append(f"{op}: {result.note}")
        version = result.version
    return version, notes


def run_loop(store, data, preset=None, rounds: int = 1, curation: str = "dedupe=near; drop=worst:0.5%",
             overrides=None, review_first: bool = False, out=None, device="cpu", log=print) -> dict:
    """Spin the loop; returns its record (also written as loop.json and loop.md in the loop's folder)."""
    from nanostack.train import train  # noqa: PLC0415

    if rounds < 0:
        raise UserError(f"--rounds must be >= 0, got {rounds}", "e.g. --rounds 2")
    steps = parse_curation(curation)
    overrides = dict(overrides or {})
    if "data" in overrides:
        raise UserError("the loop chooses the data of each round", "give it with --data, not as a setting")
    version = data if isinstance(data, Version) else Version(store, store.resolve(data), data)
    data = version.ref
    loop_id = hashlib.sha256(canonical({"vid": version.vid, "preset": preset, "rounds": rounds,
                                        "curate": curation, "overrides": overrides}).encode()).hexdigest()[:12]
    folder = Path(out) if out else store.home / "loops" / loop_id
    folder.mkdir(parents=True, exist_ok=True)
    record = {"loop": loop_id, "data": data, "root": version.vid, "preset": preset, "curate": curation,
              "overrides": overrides, "rounds": [], "stopped": ""}
    quiet = lambda *a, **k: None  # noqa: E731
    previous = None
    for r in range(rounds + 1):
        entry = {"round": r, "version": version.vid, "ref": version.ref, "train": version.counts["train"],
                 "train_weighted": version.counts["train_weighted"]}
        run_dir = folder / f"round-{r}"
        t = time.perf_counter()
        if not reusable(run_dir, version.vid):
            train(run_dir, {**overrides, "data": str(version.path), "device": device}, preset, force=True, log=quiet)
        entry["train_s"] = time.perf_counter() - t
        t = time.perf_counter()
        score = score_run(store, run_dir, version, device=device, log=quiet)
        entry["score"] = score.score_id
        entry["test_nll"] = score.summary()["test"]["nll_per_token"]
        if previous is not None:
            change = compare(store, previous, run_dir, on=version, device=device)
            entry.update(delta=change["delta"], ci95=change["ci95"], unit=change["unit"])
        entry["engine_s"] = time.perf_counter() - t
        log(f"round {r}: {version.ref} ({version.counts['train']:,} train), test NLL {entry['test_nll']:.4f}"
            + (f", change {entry['delta']:+.4f} [{entry['ci95'][0]:+.4f}, {entry['ci95'][1]:+.4f}]"
               if "delta" in entry else ""))
        record["rounds"].append(entry)
        previous = run_dir
        if "ci95" in entry and entry["ci95"][1] >= 0:
            record["stopped"] = f"round {r} no longer helps at 95% confidence"
            break
        if review_first:
            write_atomic(folder / f"review-{r}.jsonl", review(store, score, 200))
            record["stopped"] = (f"review: fix {folder / f'review-{r}.jsonl'}, then `nanostack data relabel "
                                 f"{version.vid[:12]} --file ...` and run the loop on the result")
            break
        if r == rounds:
            record["stopped"] = f"after {rounds} round(s) of curation"
            break
        t = time.perf_counter()
        curated, notes = curate(store, version, score, steps)
        entry["curate_s"] = time.perf_counter() - t
        entry["engine_s"] += entry["curate_s"]
        entry["curated"] = notes
        if curated.vid == version.vid:
            record["stopped"] = f"fixed point: curation changed nothing after round {r}"
            break
        version = curated
    totals = {k: sum(e.get(k, 0.0) for e in record["rounds"]) for k in ("train_s", "engine_s")}
    record["engine_share"] = totals["engine_s"] / max(totals["train_s"] + totals["engine_s"], 1e-9)
    write_json(folder / "loop.json", json.loads(json.dumps(record)))
    write_atomic(folder / "loop.md", to_markdown(record))
    record["folder"] = str(folder)
    return record


def reusable(run_dir: Path, vid: str) -> bool:
    """A finished run of an earlier try of this loop, on this version (the loop can be run again)."""
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return config.get("data_version", {}).get("vid") == vid and (run_dir / "best").is_dir()


def to_markdown(record: dict) -> str:
    out = [f"# Data engine loop {record['loop']}", "",
           f"data {record['data']} ({record['root'][:12]}), config {record['preset']}, curate `{record['curate']}`", "",
           "| round | version | train examples | test NLL | change vs previous [95% CI] | curation | train s | engine s |",
           "|---|---|---|---|---|---|---|---|"]
    for e in record["rounds"]:
        change = (f"{e['delta']:+.4f} [{e['ci95'][0]:+.4f}, {e['ci95'][1]:+.4f}]" if "delta" in e else "–")
        out.append(f"| {e['round']} | {e['ref']} ({e['version'][:12]}) | {e['train']:,} | {e['test_nll']:.4f} | "
                   f"{change} | {'; '.join(e.get('curated', [])) or '–'} | {e['train_s']:.1f} | {e['engine_s']:.1f} |")
    out += ["", f"Stopped: {record['stopped']}. The engine's share of the loop's time: "
            f"{100 * record['engine_share']:.1f}%.", ""]
    return "\n".join(out)
