"""The page in a real browser: Playwright drives Debian's Chromium (Playwright's own browser download
needs the internet; `make test` installs the Debian package). The page loads without console errors,
Generate streams coloured token spans, Stop frees the server's row, the dashboard draws one point per
metrics row and grows as rows are appended, and HTML in a prompt stays text. A screenshot is kept.

Waits use locators: the page's CSP forbids the eval that a string wait_for_function needs."""
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from nanostack.run import RunFolder

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
expect = sync_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: install Debian's package (`make test` does: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses to run as root in its sandbox
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        except sync_api.Error as e:
            pytest.skip(f"chromium at {CHROMIUM} does not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    folder = Path(os.environ.get("NANOSTACK_TEST_ARTIFACTS") or tmp_path_factory.getbasetemp() / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    yield page
    context.close()


def open_page(page, server):
    page.goto(server.url + "/")
    expect(page.locator("#model-name")).to_have_text("tiny")


def test_the_page_loads_without_console_errors(page, server):
    open_page(page, server)
    page.locator("[data-tab=dashboard]").click()
    expect(page.locator("#chart-loss circle.pt").first).to_be_visible()
    page.locator("[data-tab=playground]").click()
    assert page.errors == []


def test_generate_streams_coloured_token_spans(page, server, engine_idle, artifacts):
    open_page(page, server)
    page.fill("#prompt", "the cat")
    page.fill("#temperature", "0")
    page.fill("#max_tokens", "24")
    page.click("#generate")
    expect(page.locator("#status")).to_have_text("done")
    spans = page.locator("#output span.tok")
    expect(spans).to_have_count(24)
    for i in range(24):
        span = spans.nth(i)
        logprob = float(span.get_attribute("data-logprob"))
        assert logprob <= 0
        assert span.evaluate("s => getComputedStyle(s).backgroundColor") not in ("rgba(0, 0, 0, 0)", "transparent")
    assert "tok/s" in page.locator("#stats").inner_text()
    spans.nth(3).hover()
    tip = page.locator("#tip")
    expect(tip).to_be_visible()
    assert tip.inner_text().startswith("p = ")
    page.screenshot(path=str(artifacts / "serve-page.png"), full_page=True)
    assert (artifacts / "serve-page.png").stat().st_size > 1000
    assert page.errors == []


def test_stop_freezes_the_spans_and_frees_the_row(page, server, engine_idle):
    open_page(page, server)
    engine_idle.step_delay = 0.05  # slow enough to stop in the middle
    page.fill("#max_tokens", "2000")
    page.click("#generate")
    spans = page.locator("#output span.tok")
    expect(spans.nth(2)).to_be_attached()
    page.click("#stop-button")
    expect(page.locator("#status")).to_have_text("stopped")
    stopped_at = time.monotonic()
    while engine_idle.busy_rows and time.monotonic() - stopped_at < 2:
        time.sleep(0.01)
    assert engine_idle.busy_rows == 0, "Stop did not free the server's row"
    count = spans.count()
    time.sleep(0.3)
    assert spans.count() == count
    assert page.errors == []


def test_html_in_a_prompt_stays_text(page, server, engine_idle):
    open_page(page, server)
    payload = "<img src=x onerror=\"document.title='pwned'\"> & <b>bold</b>"
    page.fill("#prompt", payload)
    page.click("#score")
    expect(page.locator("#status")).to_have_text("scored")
    output = page.locator("#output")
    assert output.inner_text() == payload
    assert output.locator("img").count() == 0 and output.locator("b").count() == 0
    assert page.title() == "nanostack serve"
    assert "mean loss" in page.locator("#stats").inner_text()
    assert page.errors == []


def test_the_dashboard_draws_a_point_per_metrics_row_and_grows(browser, server, runs_root):
    other = RunFolder(runs_root / "other")
    tiny_rows, other_rows = len(RunFolder(runs_root / "tiny").metrics()), len(other.metrics())
    context = browser.new_context()
    page = context.new_page()
    page.clock.install()  # the page polls every 5 s: the test moves the clock instead of waiting
    open_page(page, server)
    page.locator("[data-tab=dashboard]").click()
    points = page.locator("#chart-loss circle.pt")
    expect(points).to_have_count(tiny_rows)  # the served run is shown first
    page.locator("#runs label", has_text="other").locator("input").check()
    expect(points).to_have_count(tiny_rows + other_rows)
    path = other.path / "metrics.jsonl"
    original = path.read_text()
    try:
        new = [{"kind": "train", "step": 10 + i, "loss": 3.0 - i / 10, "lr": 1e-3, "tokens_per_s": 500.0}
               for i in range(3)]
        with open(path, "a") as f:  # two whole rows and half of a third, as a trainer writes them
            f.write("".join(json.dumps(r) + "\n" for r in new[:2]) + json.dumps(new[2])[:20])
        page.clock.fast_forward(5500)
        expect(points).to_have_count(tiny_rows + other_rows + 2)  # the half row waits
        with open(path, "a") as f:
            f.write(json.dumps(new[2])[20:] + "\n")
        page.clock.fast_forward(5500)
        expect(points).to_have_count(tiny_rows + other_rows + 3)
        expect(page.locator(f"#chart-loss circle.pt[data-run=other][data-step='12']")).to_have_count(1)
        expect(page.locator("#config td", has_text="n_embd").first).to_be_visible()
    finally:
        path.write_text(original)
        context.close()


def test_the_explorer_shows_scored_examples_and_opens_one_in_the_token_view(page, server, runs_root, engine_idle):
    import duckdb

    run = RunFolder(runs_root / "tiny")
    examples = run.dataset().examples("val", 32)[:5]
    table = run.path / "example_loss.parquet"
    con = duckdb.connect()
    con.execute("CREATE TABLE s (example_id BIGINT, loss DOUBLE, n_tokens BIGINT)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(e.id, 2.0 + i, 32) for i, e in enumerate(examples)])
    con.execute(f"COPY s TO '{table}' (FORMAT parquet)")
    try:
        open_page(page, server)
        tab = page.locator("#explorer-tab")
        expect(tab).to_be_visible()
        tab.click()
        rows = page.locator("#examples tbody tr")
        expect(rows).to_have_count(5)
        expect(rows.first.locator("td.text")).to_have_text(examples[4].text)  # the hardest first
        rows.first.click()
        expect(page.locator("#status")).to_have_text("scored")
        assert page.locator("#output").inner_text() == examples[4].text
        assert page.locator("#output span.tok").count() == len(run.tokenizer().encode(examples[4].text))
        assert page.errors == []
    finally:
        table.unlink()
