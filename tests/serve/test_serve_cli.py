"""`nanostack serve` on the command line: every mistake is one line and exit code 2 (a missing or
damaged run, a port in use, a bad token file, a public --host without a token, a '*' origin, a
missing extra); a good run serves, says what it does with prompts, and stops cleanly on Ctrl-C."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from nanostack.cli import main


def one_line_error(capsys, *args):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_a_missing_or_damaged_run_is_one_line(capsys, tmp_path, tiny_run):
    assert "not a run folder" in one_line_error(capsys, "serve", tmp_path / "nope")
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_run, damaged)
    (damaged / "config.json").write_text("{not json")
    assert "corrupt" in one_line_error(capsys, "serve", damaged, "--port", 0)
    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny_run, no_weights)
    for name in ("best", "latest"):
        shutil.rmtree(no_weights / name)
    assert "no checkpoint" in one_line_error(capsys, "serve", no_weights, "--port", 0)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "best" / "model.safetensors").write_bytes(b"\x00" * 10)
    assert "corrupt" in one_line_error(capsys, "serve", broken, "--port", 0)


def test_a_port_in_use_is_one_line(capsys, tiny_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        err = one_line_error(capsys, "serve", tiny_run, "--port", port)
    assert f"port {port}" in err and "in use" in err


def test_bad_security_settings_are_one_line(capsys, tiny_run, tmp_path, monkeypatch):
    monkeypatch.delenv("NANOSTACK_API_KEY", raising=False)
    assert "no API key" in one_line_error(capsys, "serve", tiny_run, "--host", "0.0.0.0")
    assert "cannot read the API key file" in one_line_error(capsys, "serve", tiny_run, "--api-key-file",
                                                            tmp_path / "missing")
    short = tmp_path / "short"
    short.write_text("abc\n")
    assert "16-512" in one_line_error(capsys, "serve", tiny_run, "--api-key-file", short)
    assert "exact origin" in one_line_error(capsys, "serve", tiny_run, "--cors-origin", "*")
    assert "--max-batch" in one_line_error(capsys, "serve", tiny_run, "--max-batch", 0)


def test_without_the_extra_serve_says_what_to_install(tiny_run):
    code = ("import sys; sys.modules['fastapi'] = None; from nanostack.cli import main; "
            f"sys.exit(main(['serve', {str(tiny_run)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "pip install 'nanostack[serve]'" in done.stderr


@pytest.mark.slow
def test_serve_starts_says_so_and_stops_on_ctrl_c(tiny_run):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nanostack", "serve", str(tiny_run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", first).group(0)
        assert "telemetry off" in second and "prompts not logged" in second and "auth off" in second
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(url + "health", timeout=5).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.1)
        assert health["status"] == "ok" and health["model"] == "tiny"
        body = {"model": "tiny", "prompt": "the", "max_tokens": 4}
        assert len(httpx.post(url + "v1/completions", json=body, timeout=30).json()["choices"]) == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0  # a clean stop, not an error
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.dumps(body) not in proc.stdout.read()  # prompts are not logged without --log-requests
