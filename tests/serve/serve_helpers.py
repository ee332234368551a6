"""Helpers of the server's tests (the fixtures are in conftest.py)."""
import random
import time

from nanostack.serve.settings import ServeSettings

WORDS = "the quick brown fox jumps over lazy dog and cat sat on mat with a hat".split()
# a tiny GPT: 2 layers, 32 wide, a 32-token window; 3 steps of training are enough to be a run
TINY_GPT = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 4, "max_iters": 3,
            "eval_interval": 3, "eval_iters": 1, "log_interval": 1, "ckpt_interval": 3, "device": "cpu",
            "warmup_iters": 1, "lr_decay_iters": 3}


def chat_corpus(path, seed=0):
    """Lines of `User: …` and `Assistant: …` (and one `System:`), so the plain chat template's characters
    are all in the vocabulary; one line of HTML, so the page's escaping can be tested with real tokens."""
    rng = random.Random(seed)
    lines = ["System: be brief", 'User: <img src=x onerror="document.title=\'pwned\'"> & <b>bold</b>']
    for _ in range(300):
        lines.append("User: " + " ".join(rng.choice(WORDS) for _ in range(5)))
        lines.append("Assistant: " + " ".join(rng.choice(WORDS) for _ in range(6)) + ".")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def settings(**kw) -> ServeSettings:
    return ServeSettings(**{"port": 0, "device": "cpu", **kw})


def wait_idle(engine, timeout=10.0):
    deadline = time.monotonic() + timeout
    while engine.busy_rows or engine.waiting:
        if time.monotonic() > deadline:
            raise AssertionError(f"engine still busy: {engine.busy_rows} rows, {engine.waiting} waiting")
        time.sleep(0.01)
