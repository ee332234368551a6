"""Fixtures of the server's tests: tiny GPT runs (real run folders, written by the trainer in a few
steps) under one runs root, and servers on free loopback ports in this process."""
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'nanostack[serve]'")

from serve_helpers import TINY_GPT, chat_corpus, settings, wait_idle  # noqa: E402

from nanostack.serve.server import BackgroundServer  # noqa: E402
from nanostack.train import train  # noqa: E402


@pytest.fixture(scope="session")
def corpus_path(tmp_path_factory):
    return chat_corpus(tmp_path_factory.mktemp("data") / "chat.txt")


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory, corpus_path):
    """A runs root with two runs: `tiny` (served) and `other` (for the dashboard's overlay)."""
    root = tmp_path_factory.mktemp("runs")
    corpus = corpus_path
    quiet = lambda *a: None  # noqa: E731
    train(root / "tiny", {**TINY_GPT, "data": str(corpus)}, log=quiet)
    train(root / "other", {**TINY_GPT, "data": str(corpus), "seed": 7, "max_iters": 2, "eval_interval": 2},
          log=quiet)
    return root


@pytest.fixture(scope="session")
def tiny_run(runs_root):
    return runs_root / "tiny"


@pytest.fixture(scope="module")
def server(tiny_run):
    """The default server (32 rows) over `tiny`, shared by a module's tests that do not change its settings
    (per module: the server sets torch's thread count, which the rest of the suite must get back)."""
    with BackgroundServer(tiny_run, settings()) as srv:
        yield srv


@pytest.fixture
def engine_idle(server):
    """The shared server's engine, checked idle before and after a test (no row or job left behind)."""
    engine = server.served.engine
    wait_idle(engine)
    yield engine
    engine.step_delay = 0.0
    wait_idle(engine)
