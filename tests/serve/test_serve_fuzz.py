"""Fuzzing: schemathesis runs every check on every operation of /openapi.json over loopback (50
examples each, coverage and fuzzing phases, fixed seed) and finds no 5xx and no undocumented
response; hypothesis sends the inputs a schema does not describe (broken JSON, NaN, huge numbers,
lone surrogates, characters outside the vocabulary), and each gets a 400 with a one-line message."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings as hsettings, strategies as st

from nanostack.serve.schemas import Limits
from nanostack.serve.server import BackgroundServer

from serve_helpers import settings

pytestmark = pytest.mark.slow
SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")


@pytest.fixture(scope="module")
def small_server(tiny_run):
    """Small limits, so that every schema-valid request is cheap (the schema declares them)."""
    limits = Limits(max_tokens=8, max_prompt_tokens=64, max_messages=8)
    with BackgroundServer(tiny_run, settings(max_batch=8, limits=limits)) as srv:
        yield srv


def test_schemathesis_finds_nothing(small_server, tmp_path):
    if not Path(SCHEMATHESIS).exists():
        pytest.skip("schemathesis is not installed (test extra)")
    done = subprocess.run([SCHEMATHESIS, "run", small_server.url + "/openapi.json", "--checks", "all",
                           "--max-examples", "50", "--phases", "coverage,fuzzing", "--seed", "1", "--workers", "1",
                           "--no-shrink", "--request-timeout", "20", "--report-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache goes there too
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and "5xx" not in done.stdout.split("SUMMARY")[-1]


def parses(text) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def assert_one_line_400(response):
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"] and "\n" not in error["message"] and len(error["message"]) < 300
    assert error["type"] == "invalid_request_error"


# bodies a JSON schema cannot describe, each broken in one way
LONE = st.sampled_from(["\\ud800", "\\udfff", "a\\udc00b", "\\ud83d"])
BAD_VALUE = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]),
    st.integers(min_value=10 ** 20, max_value=10 ** 400).map(str),
    st.integers(max_value=-(10 ** 20)).map(str))
FIELDS = st.sampled_from(["temperature", "top_p", "max_tokens", "n", "seed", "top_k", "logprobs"])


@st.composite
def broken_completion(draw):
    kind = draw(st.sampled_from(["json", "number", "surrogate", "vocabulary"]))
    if kind == "json":
        good = '{"model": "tiny", "prompt": "the cat", "max_tokens": 4}'
        cut = draw(st.integers(1, len(good) - 1))
        junk = draw(st.text(alphabet="{}[],:\"' \\0tnf", max_size=5))
        assume(not parses(good[:cut] + junk))  # a cut can close into valid JSON: that is not a broken body
        return good[:cut] + junk
    if kind == "number":
        return f'{{"model": "tiny", "prompt": "a", "{draw(FIELDS)}": {draw(BAD_VALUE)}}}'
    if kind == "surrogate":
        where = draw(st.sampled_from(["prompt", "stop"]))
        return f'{{"model": "tiny", "prompt": "a", "{where}": "x{draw(LONE)}"}}'
    outside = draw(st.text(alphabet=st.characters(min_codepoint=0x100, codec="utf-8"), min_size=1, max_size=4))
    return json.dumps({"model": "tiny", "prompt": draw(st.sampled_from(["", "the ", "cat"])) + outside,
                       "max_tokens": 1})


@given(body=broken_completion())
@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_broken_completions_get_a_one_line_400(small_server, body):
    r = httpx.post(small_server.url + "/v1/completions", content=body.encode("utf-8", "surrogatepass"),
                   headers={"content-type": "application/json"}, timeout=20)
    assert_one_line_400(r)


@given(content=st.one_of(LONE.map(lambda s: f'"hi{s}"'), st.just('[{"type": "text", "text": "\\ud800"}]'),
                         st.sampled_from(['"Ω"', '"\\u0000"', "NaN", "1e999", '{"a": 1}'])))
@hsettings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_broken_chat_messages_get_a_one_line_400(small_server, content):
    body = f'{{"model": "tiny", "messages": [{{"role": "user", "content": {content}}}]}}'
    r = httpx.post(small_server.url + "/v1/chat/completions", content=body.encode(),
                   headers={"content-type": "application/json"}, timeout=20)
    assert_one_line_400(r)
