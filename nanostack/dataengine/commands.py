"""`nanostack data ...` and `nanostack engine ...`: argument parsers, and the calls into the engine's API with
the printing of what comes back. Nothing is computed here."""
import json
import sys

STORE_HELP = "The store is NANOSTACK_HOME (default: .nanostack in the current directory)."
V_HELP = "a version: NAME (NAME@latest), NAME@TAG, or a prefix of a version id"


def add_commands(sub, parser_class) -> None:
    add_data_commands(sub, parser_class)
    add_engine_commands(sub, parser_class)


def add_data_commands(sub, parser_class) -> None:
    d = sub.add_parser("data", help="dataset versions: import, report, dedupe, curate, verify",
                       description="Datasets as versioned programs: import text (or the server's telemetry) as a "
                                   "version, inspect it, and derive new versions by curation ops, each with lineage. "
                                   "Ops never touch the test split unless asked (--edit-test). " + STORE_HELP)
    ds = d.add_subparsers(dest="action", required=True, parser_class=parser_class, metavar="ACTION")
    p = ds.add_parser("import", help="import a file, a folder, or telemetry Parquet files as a new version",
                      description="Store the files by content hash and make a root version: the examples (lines, "
                                  "paragraphs, or whole files), split into train and test by the data layer's seeded "
                                  "rule, frozen for every derived version. A folder holding telemetry-*.parquet (from "
                                  "`nanostack serve --telemetry DIR`) imports one example per prompt.")
    p.add_argument("path", metavar="PATH", help="a text file, a folder of text files, or a telemetry folder")
    p.add_argument("--examples", choices=("lines", "paragraphs", "files"), default="lines",
                   help="what one example is (default: lines)")
    p.add_argument("--name", help="the name to file it under (default: the file or folder name)")
    p.add_argument("--seed", type=int, default=1337,
                   help="seed of the train/test split (default: 1337, as `nanostack train`; makemore uses 3407)")
    ds.add_parser("list", help="every version, newest first", description="List every version with its names.")
    for name, helptext in (("show", "one version: counts, kind, origin"), ("log", "a version's lineage"),
                           ("materialize", "rewrite a version's train.txt/.json and test.txt/.json")):
        c = ds.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        c.add_argument("version", metavar="V", help=V_HELP)
    p = ds.add_parser("diff", help="what changed between two versions", description="Examples removed and added "
                      "(per split, by content) and reweighted between V1 and V2.")
    p.add_argument("a", metavar="V1", help=V_HELP)
    p.add_argument("b", metavar="V2", help=V_HELP)
    p = ds.add_parser("report", help="lengths, encoding, characters, tokens, duplicates and leaks",
                      description="The data report: lengths and outliers, encoding problems, rare characters, token "
                                  "statistics, exact and normalized duplicates (near ones with --near-dup) and leaks "
                                  "between the splits. Per-example flags go to the version's signals.parquet, "
                                  "queryable by --where.")
    p.add_argument("version", metavar="V", help=V_HELP)
    p.add_argument("--near-dup", action="store_true", help="also find near duplicates (MinHash for documents, "
                                                            "edit distance 1 for short lines)")
    p.add_argument("--threshold", type=float, default=0.8, help="Jaccard threshold of near duplicates (default: 0.8)")
    p.add_argument("--tokenizer", default="char", help="tokenizer for the token statistics: char, bpe:N, gpt2 or a "
                                                       ".json file (default: char)")
    p.add_argument("--format", choices=("md", "json"), default="md", help="markdown or JSON (default: md)")
    p = ds.add_parser("dedupe", help="drop copies: exact, normalized or near",
                      description="Drop duplicate examples. With --keep test (the default), a cluster that holds a "
                                  "test example loses all its train members (so train no longer leaks into test); "
                                  "other clusters keep their first member.")
    p.add_argument("version", metavar="V", help=V_HELP)
    p.add_argument("--mode", choices=("exact", "normalized", "near"), default="exact",
                   help="exact text, normalized (NFKC, casefold, whitespace), or near (MinHash + exact Jaccard; "
                        "short lines are only reported) (default: exact)")
    p.add_argument("--threshold", type=float, default=0.8, help="Jaccard threshold for --mode near (default: 0.8)")
    p.add_argument("--keep", choices=("test", "first", "longest"), default="test",
                   help="which member of a cluster survives (default: test)")
    _op_flags(p)
    p = ds.add_parser("drop", help="drop examples by id, by SQL condition, or the worst by loss",
                      description="Drop examples: those whose ids a file lists, those where an SQL condition holds "
                                  "(over the table `examples`: its columns, the report's signals, and with --score "
                                  "nll_mean, nll_sum, tokens), or the worst fraction of train by a score's loss.")
    p.add_argument("version", metavar="V", help=V_HELP)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--ids", metavar="FILE", help="a file of example ids, one per line (or JSONL with \"id\")")
    which.add_argument("--where", metavar="SQL", help="an SQL condition, e.g. \"length(text) > 30\"")
    which.add_argument("--worst", metavar="AMOUNT", help="the worst train examples by --score: 0.5%% or a count")
    p.add_argument("--score", metavar="S", help="a score id (or a scored run folder), for --worst and --where")
    _op_flags(p)
    p = ds.add_parser("filter", help="keep the examples where an SQL condition holds",
                      description="Keep the train examples where the condition holds (test ones stay unless "
                                  "--edit-test). The table is `examples`, as for `data drop --where`.")
    p.add_argument("version", metavar="V", help=V_HELP)
    p.add_argument("--where", metavar="SQL", required=True, help="an SQL condition")
    p.add_argument("--score", metavar="S", help="a score, to filter on nll_mean, nll_sum, tokens")
    _op_flags(p)
    p = ds.add_parser("upweight", help="repeat the highest-loss train examples",
                      description="Multiply the weight of the train examples with the highest loss by --factor; "
                                  "training repeats an example as often as its weight says (at most 255).")
    p.add_argument("version", metavar="V", help=V_HELP)
    p.add_argument("--score", metavar="S", required=True, help="a score id (or a scored run folder)")
    p.add_argument("--top", default="5%", help="how many: a percentage of train or a count (default: 5%%)")
    p.add_argument("--factor", type=int, default=2, help="weight multiplier (default: 2)")
    p.add_argument("--name", help="file the result under this name (default: V's name)")
    p = ds.add_parser("relabel", help="edit or drop examples by id from a JSONL file",
                      description='Apply fixes: each line {"id": ID, "text": "new text"} or {"id": ID, "drop": true} '
                                  "(the format `nanostack engine review` writes; unchanged lines change nothing).")
    p.add_argument("version", metavar="V", help=V_HELP)
    p.add_argument("--file", required=True, help="the JSONL file of fixes")
    _op_flags(p)
    p = ds.add_parser("append", help="add the examples of a file or folder",
                      description="Add new examples, cut as the version's are: to train, or with --split hash by "
                                  "content hash (1 in 10 to test, which needs --edit-test).")
    p.add_argument("version", metavar="V", help=V_HELP)
    p.add_argument("path", metavar="PATH", help="a text file, a folder, or a telemetry folder")
    p.add_argument("--split", choices=("train", "hash"), default="train", help="where new examples go (default: train)")
    _op_flags(p)
    p = ds.add_parser("tag", help="give a version another name", description="Name a version NAME@TAG (or TAG under "
                                                                              "its own name).")
    p.add_argument("version", metavar="V", help=V_HELP)
    p.add_argument("name", metavar="NAME", help="NAME@TAG, or TAG")
    p = ds.add_parser("untag", help="remove a name", description="Remove the name NAME@TAG; the version stays until "
                      "`data gc` finds that nothing reaches it.")
    p.add_argument("ref", metavar="NAME@TAG")
    ds.add_parser("verify", help="rehash every object and version", description="Rehash every stored file and "
                  "recompute every version's id; exit 2 naming the first problem if anything changed.")
    p = ds.add_parser("gc", help="remove what no name reaches", description="Remove versions no ref reaches (with "
                      "their ancestors kept), objects no kept version needs, and their scores.")
    p.add_argument("--dry-run", action="store_true", help="only list what would go")


