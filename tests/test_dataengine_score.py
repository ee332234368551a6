"""Per-example losses with the model in the loop: scoring equals the trainer's loss and ignores padding (T10),
torchrun ranks equal one process, the views (worst, best, tokens, review, compare), a run scored on a
version it cannot encode, hard cases found by a counting bigram (T7), dropping them recovers the test loss
(T8), and one round of the loop (T11)."""
import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from testkit import TINY, run_cli, shared_file, one_torch_thread  # noqa: F401 (one_torch_thread: a fixture)
from dataengine_helpers import random_strings, write_lines

pytest.importorskip("duckdb")
import nanostack.dataengine as de  # noqa: E402
from nanostack.run import open_run  # noqa: E402
from nanostack.train import train  # noqa: E402

quiet = lambda *a, **k: None  # noqa: E731



@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A store holding 600 names, and a tiny GPT trained on them for 30 steps."""
    root = tmp_path_factory.mktemp("score")
    names = shared_file("names.txt").read_text().split()
    lines = random.Random(0).sample(names, 600)
    engine = de.open_engine(root / "store")
    version = engine.import_path(write_lines(root / "names.txt", lines), name="names")
    run = root / "run"
    train(run, {**TINY, "data": str(version.path), "block_size": 0}, None, log=quiet)
    return engine, version, run


def test_scores_equal_the_trainers_loss_and_ignore_padding(tiny):
    engine, version, run = tiny
    score = engine.score(run, version)
    table = score.table()
    assert table["row"].tolist() == list(range(version.counts["examples"]))  # every example, in version order
    model = open_run(run).load_model()
    data = open_run(run).dataset()
    x, y = data.tensors("test")
    with torch.no_grad():
        _, loss = model(x, y)  # the trainer's loss: mean NLL over the batch's real tokens
    test = table["split"] == "test"
    assert abs(table["nll_sum"][test].sum() / table["tokens"][test].sum() - loss.item()) < 1e-5
    assert abs(score.summary()["test"]["nll_per_token"] - loss.item()) < 1e-5
    one_by_one = engine.score(run, version, batch_size=1, splits="test")  # other batches
    assert np.allclose(one_by_one.table()["nll_sum"], table["nll_sum"][test], atol=1e-5, rtol=0)
    from nanostack.loss import token_nll

    for i in range(5):  # each example alone, without any padding: the same loss as padded in a batch
        n = int((y[i] != -1).sum())
        alone = token_nll(model, x[i:i + 1, :n], y[i:i + 1, :n]).double().sum().item()
        assert abs(alone - table["nll_sum"][test][i]) < 1e-5
    again = engine.score(run, version)
    assert again.score_id == score.score_id  # cached by version, weights and settings


@pytest.mark.slow
def test_torchrun_ranks_equal_one_process(tiny, tmp_path):
    engine, version, run = tiny
    one = engine.score(run, version)
    store = tmp_path / "store2"
    shutil.copytree(engine.store.home, store, ignore=shutil.ignore_patterns("scores"))
    env = {**os.environ, "NANOSTACK_HOME": str(store), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "nanostack", "engine", "score", run, "--data", version.vid[:12]],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    two = de.open_engine(store).open_score(run)
    assert two.manifest["world_size"] == 2 and two.score_id == one.score_id
    shards = sorted(p.name for p in two.path.glob("example_loss-*.parquet"))
    assert shards == ["example_loss-00000.parquet", "example_loss-00001.parquet"]
    a, b = one.table(), two.table()
    assert (a["row"] == b["row"]).all() and (a["tokens"] == b["tokens"]).all()
    assert np.allclose(a["nll_sum"], b["nll_sum"], atol=1e-5, rtol=0)
    assert set(b["shard"][b["example_id"] % 2 == 1]) == {1}  # sharded by example id mod world size
    assert "score " in done.stdout and done.stdout.count("score ") == 1  # rank 0 prints


def test_views_worst_best_tokens_review_and_compare(tiny, tmp_path, capsys, monkeypatch):
    engine, version, run = tiny
    monkeypatch.setenv("NANOSTACK_HOME", str(engine.store.home))
    code, out, err = run_cli(capsys, "engine", "score", run, "--tokens")
    assert code == 0, err
    score_id = out.split()[1]
    code, out, err = run_cli(capsys, "engine", "worst", score_id, "-n", "5", "--split", "train")
    worst = [float(line.split()[0]) for line in out.splitlines()]
    code, out, err = run_cli(capsys, "engine", "best", score_id, "-n", "5", "--split", "train")
    best = [float(line.split()[0]) for line in out.splitlines()]
    assert len(worst) == len(best) == 5 and worst == sorted(worst, reverse=True) and min(worst) >= max(best)
    s = engine.open_score(score_id)
    table = s.table()
    eligible = table["nll_mean"][(table["split"] == "train") & (table["tokens"] >= 2)]
    assert abs(worst[0] - eligible.max()) < 1e-3
    tokens = s.tokens(3)
    flat = np.concatenate([s.token_losses(0)])
    assert abs(tokens[0]["nll"] - float(flat.max())) < 1e-6 and len(tokens[0]["top3"]) == 3
    assert flat.size == int(table["tokens"].sum())
    assert tokens[0]["token"] in version.texts()[tokens[0]["row"]] + "\n"
    from nanostack.serve.explorer import find_example_scores, read_examples  # the server's data explorer

    found = read_examples(open_run(run), find_example_scores(open_run(run)), limit=3)
    assert [r["loss"] for r in found] == sorted(table["nll_mean"], reverse=True)[:3] and all(r["text"] for r in found)
    code, out, err = run_cli(capsys, "engine", "tokens", score_id, "-n", "2")
    assert code == 0 and "top 3:" in out
    code, out, err = run_cli(capsys, "engine", "review", score_id, "-n", "4")
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 4 and all(r["split"] == "train" for r in lines)
    lines[0]["text"] = "fixedname"
    lines[1]["drop"] = True
    fixes = tmp_path / "review.jsonl"
    fixes.write_text("".join(json.dumps(r) + "\n" for r in lines))
    fixed = version.relabel(fixes)
    assert "fixedname" in fixed.texts("train").tolist() and lines[1]["text"] not in fixed.texts("train").tolist()
    # compare: a longer-trained run against the first, on the pinned test set
    better = tmp_path / "better"
    train(better, {**TINY, "data": str(version.path), "block_size": 0, "max_iters": 150, "lr_decay_iters": 150},
          None, log=quiet)
    c = engine.compare(run, better)
    assert c["examples"] == version.counts["test"] and c["unit"] == "token"
    assert c["delta"] < 0 and c["ci95"][1] < 0 and c["better"]
    assert abs(c["delta"] - (c["b"]["nll"] - c["a"]["nll"])) < 1e-9
    code, out, err = run_cli(capsys, "engine", "compare", run, better)
    assert code == 0 and "better" in out
    code, out, err = run_cli(capsys, "engine", "sql", "SELECT count(*) AS n FROM losses WHERE split = 'test'",
                             "--score", score_id)
    assert code == 0 and out.split()[1] == str(version.counts["test"])


def test_a_version_the_runs_tokenizer_cannot_encode_is_refused(tiny, tmp_path, capsys, monkeypatch):
    engine, version, run = tiny
    monkeypatch.setenv("NANOSTACK_HOME", str(engine.store.home))
    other = engine.import_path(write_lines(tmp_path / "caps.txt", [f"Name{i} ÉMILE" for i in range(30)]), name="caps")
    before = sorted(p.name for p in engine.store.scores_dir.iterdir())
    code, out, err = run_cli(capsys, "engine", "score", run, "--data", "caps")
    assert code == 2 and "cannot encode" in err and "nanostack train --data caps" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in engine.store.scores_dir.iterdir()) == before
    assert other.counts["examples"] == 30


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """names.txt (makemore's split) with 5% random-letter strings planted in train."""
    root = tmp_path_factory.mktemp("planted")
    engine = de.open_engine(root / "store")
    clean = engine.import_path(shared_file("names.txt"), name="names", seed=3407)
    rng = random.Random(7)
    k = round(0.05 * clean.counts["train"])
    junk = random_strings(rng.sample([len(t) for t in clean.texts("train")], k), rng)
    dirty = clean.append(write_lines(root / "junk.txt", junk))
    return engine, clean, dirty, junk, root


def fit(version, out):
    train(out, {"data": str(version.path), "model": "bigram_counts", "device": "cpu"}, None, force=True, log=quiet)
    return out


@pytest.mark.slow
def test_a_counting_bigram_finds_planted_strings_and_dropping_them_recovers(planted):
    engine, clean, dirty, junk, root = planted
    k = len(junk)
    score = engine.score(fit(dirty, root / "dirty"), dirty)
    worst = score.worst(k, split="train")
    precision = sum(r["text"] in set(junk) for r in worst) / k
    assert precision >= 0.80  # T7 (measured 0.872)
    dropped = dirty.drop(score=score, worst=str(k))
    assert dropped.counts["train"] == dirty.counts["train"] - k and dropped.counts["test"] == clean.counts["test"]
    fit(dropped, root / "dropped")
    fit(clean, root / "clean")
    nll = {name: engine.score(root / name, clean, splits="test").summary()["test"]["nll_per_token"]
           for name in ("dirty", "dropped", "clean")}
    assert nll["dirty"] > nll["clean"]
    assert (nll["dirty"] - nll["dropped"]) / (nll["dirty"] - nll["clean"]) >= 0.80  # T8


@pytest.mark.slow
def test_one_loop_round_drops_mostly_planted_examples(tmp_path):
    names = shared_file("names.txt").read_text().split()
    rng = random.Random(11)
    engine = de.open_engine(tmp_path / "store")
    clean = engine.import_path(write_lines(tmp_path / "names.txt", rng.sample(names, 4000)), name="names", seed=3407)
    junk = random_strings(rng.sample([len(t) for t in clean.texts("train")], round(0.05 * clean.counts["train"])), rng)
    dirty = clean.append(write_lines(tmp_path / "junk.txt", junk))
    steps = {"model": "transformer", "n_layer": 1, "n_head": 2, "n_embd": 32, "batch_size": 32, "max_iters": 300,
             "eval_interval": 300, "eval_iters": 5, "learning_rate": 3e-3, "warmup_iters": 10, "lr_decay_iters": 300,
             "ckpt_interval": 300, "log_interval": 50}
    record = engine.loop(dirty, None, rounds=1, curate="drop=worst:5%", overrides=steps, out=tmp_path / "loop",
                         log=quiet)
    first, second = record["rounds"]
    removed = Counter(engine.version(first["version"]).texts().tolist()) - \
        Counter(engine.version(second["version"]).texts().tolist())
    planted_share = sum(n for text, n in removed.items() if text in set(junk)) / sum(removed.values())
    assert planted_share >= 0.70  # T11 (measured 0.80)
    assert second["test_nll"] <= first["test_nll"]
    assert abs(second["delta"] - (second["test_nll"] - first["test_nll"])) < 1e-9
    table = (tmp_path / "loop" / "loop.md").read_text()
    assert "| 0 |" in table and "| 1 |" in table and "drop:" in table


def test_the_loop_stops_at_a_fixed_point_and_for_review(tmp_path, capsys, monkeypatch):
    names = shared_file("names.txt").read_text().split()
    rng = random.Random(3)
    engine = de.open_engine(tmp_path / "store")
    clean = engine.import_path(write_lines(tmp_path / "names.txt", rng.sample(names, 400)), name="names")
    junk = random_strings([8] * 20, rng) * 20  # 20 random strings, 20 copies each: dedupe helps, once
    v = clean.append(write_lines(tmp_path / "junk.txt", junk))
    record = engine.loop(v, None, rounds=3, curate="dedupe=exact", overrides={"model": "bigram_counts"},
                         out=tmp_path / "loop", log=quiet)
    assert [r["round"] for r in record["rounds"]] == [0, 1] and record["stopped"].startswith("fixed point")
    assert record["rounds"][1]["train"] < record["rounds"][0]["train"] and 0 < record["engine_share"] < 1
    record = engine.loop(v, None, rounds=3, curate="dedupe=exact", overrides={"model": "bigram_counts"},
                         review=True, out=tmp_path / "review", log=quiet)
    assert len(record["rounds"]) == 1 and record["stopped"].startswith("review")
    review = [json.loads(line) for line in (tmp_path / "review" / "review-0.jsonl").read_text().splitlines()]
    assert len(review) == 200 and review[0]["loss"] >= review[-1]["loss"]
    monkeypatch.setenv("NANOSTACK_HOME", str(tmp_path / "store"))
    for curate in ("dedupe=fuzzy", "drop=5%", "shuffle=1", "dedupe"):
        code, out, err = run_cli(capsys, "engine", "loop", "--data", "names", "--curate", curate)
        assert code == 2 and "--curate" in err, curate
