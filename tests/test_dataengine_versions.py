"""Dataset versions: import (files, folders, telemetry), content ids, refs and lineage, training on NAME@TAG,
the ops and their cache (T9), and bad input: one line, exit 2, and nothing in the store changed."""
import hashlib
import json
import random
import sys

import numpy as np
import pytest
import torch

from testkit import TINY, flags, run_cli, shared_file, one_torch_thread  # noqa: F401 (one_torch_thread: a fixture)
from dataengine_helpers import write_lines, write_telemetry
from nanostack.data import open_dataset, read_examples
from nanostack.data.examples import example_id

pytest.importorskip("duckdb")
import nanostack.dataengine as de  # noqa: E402

NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia", "harper", "evelyn", "abigail",
         "emily", "elizabeth", "mila", "ella", "avery", "sofia", "camila", "aria", "scarlett", "victoria", "madison",
         "luna", "grace", "chloe", "penelope", "layla", "riley", "zoey", "nora", "lily", "eleanor", "hannah"]



@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "store"
    monkeypatch.setenv("NANOSTACK_HOME", str(path))
    return path


@pytest.fixture
def small(tmp_path):
    """200 lines of names (with repeats), enough for a split of 180 / 20."""
    rng = random.Random(0)
    return write_lines(tmp_path / "small.txt", [rng.choice(NAMES) + rng.choice(["", "a", "e", "ie"])
                                                for _ in range(200)])


def snapshot(home) -> dict:
    """Every file of the store and its hash (to show a failed command changed nothing)."""
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file() and p.name != "lock"}


def test_import_keeps_the_data_layers_split_and_ids(home):
    names = shared_file("names.txt")
    engine = de.open_engine()
    v = engine.import_path(names, name="names", seed=3407)
    assert v.ref == "names@1" and v.counts == {"examples": 32033, "train": 31033, "test": 1000,
                                                "train_weighted": 31033, "distinct": 29494}
    same = read_examples(str(names), 3407, "lines", "char")
    assert sorted(v.texts("train")) == sorted(same.train_words) and sorted(v.texts("test")) == sorted(same.test_words)
    table = v.table()
    assert table["example_id"][5] == example_id(table["text"][5])
    data = open_dataset("names@1", "char")  # what `nanostack train --data names@1` trains on
    assert sorted(data.train_words) == sorted(same.train_words) and data.data_hash == v.vid
    assert [e.id for e in data.examples("test")][:3] == [example_id(t) for t in v.texts("test")[:3]]
    assert data.describe()["data_version"]["vid"] == v.vid


def test_equal_content_has_one_id_however_it_is_made(home, small, tmp_path):
    engine = de.open_engine()
    a = engine.import_path(small, name="small")
    again = engine.import_path(small, name="small")
    assert again.vid == a.vid and not again.created and again.ref == "small@1"
    copy = tmp_path / "copy.txt"
    copy.write_bytes(small.read_bytes())
    assert engine.import_path(copy, name="other").vid == a.vid  # same content, another file name
    train = a.table()["example_id"][a.table()["split"] == "train"]
    first, second = int(train[0]), int(train[1])
    one = a.drop(ids=[first]).drop(ids=[second])
    two = a.drop(ids=[second]).drop(ids=[first])
    both = a.drop(ids=[first, second])
    assert one.vid == two.vid == both.vid != a.vid
    assert [e["op"] for e in one.log()] == ["drop", "drop", "import"]


