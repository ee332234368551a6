"""The chat commands end to end (a tiny arithmetic model: task -> train -> eval -> chat), and every bad
input as one line with exit code 2 that overwrites nothing."""
import io
import json

import pytest

from testkit import TINY, flags
from testkit import run_cli as cli
from nanostack.cli import main

CHAT_TINY = {**TINY, "block_size": 0, "batch_size": 8, "max_iters": 20, "eval_interval": 20, "ckpt_interval": 20}


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    """A tiny model trained on 200 arithmetic conversations (seconds; it learns the format, not the sums)."""
    folder = tmp_path_factory.mktemp("chat")
    data = folder / "train.jsonl"
    assert main(["task", "arithmetic", "--split", "train", "--count", "200", "--out", str(data)]) == 0
    out = folder / "run"
    assert main(["train", "--out", str(out), "--data", str(data), "--examples", "chat", *flags(CHAT_TINY)]) == 0
    return out


@pytest.mark.slow
def test_a_tiny_arithmetic_model_end_to_end_through_the_cli(capsys, monkeypatch, chat_run):
    code, out, err = cli(capsys, "eval", chat_run, "--task", "arithmetic", "--limit", 3, "--max-new-tokens", 40)
    assert code == 0, err
    assert "arithmetic: accuracy" in out and "over 3 generative item(s)" in out and "tools: calculator" in out
    typed = "Ben has 120 pens and finds 300 more. How many pens now?\n/reset\nhi é\n/quit\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(typed))
    code, out, err = cli(capsys, "chat", chat_run, "--max-new-tokens", 30, "--temperature", 0)
    assert code == 0, err
    assert out.count("assistant> ") == 2 and "(the conversation is forgotten)" in out
    assert "not sent: " in out and "'é'" in out  # a character the model never saw: refused, the chat goes on
    code, out, err = cli(capsys, "sample", chat_run, "--num-samples", 2, "--seed", 1)  # conversations from <|bos|>
    assert code == 0 and out.count("<|user_start|>") >= 1, err
    code, out, err = cli(capsys, "eval", chat_run)
    assert code == 0 and "test NLL per token" in out and "conversations" in out, err


def test_tokenizer_show_chat_marks_trained_and_read_tokens(capsys, tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "yo"}]}) + "\n", encoding="utf-8")
    code, out, _ = cli(capsys, "tokenizer", "show", "--chat", path, "--tokenizer", "gpt2", "--color", "never")
    assert code == 0
    assert "(<|bos|>)(<|user_start|>)(hi)(<|user_end|>)(<|assistant_start|>)[yo][<|assistant_end|>]" in out
    assert "line 1: 7 tokens, 2 trained" in out


def one_line_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_conversation_lines_and_roles_are_one_line_errors(capsys, tmp_path):
    good = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    for bad, says in [("[1, 2]", "line 12 is not a conversation"),
                      (json.dumps({"messages": [{"role": "assistant", "content": "b"}]}), "line 12: roles out of order")]:
        data = tmp_path / "chat.jsonl"
        data.write_text("\n".join([good] * 11 + [bad]) + "\n", encoding="utf-8")
        code, _, err = cli(capsys, "train", "--out", tmp_path / "run", "--data", data, "--examples", "chat",
                           *flags(TINY))
        one_line_error(code, err, says)
        assert not (tmp_path / "run").exists()


def test_init_refusals_leave_the_folder_as_it_was(capsys, tmp_path, corpus, chat_run):
    base = tmp_path / "base"
    assert main(["train", "--out", str(base), "--data", str(corpus), *flags({**TINY, "max_iters": 10})]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in base.rglob("*") if p.name != "run.lock"}
    data = chat_run.parent / "train.jsonl"
    code, _, err = cli(capsys, "train", "--out", tmp_path / "tuned", "--init", base, "--data", data,
                       "--examples", "chat")
    one_line_error(code, err, f"--init {base} cannot be extended", "not in the vocabulary")
    code, _, err = cli(capsys, "train", "--out", tmp_path / "tuned", "--init", base, "--data", data,
                       "--examples", "chat", "--n-layer", 3)
    one_line_error(code, err, "--n-layer 3 differs from the --init run's 1")
    code, _, err = cli(capsys, "train", "--out", tmp_path / "tuned", "--init", tmp_path / "nothing", "--data", data,
                       "--examples", "chat")
    one_line_error(code, err, "is not a run folder")
    code, _, err = cli(capsys, "train", "--out", base, "--force", "--init", base, "--data", data, "--examples", "chat")
    one_line_error(code, err, "is the --out folder itself")
    assert {p.name: p.stat().st_mtime_ns for p in base.rglob("*") if p.name != "run.lock"} == before
    assert not (tmp_path / "tuned").exists()


