"""Fixtures shared by every test. Helpers imported by name are in testkit.py."""
import os
import random
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    """Shards go to a throwaway cache, never the user's ~/.cache."""
    os.environ["NANOSTACK_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A 30 KB text file of random words over a 28-character alphabet."""
    rng = random.Random(0)
    words = "the quick brown fox jumps over lazy dog and cat sat on mat with a hat\n".split(" ")
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(rng.choice(words) for _ in range(6000)), encoding="utf-8")
    return path