def test_ops_are_cached_and_upweight_repeats_examples(home, small, monkeypatch):
    from nanostack.dataengine import ops

    engine = de.open_engine()
    v = engine.import_path(small, name="small")
    calls = []
    real = ops.dedupe_rows
    monkeypatch.setattr(ops, "dedupe_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = v.dedupe("exact")
    second = v.dedupe("exact")
    assert first.vid == second.vid and calls == [1]  # the second is a lookup, not a rerun
    assert not first.op_result.cached and second.op_result.cached
    assert first.counts["distinct"] <= first.counts["examples"] < v.counts["examples"]
    assert first.texts("test").tolist() == v.texts("test").tolist()  # keep=test: the test split is untouched
    # upweight: a weight of 2 is two copies in what the trainer sees
    ids = v.table()["example_id"][v.table()["split"] == "train"]
    fake = type("S", (), {"score_id": "x" * 64, "losses_for": lambda self, version, table: {
        "nll_mean": np.where(table["example_id"] == ids[0], 9.0, 1.0), "tokens": np.full(len(table["text"]), 5),
        "nll_sum": np.zeros(len(table["text"]))}})()
    heavy = v.upweight(fake, top="1", factor=2)  # the first train row of the worst text weighs 2
    assert heavy.table()["weight"].tolist() == [2 if r == np.flatnonzero(v.table()["example_id"] == ids[0])[0] else 1
                                                for r in range(v.counts["examples"])]
    text = v.table()["text"][v.table()["example_id"] == ids[0]][0]
    data = open_dataset(heavy.ref, "char")
    before = open_dataset(v.ref, "char")
    assert data.train_words.count(text) == before.train_words.count(text) + 1  # its row is there twice
    assert len(data.train_words) == heavy.counts["train_weighted"] == v.counts["train_weighted"] + 1


def test_train_on_a_version_records_it_and_keeps_it_after_the_name_moves(home, small, tmp_path, capsys):
    code, out, err = run_cli(capsys, "data", "import", small, "--name", "small")
    assert code == 0 and "small@1" in out, err
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--data", "small@1", "--model", "bigram_counts", "--out", run,
                             "--device", "cpu")
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    vid = de.open_engine().version("small@1").vid
    assert config["data_version"]["vid"] == vid and config["data_hash"] == vid
    runs = [json.loads(line) for line in (home / "runs.jsonl").read_text().splitlines()]
    assert runs[-1]["vid"] == vid and runs[-1]["run"] == str(run.resolve())
    code, out, err = run_cli(capsys, "data", "dedupe", "small", "--mode", "exact")  # small@latest moves on
    assert code == 0 and "small@2" in out, err
    code, out, err = run_cli(capsys, "eval", run)  # still the version it trained on
    assert code == 0 and "test NLL" in out, err
    code, out, err = run_cli(capsys, "engine", "runs", "--version", "small@1")
    assert code == 0 and str(run.resolve()) in out
    gpt = tmp_path / "gpt"  # a resumed run reopens its version, though small@latest has moved
    code, out, err = run_cli(capsys, "train", "--data", "small@1", "--out", gpt, *flags({**TINY, "max_iters": 10}))
    assert code == 0, err
    code, out, err = run_cli(capsys, "train", "--out", gpt, "--resume", "--max-iters", 20)
    assert code == 0 and "run at step 20" in out, err


def test_telemetry_imports_prompts_with_their_signals(home, tmp_path):
    prompts = [f"request number {i} about {NAMES[i % len(NAMES)]}" for i in range(40)] + ["", "   "]
    folder = write_telemetry(tmp_path / "telemetry", prompts)
    engine = de.open_engine()
    v = engine.import_path(folder, name="traffic")
    assert v.kind == "prompts" and v.counts["examples"] == 40  # blank prompts are not examples
    table = v.table()
    assert set(table["text"]) == set(prompts[:40])
    nll = table["prompt_nll_mean"]
    assert np.isnan(nll).sum() == sum(1 for i in range(40) if i % 7 == 0) and np.nanmax(nll) <= 1.0
    assert set(table["request_id"]) == {f"req-{i}" for i in range(40)}
    keep = v.filter("prompt_nll_mean IS NULL OR prompt_nll_mean < 0.5", edit_test=True)
    expected = int(((np.isnan(nll)) | (nll < 0.5)).sum())
    assert keep.counts["examples"] == expected and "prompt_nll_mean" in keep.table()
    data = open_dataset(v.ref, "char")  # prompts train as paragraphs: each wrapped by <|endoftext|>
    assert data.kind == "paragraphs" and data.boundary == "<|endoftext|>"