def _op_flags(p) -> None:
    p.add_argument("--edit-test", action="store_true", help="allow the op to change the test split")
    p.add_argument("--name", help="file the result under this name (default: V's name)")


def add_engine_commands(sub, parser_class) -> None:
    e = sub.add_parser("engine", help="the model in the loop: per-example losses, hard cases, compare, retrain",
                       description="Score every example of a version with a trained run, look at the hardest ones, "
                                   "compare runs on the pinned test set, and spin the loop train -> score -> curate "
                                   "-> retrain. " + STORE_HELP)
    es = e.add_subparsers(dest="action", required=True, parser_class=parser_class, metavar="ACTION")
    p = es.add_parser("score", help="per-example (and per-token) loss of a run on a version",
                      description="Score every example of a version (default: the one the run trained on) with the "
                                  "run's checkpoint; prints the score id. Under torchrun each rank scores its share "
                                  "(example id mod WORLD_SIZE) and writes its own Parquet file.")
    p.add_argument("run_dir", metavar="RUN", help="a run folder of `nanostack train`")
    p.add_argument("--data", metavar="V", help=V_HELP + " (default: the run's own)")
    p.add_argument("--splits", default="train,test", help="splits to score (default: train,test)")
    p.add_argument("--tokens", action="store_true", help="also keep every token's loss (2 bytes a token)")
    p.add_argument("--checkpoint", choices=("best", "latest"), default="best", help="which checkpoint (default: best)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default: cpu)")
    p.add_argument("--batch-size", type=int, default=None, help="examples per forward pass (default: 500)")
    for name, helptext in (("worst", "the examples with the highest loss"), ("best", "the examples with the lowest "
                                                                                     "loss")):
        c = es.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] +
                          " (mean NLL per token, among examples of 2 tokens or more).")
        c.add_argument("score", metavar="S", help="a score id (or a scored run folder)")
        c.add_argument("--split", default="test", help="train or test (default: test)")
        c.add_argument("-n", type=int, default=20, help="how many (default: 20)")
    p = es.add_parser("tokens", help="the most surprising tokens, in context, with the model's top 3",
                      description="The tokens with the highest loss, with 40 characters around each and the model's "
                                  "three most likely predictions (needs a score made with --tokens).")
    p.add_argument("score", metavar="S", help="a score id (or a scored run folder)")
    p.add_argument("-n", type=int, default=20, help="how many (default: 20)")
    p.add_argument("--device", default="cpu", help="device for the model (default: cpu)")
    p = es.add_parser("review", help="the worst examples as JSONL, for a person to fix",
                      description="Print the worst examples as JSONL; edit \"text\" or add \"drop\": true, then apply "
                                  "with `nanostack data relabel V --file review.jsonl`.")
    p.add_argument("score", metavar="S", help="a score id (or a scored run folder)")
    p.add_argument("-n", type=int, default=200, help="how many (default: 200)")
    p.add_argument("--split", default="train", help="train or test (default: train)")
    p = es.add_parser("compare", help="run B against run A on the pinned test set, with a 95%% interval",
                      description="Score both runs on the same test examples and report the paired change in NLL "
                                  "(B - A, per token) with a bootstrap 95% interval, and the largest regressions.")
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--on", metavar="V[:test]", help="whose test split (default: RUN_B's version)")
    p.add_argument("-n", type=int, default=10, help="regressions to list (default: 10)")
    p.add_argument("--device", default="cpu", help="device (default: cpu)")
    p = es.add_parser("runs", help="training runs on versions", description="Runs that trained on versions "
                      "(runs.jsonl).")
    p.add_argument("--version", metavar="V", help="only runs on this version")
    p = es.add_parser("sql", help="a read-only SQL query over the store",
                      description="Run one SELECT over the tables versions and runs; with --data, examples; with "
                                  "--score, losses. Anything that writes is refused.")
    p.add_argument("query", metavar="SQL")
    p.add_argument("--data", metavar="V", help="expose this version as `examples`")
    p.add_argument("--score", metavar="S", help="expose this score as `losses`")
    p.add_argument("--limit", type=int, default=50, help="rows to print (default: 50)")
    p = es.add_parser("loop", help="train -> score -> compare -> curate -> retrain",
                      description="Spin the data engine: train on --data, score, compare with the previous round on "
                                  "the pinned test set, curate, retrain; tabulated in loop.md. Stops after --rounds "
                                  "curated rounds, at a fixed point, or when a round no longer helps at 95% "
                                  "confidence.")
    p.add_argument("--data", metavar="V", required=True, help=V_HELP)
    p.add_argument("--config", help="a preset name or TOML file for training")
    p.add_argument("--rounds", type=int, default=1, help="rounds of curation (default: 1)")
    p.add_argument("--curate", default="dedupe=near; drop=worst:0.5%",
                   help='ops separated by ";": dedupe=MODE, drop=worst:AMOUNT, upweight=worst:AMOUNT:FACTOR, '
                        'filter=SQL (default: "dedupe=near; drop=worst:0.5%%")')
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a training setting for every round, e.g. --set max_iters=500 (repeatable)")
    p.add_argument("--review", action="store_true", help="stop after scoring round 0 with review.jsonl for a person")
    p.add_argument("--out", help="the loop's folder (default: NANOSTACK_HOME/loops/ID)")
    p.add_argument("--device", default="cpu", help="device (default: cpu)")


# ---- running ------------------------------------------------------------------------------------------

def run(args) -> int:
    from nanostack.dataengine.tables import duckdb  # noqa: PLC0415

    duckdb()  # without it: one line saying what to install
    from nanostack.dataengine import open_engine  # noqa: PLC0415

    engine = open_engine()
    handler = DATA if args.command == "data" else ENGINE
    handler[args.action](engine, args)
    return 0


def _score(engine, args):
    if getattr(args, "score", None) is None:
        return None
    return engine.open_score(args.score)


def data_import(engine, args):
    v = engine.import_path(args.path, args.examples, args.name, args.seed)
    c = v.counts
    skipped = v.manifest.get("skipped", [])
    print(f"{v.ref} = {v.vid[:12]}: {c['examples']:,} {v.kind} examples ({c['train']:,} train, {c['test']:,} test, "
          f"{c['distinct']:,} distinct)" + ("" if v.created else " (already imported: nothing written)"))
    for s in skipped:
        print(f"skipped {s['file']}: {s['kind']} at byte {s['offset']}")


def data_list(engine, args):
    rows = engine.list()
    if not rows:
        print(f"no versions in {engine.store.home}")
    for v in rows:
        if v.get("damaged"):
            print(f"{v['vid'][:12]}  DAMAGED (run `nanostack data verify`)")
            continue
        c = v["counts"]
        print(f"{v['vid'][:12]}  {', '.join(v['refs']) or '(no name)':<28} {v['kind']:<10} {c['examples']:>10,} "
              f"({c['train']:,} train, {c['test']:,} test)  {v['op']}" + (f": {v['note']}" if v["note"] else ""))


def data_show(engine, args):
    v = engine.version(args.version)
    m = v.manifest
    print(json.dumps({"vid": v.vid, "refs": engine.store.names_of(v.vid), "kind": v.kind, "counts": m["counts"],
                      "parents": m.get("parents", []), "op": m.get("op"), "note": m.get("note", ""),
                      "sources": m.get("sources", [])[:20], "skipped": m.get("skipped", []), "path": str(v.path)},
                     indent=2, ensure_ascii=False))


def data_log(engine, args):
    for entry in engine.version(args.version).log():
        if entry.get("missing"):
            print(f"{entry['vid'][:12]}  (missing)")
            continue
        params = {k: v for k, v in entry["params"].items() if k not in ("op_version", "inputs", "objects")}
        c = entry["counts"]
        print(f"{entry['vid'][:12]}  {entry['op']:<9} {json.dumps(params, ensure_ascii=False)[:70]:<70} "
              f"{c['examples']:>9,} examples  {', '.join(entry['refs'])}" + (f"  ({entry['note']})" if entry['note']
                                                                             else ""))


def data_diff(engine, args):
    d = engine.version(args.a).diff(engine.version(args.b))
    if d["same"]:
        print("the same version")
        return
    for what in ("removed", "added"):
        for split in ("train", "test"):
            part = d[what][split]
            if part["count"]:
                print(f"{what} from {split}: {part['count']:,}" if what == "removed" else
                      f"{what} to {split}: {part['count']:,}")
                for text in part["examples"]:
                    print(f"  {text!r}")
    if d["reweighted"]["count"]:
        print(f"reweighted: {d['reweighted']['count']:,}")
        for text in d["reweighted"]["examples"]:
            print(f"  {text}")


def data_report(engine, args):
    from nanostack.dataengine.report import to_markdown  # noqa: PLC0415

    r = engine.version(args.version).report(args.near_dup, args.tokenizer, args.threshold)
    print(json.dumps(r, indent=2, ensure_ascii=False) if args.format == "json" else to_markdown(r))


def _print_op(version):
    print(version.op_result)


def data_dedupe(engine, args):
    _print_op(engine.version(args.version).dedupe(args.mode, args.keep, args.threshold, args.edit_test, args.name))


def data_drop(engine, args):
    v = engine.version(args.version)
    _print_op(v.drop(ids_file=args.ids, where=args.where, score=_score(engine, args), worst=args.worst,
                     edit_test=args.edit_test, name=args.name))


def data_filter(engine, args):
    _print_op(engine.version(args.version).filter(args.where, _score(engine, args), args.edit_test, args.name))


def data_upweight(engine, args):
    _print_op(engine.version(args.version).upweight(_score(engine, args), args.top, args.factor, args.name))


def data_relabel(engine, args):
    _print_op(engine.version(args.version).relabel(args.file, args.edit_test, args.name))


def data_append(engine, args):
    _print_op(engine.version(args.version).append(args.path, args.split, args.edit_test, args.name))


def data_tag(engine, args):
    v = engine.version(args.version)
    print(f"{v.tag(args.name)} = {v.vid[:12]}")


def data_untag(engine, args):
    print(f"removed {args.ref} (was {engine.untag(args.ref)[:12]})")


def data_materialize(engine, args):
    print(engine.version(args.version).materialize())


def data_verify(engine, args):
    found = engine.verify()
    print(f"ok: {found['objects']} objects, {found['versions']} versions, {found['refs']} refs verified")


def data_gc(engine, args):
    done = engine.gc(args.dry_run)
    verb = "would remove" if done["dry_run"] else "removed"
    print(f"{verb} {len(done['versions'])} version(s), {done['objects']} object(s), {done['scores']} score(s), "
          f"{done['derivations']} cached derivation(s), {done['leftovers']} unfinished write(s)")
    for vid in done["versions"]:
        print(f"  version {vid}")


def engine_score(engine, args):
    from nanostack.models.engines import resolve_device  # noqa: PLC0415

    s = engine.score(args.run_dir, args.data, args.splits, args.tokens, args.checkpoint, resolve_device(args.device),
                     args.batch_size)
    m = s.manifest
    if m.get("world_size", 1) > 1 and _rank() != 0:
        return
    parts = [f"{split} {v['nll_per_token']:.4f} over {v['examples']:,} examples" for split, v in m["summary"].items()]
    print(f"score {s.score_id[:12]} of {m['version_ref']} ({m['vid'][:12]}) by {m['run']}: NLL per token "
          + "; ".join(parts))
    skipped = {k: v for k, v in m["skipped_too_long"].items() if v}
    if skipped:
        print(f"not scored (longer than the model's block size): {skipped}")
    print(f"look at it: nanostack engine worst {s.score_id[:12]}")


def _rank() -> int:
    import os  # noqa: PLC0415

    return int(os.environ.get("RANK", "0"))


def _show(text: str, width: int = 100) -> str:
    text = text.replace("\n", "⏎")
    return text if len(text) <= width else text[:width - 1] + "…"


def engine_ranked(engine, args):
    s = engine.open_score(args.score)
    rows = s.worst(args.n, args.split) if args.action == "worst" else s.best(args.n, args.split)
    for r in rows:
        print(f"{r['nll_mean']:8.4f}  {r['tokens']:>4} tok  id {r['id']:>20}  {_show(r['text'])}")


def engine_tokens(engine, args):
    for t in engine.open_score(args.score).tokens(args.n, args.device):
        top = ", ".join(f"{tok!r} {p:.2f}" for tok, p in t["top3"])
        print(f"{t['nll']:7.3f}  …{_show(t['before'], 40)}[{_show(t['token'], 10)}]{_show(t['after'], 40)}…  "
              f"top 3: {top}")


def engine_review(engine, args):
    sys.stdout.write(engine.open_score(args.score).review(args.n, args.split))


def engine_compare(engine, args):
    from nanostack.models.engines import resolve_device  # noqa: PLC0415

    c = engine.compare(args.run_a, args.run_b, args.on, args.n, resolve_device(args.device))
    verdict = "better" if c["better"] else "worse" if c["worse"] else "no significant change"
    print(f"test set of {c['version_ref']} ({c['examples']:,} examples): A {c['a']['nll']:.4f}, B {c['b']['nll']:.4f} "
          f"NLL per {c['unit']}; B - A = {c['delta']:+.4f} [95% CI {c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}]: "
          f"{verdict}")
    for r in c["regressions"]:
        print(f"  {r['delta_per_unit']:+.4f}  {_show(r['text'])}")


def engine_runs(engine, args):
    for r in engine.runs(args.version):
        print(f"{r['vid'][:12]}  {r.get('ref', ''):<24} {r['run']}")


def engine_sql(engine, args):
    result = engine.sql(args.query, args.data, args.score)
    names = list(result)
    print("\t".join(names))
    n = len(result[names[0]]) if names else 0
    for i in range(min(n, args.limit)):
        print("\t".join(_show(str(result[k][i]), 60) for k in names))
    if n > args.limit:
        print(f"… {n - args.limit} more rows (--limit)")


def engine_loop(engine, args):
    from nanostack.errors import UserError  # noqa: PLC0415

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r} is not KEY=VALUE", "e.g. --set max_iters=500")
        overrides[key.strip().replace("-", "_")] = value.strip()
    record = engine.loop(args.data, args.config, args.rounds, args.curate, overrides, args.review, args.out, args.device)
    print(f"stopped: {record['stopped']}; engine share {100 * record['engine_share']:.1f}% of the time; "
          f"table: {record['folder']}/loop.md")


DATA = {"import": data_import, "list": data_list, "show": data_show, "log": data_log, "diff": data_diff,
        "report": data_report, "dedupe": data_dedupe, "drop": data_drop, "filter": data_filter,
        "upweight": data_upweight, "relabel": data_relabel, "append": data_append, "tag": data_tag, "untag": data_untag,
        "materialize": data_materialize, "verify": data_verify, "gc": data_gc}
ENGINE = {"score": engine_score, "worst": engine_ranked, "best": engine_ranked, "tokens": engine_tokens,
          "review": engine_review, "compare": engine_compare, "runs": engine_runs, "sql": engine_sql,
          "loop": engine_loop}
