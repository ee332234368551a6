"""`nanostack task NAME --out FILE`: write a task's items (or training conversations) as JSONL.

- arithmetic: word-problem conversations with calculator calls (arithmetic.py); --split train for
  fine-tuning data, --split test for the held-out problems (the shipped task is its first 500).
- code_lines: multiple choice from nanostack's own source: given four lines of a module, which line
  comes next? The three wrong choices are lines of similar length from elsewhere in the package. Made
  from the source of the installed package, so the shipped file is a snapshot of one version.

Files are written to a temporary name and renamed; an existing file is kept unless force is given.
"""
import json
import random
from pathlib import Path

from nanostack.chat import arithmetic
from nanostack.errors import UserError
from nanostack.io import write_atomic

PACKAGE = Path(__file__).resolve().parents[1]
GENERATORS = ("arithmetic", "code_lines")
CONTEXT_LINES = 4
CODE_LINES_SEED = 5


def write_task(name: str, out, split="test", count=500, force=False) -> int:
    """Write `count` items of task `name` to out; returns how many were written."""
    if name not in GENERATORS:
        raise UserError(f"there is no task generator {name!r}", f"use one of: {', '.join(GENERATORS)}")
    if split not in ("train", "test"):
        raise UserError(f"--split must be train or test, not {split!r}", "use --split train for training data")
    if count < 1:
        raise UserError(f"--count must be at least 1, got {count}", "give how many items to write")
    out = Path(out)
    if out.exists() and not force:
        raise UserError(f"{out} already exists", "pass --force to replace it, or choose another --out")
    if name == "arithmetic":
        items = arithmetic.conversations(split, count)
    else:
        if split != "test":
            raise UserError("code_lines is an eval task and has no train split", "drop --split")
        items = code_line_items(count)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    return len(items)


def code_line_items(count: int, seed: int = CODE_LINES_SEED) -> list:
    """count multiple-choice items: four lines of nanostack's source, then the true next line among four."""
    lines = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines.append([line.rstrip() for line in text.splitlines()])
    pool = sorted({line for file in lines for line in file if _usable(line)})
    rng = random.Random(seed)
    places = [(f, i) for f, file in enumerate(lines) for i in range(CONTEXT_LINES, len(file))
              if _usable(lines[f][i]) and all(line.isascii() for line in lines[f][i - CONTEXT_LINES:i])]
    rng.shuffle(places)
    items, seen = [], set()
    for f, i in places:
        answer = lines[f][i]
        if answer in seen:
            continue
        similar = [line for line in pool if line != answer and 0.67 <= len(line) / len(answer) <= 1.5]
        if len(similar) < 3:
            continue
        seen.add(answer)
        wrong = rng.sample(similar, 3)
        position = rng.randrange(4)
        choices = wrong[:position] + [answer] + wrong[position:]
        question = "\n".join(lines[f][i - CONTEXT_LINES:i]) + "\n"
        items.append({"id": f"code_lines-{len(items)}", "question": question, "choices": choices, "answer": position})
        if len(items) == count:
            break
    return items


def _usable(line: str) -> bool:
    """A line worth asking about: ASCII, not blank, not too short or long, not a comment alone."""
    body = line.strip()
    return line.isascii() and 20 <= len(body) <= 100 and not body.startswith("#")