def test_relabel_edits_by_id_and_refuses_the_test_split(home, small, tmp_path, capsys):
    engine = de.open_engine()
    v = engine.import_path(small, name="small")
    table = v.table()
    train_row = int(np.flatnonzero(table["split"] == "train")[0])
    in_train = set(table["text"][table["split"] == "train"])
    test_row = next(r for r in np.flatnonzero(table["split"] == "test") if table["text"][r] not in in_train)
    fixes = tmp_path / "fixes.jsonl"
    fixes.write_text(json.dumps({"id": int(table["example_id"][train_row]), "text": "zelda"}) + "\n")
    fixed = v.relabel(fixes)
    old_text = table["text"][train_row]
    copies = int((table["text"][table["split"] == "train"] == old_text).sum())  # an id names every copy of a text
    assert fixed.texts("train").tolist().count("zelda") == copies and old_text not in fixed.texts("train").tolist()
    assert fixed.texts("test").tolist() == v.texts("test").tolist()
    assert fixed.log()[0]["note"] == f"{copies} rows edited, 0 dropped"
    before = snapshot(home)
    fixes.write_text(json.dumps({"id": int(table["example_id"][test_row]), "drop": True}) + "\n")
    code, out, err = run_cli(capsys, "data", "relabel", "small@1", "--file", fixes)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--edit-test" in err
    assert snapshot(home) == before
    code, out, err = run_cli(capsys, "data", "relabel", "small@1", "--file", fixes, "--edit-test")
    assert code == 0 and "1 dropped" in out.replace(",", ""), err


def test_bad_input_is_one_line_and_changes_nothing(home, small, tmp_path, capsys):
    code, out, err = run_cli(capsys, "data", "import", small, "--name", "small")
    assert code == 0
    ids = tmp_path / "ids.txt"
    ids.write_text("12345\n")
    bad = [("data", "show", "nosuch@3"), ("data", "dedupe", "nosuch"),
           ("data", "drop", "small", "--ids", ids),
           ("data", "drop", "small", "--where", "length(text >"),
           ("data", "filter", "small", "--where", "1=1); DROP TABLE examples; SELECT (1"),
           ("data", "drop", "small", "--where", "nosuchcolumn > 1"),
           ("engine", "sql", "COPY (SELECT 1) TO '/tmp/x.csv'"),
           ("engine", "sql", "SELECT * FROM read_csv('/etc/hostname')"),
           ("data", "tag", "small", "7"), ("engine", "worst", "abcdef")]
    before = snapshot(home)
    for args in bad:
        code, out, err = run_cli(capsys, *args)
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, (args, err)
        assert snapshot(home) == before, args
    # a damaged store: verify names the problem, exit 2, and changes nothing
    obj = next(p for p in (home / "objects").rglob("*") if p.is_file())
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes() + b"tampered\n")
    before = snapshot(home)
    code, out, err = run_cli(capsys, "data", "verify")
    assert code == 2 and "does not match its hash" in err and len(err.strip().splitlines()) == 1
    assert snapshot(home) == before
    version = next((home / "versions").iterdir())
    (version / "manifest.json").write_text("{not json")
    code, out, err = run_cli(capsys, "data", "report", "small")
    assert code == 2 and "damaged" in err


def test_verify_passes_and_finds_an_edited_version(home, small):
    engine = de.open_engine()
    v = engine.import_path(small, name="small")
    v.dedupe("exact")
    assert engine.verify() == {"objects": 1, "versions": 2, "refs": 3}  # small@1, small@2, small@latest
    (v.path / "train.txt").write_text((v.path / "train.txt").read_text().replace("emma", "emmy", 1))
    with pytest.raises(de.api.catalog.UserError, match="train.txt differs"):
        engine.verify()
    v.materialize()
    assert engine.verify()["versions"] == 2


