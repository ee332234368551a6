"""Helpers the tests import by name (`from testkit import TINY, run_cli`). They live here, not in
conftest.py: tests/serve has its own conftest.py, and a plain `from testkit import` would get whichever
conftest pytest imported last."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("NANOSTACK_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))

# A model small enough that a whole run takes about a second on a CPU.
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 4, "max_iters": 30,
        "eval_interval": 10, "eval_iters": 2, "log_interval": 5, "ckpt_interval": 10, "device": "cpu",
        "warmup_iters": 5, "lr_decay_iters": 30}


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{name} is not in {SHARED_DATA} (set NANOSTACK_DATA_DIR to a folder holding it)")
    return path


def flags(settings: dict) -> list:
    return [arg for k, v in settings.items() for arg in (f"--{k.replace('_', '-')}", str(v))]


def nanostack_cmd(*args) -> list:
    return [sys.executable, "-m", "nanostack", *map(str, args)]


def run_nanostack(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(nanostack_cmd(*args), capture_output=True, text=True, timeout=timeout)


def run_cli(capsys, *args):
    """Run the CLI in this process; return (exit code, stdout, stderr)."""
    from nanostack.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """For modules of tiny models (import it): one thread is as fast as two, and on a shared, busy machine
    two threads spin-wait on each other (10-20x slower). Restored afterwards."""
    import torch  # noqa: PLC0415 (testkit itself stays importable without torch)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gpt2():
    """GPT-2's tokenizer, from the ranks file (import it into a module)."""
    from nanostack.tokenizer import BPETokenizer  # noqa: PLC0415

    return BPETokenizer.from_tiktoken(shared_file("gpt2.tiktoken"))


@pytest.fixture(scope="module")
def reference():
    """tiktoken's own encoder over the same ranks file, read by tiktoken's own loader."""
    import tiktoken  # noqa: PLC0415
    from tiktoken.load import load_tiktoken_bpe  # noqa: PLC0415

    from nanostack.tokenizer.patterns import GPT2  # noqa: PLC0415

    ranks = load_tiktoken_bpe(str(shared_file("gpt2.tiktoken")))
    return tiktoken.Encoding("gpt2", pat_str=GPT2, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
