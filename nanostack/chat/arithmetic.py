"""The arithmetic task: word problems whose answers need multi-digit arithmetic, as conversations in
which the assistant calls the calculator for every step (like GSM8K's <<expr=result>> annotations)
and then says the answer.

    user:       Ben buys 37 boxes of 24 pens. How many pens is that?
    assistant:  <|tool_start|>calculator(37*24)<|tool_end|><|output_start|>888<|output_end|>888

Problems come from a seeded random generator, one stream per split (train and test seeds differ),
and the two splits can never share a question: each question belongs to one split by the hash of its
text (a tenth of all questions are test questions), so any number of training conversations can be
made without leaking the test set.
"""
import hashlib
import random

from nanostack.chat.calculator import calculate

SEEDS = {"train": 1000, "test": 2000}
NAMES = ("Ana", "Ben", "Cai", "Dev", "Eva", "Finn", "Gia", "Hal", "Ivy", "Jon")
ITEMS = ("apples", "pens", "cards", "eggs", "books", "coins", "stamps", "shells")


def _mul_one(rng, name, item):
    a, b = rng.randint(12, 99), rng.randint(12, 99)
    return f"{name} buys {a} boxes of {b} {item}. How many {item} is that?", [f"{a}*{b}"]


def _add(rng, name, item):
    a, b = rng.randint(100, 999), rng.randint(100, 999)
    return f"{name} has {a} {item} and finds {b} more. How many {item} now?", [f"{a}+{b}"]


def _sub(rng, name, item):
    a = rng.randint(200, 999)
    b = rng.randint(11, a - 11)
    return f"{name} had {a} {item} and gave {b} away. How many are left?", [f"{a}-{b}"]


def _div(rng, name, item):
    b, q = rng.randint(3, 19), rng.randint(12, 99)
    return f"{b * q} {item} are shared by {b} kids. How many does each get?", [f"{b * q}/{b}"]


def _mul_add(rng, name, item):
    a, b, c = rng.randint(12, 99), rng.randint(12, 99), rng.randint(100, 999)
    return (f"{name} has {c} {item} and buys {a} bags of {b}. How many {item} now?",
            [f"{a}*{b}", "{0}+" + str(c)])


def _mul_sub(rng, name, item):
    a, b = rng.randint(12, 99), rng.randint(12, 99)
    c = rng.randint(11, a * b - 11)
    return f"A shop has {a} crates of {b} {item} and sells {c}. How many are left?", [f"{a}*{b}", "{0}-" + str(c)]


def _two_products(rng, name, item):
    a, b, c, d = (rng.randint(12, 99) for _ in range(4))
    return (f"{name} packs {a} bags of {b} {item} and {c} bags of {d}. How many {item}?",
            [f"{a}*{b}", f"{c}*{d}", "{0}+{1}"])


TEMPLATES = (_mul_one, _add, _sub, _div, _mul_add, _mul_sub, _two_products)


def split_of(question: str) -> str:
    """The one split a question may appear in: test for a tenth of all questions (by hash), else train."""
    return "test" if hashlib.sha256(question.encode("utf-8")).digest()[0] < 26 else "train"


def problem(rng: random.Random) -> dict:
    """One problem: its question, the calculator calls in order (with their outputs) and the answer."""
    template = rng.choice(TEMPLATES)
    question, steps = template(rng, rng.choice(NAMES), rng.choice(ITEMS))
    calls, results = [], []
    for step in steps:
        expression = step.format(*results)
        results.append(calculate(expression))
        calls.append((expression, results[-1]))
    return {"question": question, "calls": calls, "answer": results[-1]}


def conversation(p: dict) -> dict:
    parts = []
    for expression, result in p["calls"]:
        parts += [{"type": "tool_call", "tool": "calculator", "input": expression},
                  {"type": "tool_output", "output": result}]
    parts.append({"type": "text", "text": p["answer"]})
    return {"messages": [{"role": "user", "content": p["question"]}, {"role": "assistant", "content": parts}]}


def problems(split: str, count: int) -> list:
    """count distinct problems of the split, the same ones for the same (split, count)."""
    rng = random.Random(SEEDS[split])
    out, seen = [], set()
    while len(out) < count:
        p = problem(rng)
        if split_of(p["question"]) == split and p["question"] not in seen:
            seen.add(p["question"])
            out.append(p)
    return out


def conversations(split: str, count: int) -> list:
    return [conversation(p) for p in problems(split, count)]