def test_gc_keeps_what_names_reach(home, small, tmp_path):
    engine = de.open_engine()
    v = engine.import_path(small, name="small")
    extra = tmp_path / "extra.txt"
    write_lines(extra, ["newname", "othername"])
    added = v.append(extra, name="grown")
    assert added.counts["train"] == v.counts["train"] + 2 and added.counts["test"] == v.counts["test"]
    assert engine.gc(dry_run=True)["versions"] == []
    engine.untag("grown@1")
    engine.untag("grown@latest")
    plan = engine.gc(dry_run=True)
    assert plan["versions"] == [added.vid[:12]] and plan["objects"] == 1 and added.path.exists()
    done = engine.gc()
    assert done["versions"] == [added.vid[:12]] and not added.path.exists() and v.path.exists()
    assert engine.verify()["versions"] == 1


def test_append_by_hash_split_needs_edit_test(home, small, tmp_path):
    engine = de.open_engine()
    v = engine.import_path(small, name="small")
    extra = write_lines(tmp_path / "extra.txt", [f"name{i}" for i in range(60)])
    with pytest.raises(de.api.catalog.UserError, match="test split"):
        v.append(extra, split="hash")
    grown = v.append(extra, split="hash", edit_test=True)
    to_test = sum(example_id(f"name{i}") % 10 == 0 for i in range(60))
    assert grown.counts["test"] == v.counts["test"] + to_test > v.counts["test"]


def test_diff_lists_what_an_op_removed(home, small):
    engine = de.open_engine()
    v = engine.import_path(small, name="small")
    clean = v.dedupe("exact")
    d = v.diff(clean)
    assert d["removed"]["train"]["count"] == v.counts["examples"] - clean.counts["examples"]
    assert d["added"]["train"]["count"] == 0 and d["removed"]["test"]["count"] == 0


def test_without_duckdb_the_command_says_what_to_install(home, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "duckdb", None)
    code, out, err = run_cli(capsys, "data", "list")
    assert code == 2 and "pip install 'nanostack[engine]'" in err and len(err.strip().splitlines()) == 1


def test_every_command_has_help(capsys):
    from nanostack.cli import build_parser

    parser = build_parser()
    for command in ("data", "engine"):
        sub = parser._subparsers._group_actions[0].choices[command]
        assert "ACTION" in sub.format_help()  # the listing formats every action's help line
        actions = sub._subparsers._group_actions[0].choices
        assert len(actions) >= 9
        for name, action_parser in actions.items():
            text = action_parser.format_help()
            assert f"nanostack {command} {name}" in text and action_parser.description, (command, name)


def test_a_bad_name_writes_nothing(home, small, capsys):
    for name in ("a@b", "two words", "-x"):
        code, out, err = run_cli(capsys, "data", "import", small, "--name", name)
        assert code == 2 and "name" in err, name
    assert not (home / "versions").exists() or not any((home / "versions").iterdir())


def test_the_servers_own_telemetry_files_import(home, tmp_path):
    from nanostack.serve.telemetry import Telemetry

    writer = Telemetry(tmp_path / "served", flush_every=60)
    prompts = [f"what is {NAMES[i]}?" for i in range(15)]
    writer.rows = [(1.7e9 + i, f"cmpl-{i}", "runs/x", "/v1/completions", p, "ok", 4, 1, None if i == 3 else 0.5 + i,
                    [] if i == 3 else [0.5 + i] * 4) for i, p in enumerate(prompts)]
    writer.close()  # flushes one telemetry-*.parquet
    v = de.open_engine().import_path(tmp_path / "served", name="served")
    table = v.table()
    assert sorted(table["text"]) == sorted(prompts) and v.kind == "prompts"
    by_text = dict(zip(table["text"], table["prompt_nll_mean"]))
    assert np.isnan(by_text[prompts[3]]) and by_text[prompts[5]] == 5.5
