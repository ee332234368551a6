"""Eval tasks: JSONL files of items, checked line by line, and the tasks that ship with nanostack.

One item per line; a file holds one kind of item.

Generative (the model writes an answer; scored by exact match after normalisation):
    {"prompt": "What is 2+2?", "answer": "4"}                 answer: a string, or a list of accepted ones
    {"messages": [...conversation...]}                         the prompt is every message before the last,
                                                               the answer the last (assistant) message's text;
                                                               an "answer" field overrides it
Multiple choice (the model picks; scored against the index of the right choice):
    {"question": "2+2 =", "choices": [" 3", " 4", " 5"], "answer": 1}

Every item may carry an "id". Shipped tasks (nanostack/chat/tasks/*.jsonl, made by `nanostack task`):
arithmetic (500 held-out word problems with calculator calls) and code_lines (multiple choice: which line
of nanostack's own source comes next). A conversation file of training data is a generative task too.
"""
import json
from dataclasses import dataclass
from pathlib import Path

from nanostack.data.chat_format import Message, parse_messages
from nanostack.errors import UserError

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
SCHEMA = ('one JSON object per line: {"prompt": ..., "answer": ...}, {"messages": [...]} or '
          '{"question": ..., "choices": [...], "answer": INDEX} (see the README\'s chat section)')


@dataclass(frozen=True)
class Item:
    id: str
    kind: str                 # generative | choice
    prompt: str = ""          # generative, prompt form
    messages: tuple = ()      # generative, messages form: the Messages before the reply (ends with the user's)
    answers: tuple = ()       # generative: accepted answers
    question: str = ""        # choice
    choices: tuple = ()       # choice
    answer: int = -1          # choice: the index of the right one


@dataclass(frozen=True)
class Task:
    name: str
    kind: str
    items: tuple


def builtin_tasks() -> list:
    return sorted(p.stem for p in TASKS_DIR.glob("*.jsonl"))


def task_path(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if (TASKS_DIR / f"{name}.jsonl").is_file():
        return TASKS_DIR / f"{name}.jsonl"
    raise UserError(f"task {name} is neither a file nor a shipped task",
                    f"give a .jsonl task file or one of: {', '.join(builtin_tasks())}")


def load_task(name: str, limit=None) -> Task:
    """The task named (a shipped one) or at a path, every line checked; the first `limit` items."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}", "give how many items to score")
    path = task_path(name)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"task file {path} is not UTF-8 text", SCHEMA) from None
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        item = parse_item(line, f"{path} line {number}", str(len(items)))
        if items and item.kind != items[0].kind:
            raise UserError(f"{path} line {number} is a {item.kind} item but the file's first is {items[0].kind}",
                            "keep one kind of item per task file")
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise UserError(f"task file {path} has no items", SCHEMA)
    return Task(path.stem if path.parent == TASKS_DIR else str(path), items[0].kind, tuple(items))


def parse_item(line: str, where: str, default_id: str) -> Item:
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise UserError(f"{where} is not JSON ({e.msg})", SCHEMA) from None
    if not isinstance(obj, dict):
        raise UserError(f"{where} is not a JSON object", SCHEMA)
    item_id = str(obj.get("id", default_id))
    if "choices" in obj:
        return _choice_item(obj, where, item_id)
    if "messages" in obj:
        return _messages_item(obj, where, item_id)
    if "prompt" in obj:
        if not isinstance(obj["prompt"], str):
            raise UserError(f"{where}: \"prompt\" must be a string", SCHEMA)
        return Item(item_id, "generative", prompt=obj["prompt"], answers=_answers(obj.get("answer"), where))
    raise UserError(f"{where} has neither \"prompt\", \"messages\" nor \"choices\"", SCHEMA)


def _answers(value, where: str) -> tuple:
    answers = [value] if isinstance(value, str) else value
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise UserError(f"{where}: \"answer\" must be a string or a non-empty list of strings", SCHEMA)
    return tuple(answers)


def _messages_item(obj: dict, where: str, item_id: str) -> Item:
    messages = parse_messages(obj["messages"], where)
    reply = messages[-1]
    answer = obj.get("answer")
    if answer is None:
        text = "".join(p.text for p in reply.content if p.type == "text")
        answer = text
    return Item(item_id, "generative", messages=messages[:-1], answers=_answers(answer, where))


def _choice_item(obj: dict, where: str, item_id: str) -> Item:
    question, choices, answer = obj.get("question"), obj.get("choices"), obj.get("answer")
    if not isinstance(question, str):
        raise UserError(f"{where}: \"question\" must be a string", SCHEMA)
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise UserError(f"{where}: \"choices\" must be a list of at least two non-empty strings", SCHEMA)
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise UserError(f"{where}: \"answer\" must be the index of the right choice (0 to {len(choices) - 1})", SCHEMA)
    return Item(item_id, "choice", question=question, choices=tuple(choices), answer=answer)


def prompt_messages(item: Item) -> tuple:
    """The messages a chat model answers: the item's own, or its prompt as one user message."""
    return item.messages or (Message("user", item.prompt),)
