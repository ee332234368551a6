"""The server's data paths: telemetry Parquet for the data engine (exact columns, new files only, nothing
without the flag), the dashboard's run data, the data explorer over a scores table, and /llms.txt."""
import duckdb
import httpx
import pytest
import torch

from nanostack.loss import token_nll
from nanostack.run import RunFolder, open_run
from nanostack.serve.server import BackgroundServer

from serve_helpers import settings

COLUMNS = [("ts", "DOUBLE"), ("request_id", "VARCHAR"), ("run", "VARCHAR"), ("endpoint", "VARCHAR"),
           ("prompt", "VARCHAR"), ("completion", "VARCHAR"), ("prompt_tokens", "BIGINT"),
           ("completion_tokens", "BIGINT"), ("prompt_nll_mean", "DOUBLE"), ("prompt_token_nll", "FLOAT[]")]


def test_telemetry_appends_parquet_files_the_data_engine_reads(tiny_run, tmp_path, server):
    assert server.app.state.telemetry is None  # nothing is recorded without --telemetry
    folder = tmp_path / "telemetry"
    with BackgroundServer(tiny_run, settings(telemetry=folder)) as srv:
        telemetry = srv.app.state.telemetry
        done = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "the cat", "max_tokens": 5,
                                                             "n": 2, "seed": 1}, timeout=30).json()
        telemetry.flush()
        first = sorted(folder.glob("telemetry-*.parquet"))
        assert len(first) == 1
        before = first[0].read_bytes()
        httpx.post(srv.url + "/v1/chat/completions", json={"model": "tiny", "max_tokens": 3,
                                                           "messages": [{"role": "user", "content": "hat"}]},
                   timeout=30)
    files = sorted(folder.glob("telemetry-*.parquet"))
    assert len(files) == 2 and files[0].read_bytes() == before  # a new file per flush; none rewritten
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*"))
    con = duckdb.connect()
    pattern = str(folder / "telemetry-*.parquet")
    assert [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{pattern}')").fetchall()] == COLUMNS
    rows = con.execute(f"SELECT * FROM read_parquet('{pattern}') ORDER BY endpoint, request_id").fetchall()
    assert [(r[3], r[1]) for r in rows] == [("chat", rows[0][1]), ("completions", done["id"] + "#0"),
                                             ("completions", done["id"] + "#1")]
    chat, *completions = rows
    assert chat[4] == "User: hat\nAssistant:" and chat[7] <= 3
    run = open_run(tiny_run)
    ids = run.tokenizer().encode("the cat")
    x, y = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    nll = token_nll(run.load_model(), x, y)[0].tolist()
    for row, choice in zip(completions, done["choices"]):
        assert row[2] == "tiny" and row[4] == "the cat" and row[5] == choice["text"]
        assert row[6] == 7 and row[7] == 5
        assert row[9] == pytest.approx(nll, abs=1e-5) and row[8] == pytest.approx(sum(nll) / 6, abs=1e-6)


def test_the_dashboard_reads_runs_through_the_run_folder(server, runs_root):
    runs = httpx.get(server.url + "/api/runs", timeout=10).json()["runs"]
    assert [(r["name"], r["served"]) for r in runs] == [("other", False), ("tiny", True)]
    info = httpx.get(server.url + "/api/runs/tiny", timeout=10).json()
    assert info["config"]["model"]["n_embd"] == 32 and info["report"] is False and info["examples"] is False
    records = RunFolder(runs_root / "tiny").metrics()
    whole = httpx.get(server.url + "/api/runs/tiny/metrics", timeout=10).json()
    assert whole == {"records": records, "next": len(records)}
    tail = httpx.get(server.url + "/api/runs/tiny/metrics?since=2", timeout=10).json()
    assert tail == {"records": records[2:], "next": len(records)}
    report = runs_root / "tiny" / "doctor"
    report.mkdir()
    try:
        (report / "doctor.html").write_text("<h1>report</h1>")
        r = httpx.get(server.url + "/api/runs/tiny/report", timeout=10)
        assert r.status_code == 200 and r.text == "<h1>report</h1>"
        assert "script-src" not in r.headers["content-security-policy"]  # the report runs no script
    finally:
        (report / "doctor.html").unlink()
        report.rmdir()
    assert httpx.get(server.url + "/api/runs/tiny/report", timeout=10).status_code == 404


def test_the_explorer_sorts_a_scores_table_and_fills_texts_from_the_run(server, runs_root):
    other = open_run(runs_root / "other")
    assert httpx.get(server.url + "/api/runs/other/examples", timeout=10).json() == {"available": False,
                                                                                    "examples": []}
    examples = other.dataset().examples("val", 32)[:6]
    table = other.path / "example_loss.parquet"  # the seam's fallback location
    con = duckdb.connect()
    con.execute("CREATE TABLE s (example_id BIGINT, nll_sum DOUBLE, tokens BIGINT)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(e.id, 10.0 + i, 4) for i, e in enumerate(examples)])
    con.execute(f"COPY s TO '{table}' (FORMAT parquet)")
    try:
        got = httpx.get(server.url + "/api/runs/other/examples?limit=3", timeout=10).json()
        assert got["available"] is True
        assert [e["id"] for e in got["examples"]] == [examples[5].id, examples[4].id, examples[3].id]
        assert got["examples"][0]["text"] == examples[5].text and got["examples"][0]["loss"] == 15.0 / 4
        asc = httpx.get(server.url + "/api/runs/other/examples?order=asc&offset=1&limit=2", timeout=10).json()
        assert [e["id"] for e in asc["examples"]] == [examples[1].id, examples[2].id]
        assert httpx.get(server.url + "/api/runs/other", timeout=10).json()["examples"] is True
        assert httpx.get(server.url + "/api/runs/other/examples?limit=201", timeout=10).status_code == 400
    finally:
        table.unlink()


def test_llms_txt_describes_the_api_from_the_schema(server):
    text = httpx.get(server.url + "/llms.txt", timeout=10).text
    spec = httpx.get(server.url + "/openapi.json", timeout=10).json()
    for path in spec["paths"]:
        assert path in text
    for needle in ("POST /v1/completions", "`max_tokens`", "<= 2048", "`top_k`", "unsupported_parameter",
                   "model id: `tiny`", "curl -N"):
        assert needle in text, needle
    assert "422" not in str(spec) and "HTTPValidationError" not in str(spec)
