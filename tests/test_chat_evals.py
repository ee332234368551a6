"""Evals beyond loss: multiple-choice scores equal a direct forward, the 95% interval covers the true
accuracy of a model whose accuracy is known, pass@k is the unbiased estimator, task files are checked,
and the shipped tasks are what their generators make."""
import itertools
import json
import random
import re

import pytest
import torch

from nanostack.chat import arithmetic
from nanostack.chat.evals import continuation_losses, evaluate_model, is_right, letter_prompt, normalise
from nanostack.chat.stats import centred, mean_interval, pass_at_k, wilson_interval
from nanostack.chat.tasks import TASKS_DIR, Item, Task, load_task
from nanostack.data.chat_format import CHAT_TOKENS
from nanostack.errors import UserError
from nanostack.models import ModelConfig, build
from nanostack.tokenizer import CharTokenizer

TOK = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789 .?\n", CHAT_TOKENS)


def tiny_model(block_size=32):
    torch.manual_seed(0)
    return build(ModelConfig(vocab_size=TOK.vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16)).eval()


def test_multiple_choice_scores_equal_a_direct_forward():
    model = tiny_model()
    item = Item("0", "choice", question="the cat sat on the", choices=(" mat", " hat.", " a dog?"), answer=0)
    losses = continuation_losses(model, TOK, item)
    for choice, loss in zip(item.choices, losses):
        question, rest = TOK.encode_ordinary(item.question), TOK.encode_ordinary(choice)
        ids = torch.tensor([question + rest])
        logits, _ = model(ids[:, :-1], ids[:, 1:])  # with targets: every position's logits
        log_probs = torch.log_softmax(logits[0], dim=-1)
        direct = -torch.stack([log_probs[len(question) - 1 + k, t] for k, t in enumerate(rest)]).mean()
        assert loss == pytest.approx(direct.item(), abs=1e-5)


def test_a_pair_longer_than_the_context_keeps_its_last_tokens():
    model = tiny_model(block_size=8)
    item = Item("0", "choice", question="a long question that does not fit", choices=(" yes", " no"), answer=0)
    losses = continuation_losses(model, TOK, item)
    ids = TOK.encode_ordinary(item.question + " yes")[-9:]
    logits, _ = model(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]))
    log_probs = torch.log_softmax(logits[0], dim=-1)
    direct = -torch.stack([log_probs[k, ids[k + 1]] for k in range(4, 8)]).mean()
    assert losses[0] == pytest.approx(direct.item(), abs=1e-5)


class KnownModel(torch.nn.Module):
    """Answers letter-form multiple choice right with probability p, independently per item (its
    accuracy over infinitely many items is p)."""

    def __init__(self, p, seed):
        super().__init__()
        self.config = ModelConfig(vocab_size=TOK.vocab_size, block_size=256)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.p, self.rng = p, random.Random(seed)
        self.right = {}

    def forward(self, idx, targets=None):
        text = TOK.decode(idx[0].tolist())
        right = "ABCD"[int(text.split("right is ")[1][0])]
        pick = right if self.rng.random() < self.p else "ABCD"[("ABCD".index(right) + 1) % 4]
        logits = torch.zeros(1, 1, TOK.vocab_size)
        logits[0, 0, TOK.encode_ordinary(pick)[0]] = 5.0
        return logits, None


def test_the_interval_covers_the_true_accuracy_of_a_known_model():
    items = tuple(Item(str(i), "choice", question=f"q {i} right is {i % 4}", choices=("a", "b", "c", "d"),
                       answer=i % 4) for i in range(200))
    result = evaluate_model(KnownModel(0.7, seed=1), TOK, Task("known", "choice", items), {}, mc_form="letter")
    low, high = result["interval"]
    assert low < 0.7 < high and result["chance"] == 0.25
    assert result["centred"] == pytest.approx((result["accuracy"] - 0.25) / 0.75)
    covered = 0
    trials = 400
    for seed in range(trials):  # over many evaluations, the 95% interval holds p about 95% of the time
        rng = random.Random(seed)
        scores = [int(rng.random() < 0.9) for _ in range(150)]
        _, low, high = mean_interval(scores)
        covered += low <= 0.9 <= high
    assert 0.92 <= covered / trials <= 0.98


def test_the_letter_prompt_lists_the_choices():
    item = Item("0", "choice", question="2+2?", choices=("3", "4"), answer=1)
    assert letter_prompt(item) == "2+2?\nA. 3\nB. 4\nAnswer with the letter of the right choice."


def test_wilson_interval_and_centred_accuracy():
    low, high = wilson_interval(95, 100)
    assert 0.88 < low < 0.89 and 0.978 < high < 0.979  # the textbook figures for 95/100
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0) and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert centred(0.25, 0.25) == 0 and centred(1.0, 0.25) == 1


def test_pass_at_k_is_the_chance_that_one_of_k_samples_is_right():
    for n, c, k in [(5, 2, 1), (5, 2, 3), (6, 1, 2), (4, 0, 2), (4, 4, 4)]:
        subsets = list(itertools.combinations([1] * c + [0] * (n - c), k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_answers_match_after_normalisation():
    assert is_right(" The answer is 1,234. ", ["the answer is 1234"])
    assert normalise("ＡＢ  c!") == "ab c"
    assert not is_right("12345", ["1234"])


@pytest.mark.parametrize("line, says", [
    ("{", "is not JSON"),
    ('{"question": "q", "choices": ["a"], "answer": 0}', "at least two"),
    ('{"question": "q", "choices": ["a", "b"], "answer": 2}', "index of the right choice"),
    ('{"prompt": "q"}', '"answer" must be'),
    ('{"text": "q"}', 'neither "prompt"'),
    ('{"messages": [{"role": "assistant", "content": "a"}]}', "roles out of order"),
])
def test_a_task_file_with_a_bad_schema_says_which_line(tmp_path, line, says):
    path = tmp_path / "task.jsonl"
    path.write_text('{"prompt": "1+1", "answer": "2"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_task(str(path))
    assert f"{path} line 2" in str(e.value) and says in str(e.value)


def test_a_task_file_holds_one_kind_of_item(tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_text('{"prompt": "1+1", "answer": "2"}\n{"question": "q", "choices": ["a", "b"], "answer": 0}\n')
    with pytest.raises(UserError, match="line 2 is a choice item but the file's first is generative"):
        load_task(str(path))


def test_the_shipped_tasks_are_what_their_generators_make():
    shipped = [json.loads(line) for line in (TASKS_DIR / "arithmetic.jsonl").read_text().splitlines()]
    assert shipped == arithmetic.conversations("test", len(shipped)) and len(shipped) == 500
    task = load_task("arithmetic")
    assert task.kind == "generative" and task.items[0].answers == (shipped[0]["messages"][1]["content"][-1]["text"],)
    train_questions = {p["question"] for p in arithmetic.problems("train", 5000)}
    assert not train_questions & {item.messages[0].content for item in task.items}  # no test problem in train
    code = load_task("code_lines")
    assert code.kind == "choice" and len(code.items) == 200
    assert all(len(set(item.choices)) == 4 for item in code.items)


def test_every_arithmetic_answer_is_the_last_calculator_output():
    for p in arithmetic.problems("train", 300):
        assert p["calls"][-1][1] == p["answer"] and not p["answer"].startswith("error")
        a, op, b = re.fullmatch(r"(\d+)([-+*/])(\d+)", p["calls"][-1][0]).groups()
        exact = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b), "/": int(a) / int(b)}[op]
        assert float(p["answer"]) == exact and float(p["answer"]).is_integer() and exact > 0