def test_unknown_tools_and_bad_tasks_are_one_line_errors(capsys, tmp_path, chat_run):
    code, _, err = cli(capsys, "eval", chat_run, "--task", "arithmetic", "--tools", "calculator,search")
    one_line_error(code, err, "tool 'search' is not registered")
    code, _, err = cli(capsys, "chat", chat_run, "--tools", "search")
    one_line_error(code, err, "tool 'search' is not registered")
    task = tmp_path / "task.jsonl"
    task.write_text('{"question": "q", "choices": ["a", "b"], "answer": 5}\n', encoding="utf-8")
    code, _, err = cli(capsys, "eval", chat_run, "--task", task)
    one_line_error(code, err, "line 1", "index of the right choice")
    code, _, err = cli(capsys, "eval", chat_run, "--task", "no_such_task")
    one_line_error(code, err, "neither a file nor a shipped task")
    code, _, err = cli(capsys, "eval", chat_run, "--task", "arithmetic", "--samples", 3, "--temperature", 0)
    one_line_error(code, err, "several samples per item need sampling")


def test_task_writes_and_never_overwrites(capsys, tmp_path):
    out = tmp_path / "t.jsonl"
    out.write_text("mine\n")
    code, _, err = cli(capsys, "task", "arithmetic", "--out", out, "--count", 3)
    one_line_error(code, err, "already exists")
    assert out.read_text() == "mine\n"
    code, stdout, _ = cli(capsys, "task", "arithmetic", "--out", out, "--count", 3, "--split", "train", "--force")
    assert code == 0 and len(out.read_text().splitlines()) == 3 and "wrote 3 arithmetic item(s)" in stdout
    code, _, err = cli(capsys, "task", "sudoku", "--out", tmp_path / "s.jsonl")
    one_line_error(code, err, "no task generator 'sudoku'")


def test_chat_refuses_a_run_without_a_chat_template(capsys, tmp_path, corpus):
    base = tmp_path / "base"
    assert main(["train", "--out", str(base), "--data", str(corpus), *flags({**TINY, "max_iters": 10})]) == 0
    code, _, err = cli(capsys, "chat", base)
    one_line_error(code, err, "has no chat template")


def test_a_base_run_is_scored_on_multiple_choice_by_continuation_loss(capsys, tmp_path, corpus):
    import string  # noqa: PLC0415

    source = tmp_path / "code.txt"
    source.write_text(string.printable * 40, encoding="utf-8")  # every ASCII character the task can hold
    base = tmp_path / "base"
    assert main(["train", "--out", str(base), "--data", str(source), *flags({**TINY, "max_iters": 5})]) == 0
    code, out, err = cli(capsys, "eval", base, "--task", "code_lines", "--limit", 12)
    assert code == 0, err
    assert "over 12 multiple-choice item(s)" in out and "form: loss" in out and "centred on chance (0.2500)" in out
    task = tmp_path / "prompts.jsonl"
    task.write_text('{"prompt": "abc", "answer": "d"}\n{"prompt": "xyz", "answer": ["w", "W"]}\n', encoding="utf-8")
    code, out, err = cli(capsys, "eval", base, "--task", task, "--samples", 3, "--max-new-tokens", 8)
    assert code == 0, err
    assert "over 2 generative item(s)" in out and "pass@1" in out and "pass@3" in out and "tools: none" in out
    narrow = tmp_path / "narrow"
    assert main(["train", "--out", str(narrow), "--data", str(corpus), *flags({**TINY, "max_iters": 5})]) == 0
    code, _, err = cli(capsys, "eval", narrow, "--task", "code_lines", "--limit", 5)
    one_line_error(code, err, "no item of task code_lines can be encoded")
