"""Tools inside generation: the state machine on a scripted model (forced tokens appear with the right
flags, the model reads them and resumes after the output), and a calculator that computes arithmetic
and refuses everything else with an error string."""
import pytest
import torch

from nanostack.chat.calculator import MAX_DIGITS, MAX_INPUT_CHARS, calculate
from nanostack.chat.generate import generate_with_tools, reply_tokens
from nanostack.chat.tools import REGISTRY, Tool, parse_tools_option, register_tool, run_tool_call
from nanostack.data.chat_format import (ASSISTANT_END, CHAT_TOKENS, OUTPUT_END, OUTPUT_START, TOOL_END, TOOL_START,
                                        parse_messages, render_prompt)
from nanostack.errors import UserError
from nanostack.models import ModelConfig
from nanostack.tokenizer import CharTokenizer

TOK = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz0123456789*+-/(). :?'", CHAT_TOKENS)
S = TOK.special_tokens
WRONG = TOK.encode_ordinary("x")[0]


class ScriptedModel(torch.nn.Module):
    """Writes `script` (token ids) one token per step, wherever generation is in it; asks that its input be
    exactly prompt + what was generated so far. Where the script holds a tool's output (between the output
    tokens) it writes a wrong token: only the tool can put the right one there."""

    def __init__(self, prompt, script, block_size=512, strict=True):
        super().__init__()
        self.strict = strict
        self.config = ModelConfig(vocab_size=TOK.vocab_size, block_size=block_size)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.prompt, self.script = list(prompt), list(script)
        self.inside_output = set()
        inside = False
        for k, token in enumerate(self.script):
            inside = token == S[OUTPUT_START] or (inside and self.script[k - 1] != S[OUTPUT_END])
            if inside:
                self.inside_output.add(k)
        self.seen = []

    def num_params(self):
        return 1

    def forward(self, idx, targets=None):
        row = idx[0].tolist()
        done = len(row) - len(self.prompt)
        if self.strict:
            assert row == self.prompt + self.script[:done], "the model must read every token, forced ones too"
        self.seen.append(done)
        token = self.script[done] if done < len(self.script) and done not in self.inside_output else WRONG
        logits = torch.full((idx.size(0), 1, self.config.vocab_size), -10.0)
        logits[:, :, token] = 10.0
        return logits, None


def ids(text):
    return TOK.encode_ordinary(text)


def test_a_tool_call_forces_its_output_and_the_model_resumes_after_it():
    prompt = render_prompt(TOK, parse_messages([{"role": "user", "content": "what is 12*34?"}], for_reply=True))
    script = ([S[TOOL_START], *ids("calculator(12*34)"), S[TOOL_END], S[OUTPUT_START], *ids("408"), S[OUTPUT_END],
               *ids("it is 408"), S[ASSISTANT_END]])
    model = ScriptedModel(prompt, script)
    steps = list(generate_with_tools(model, prompt, TOK, {"calculator": REGISTRY["calculator"]}, 100, temperature=0))
    tokens = [step[0] for step in steps]
    assert [t.id for t in tokens] == script  # the output came from the calculator, not from the model
    forced = [t.forced for t in tokens]
    start = script.index(S[OUTPUT_START])
    assert forced == [start <= k <= start + 4 for k in range(len(script))]  # <|output_start|> 4 0 8 <|output_end|>
    assert not any(forced[start + 5:])  # after the output the model writes again


def test_without_tools_a_call_is_not_run():
    prompt = render_prompt(TOK, parse_messages([{"role": "user", "content": "hi"}], for_reply=True))
    script = [S[TOOL_START], *ids("calculator(1+1)"), S[TOOL_END], S[OUTPUT_START], *ids("2"), S[OUTPUT_END],
              S[ASSISTANT_END]]
    model = ScriptedModel(prompt, script)
    model.inside_output = set()  # the model writes the output itself
    rows = reply_tokens(model, prompt, TOK, {}, 100, temperature=0)
    assert [t.id for t in rows[0]] == script[:-1] and not any(t.forced for t in rows[0])


def test_a_malformed_or_unknown_call_gets_an_error_string_as_its_output():
    tools = {"calculator": REGISTRY["calculator"]}
    assert run_tool_call("calculator 1+1", tools).startswith("error:")
    assert run_tool_call("search(cats)", tools) == "error: no tool named 'search'"
    assert run_tool_call("calculator(1+)", tools).startswith("error: cannot parse")
    boom = Tool("boom", lambda text: 1 / 0)
    assert run_tool_call("boom(x)", {"boom": boom}) == "error: boom failed (ZeroDivisionError)"
    prompt = render_prompt(TOK, parse_messages([{"role": "user", "content": "hi"}], for_reply=True))
    call = [S[TOOL_START], *ids("calculator(1+)"), S[TOOL_END]]
    model = ScriptedModel(prompt, call, strict=False)
    steps = list(generate_with_tools(model, prompt, TOK, tools, len(call) + 30, temperature=0))
    forced = TOK.decode([s[0].id for s in steps if s[0].forced])
    assert forced.startswith("<|output_start|>error: cannot parse")


def test_rows_of_a_batch_run_their_own_calls():
    prompt = render_prompt(TOK, parse_messages([{"role": "user", "content": "hi"}], for_reply=True))
    script = [S[TOOL_START], *ids("calculator(2*21)"), S[TOOL_END], S[OUTPUT_START], *ids("42"), S[OUTPUT_END],
              S[ASSISTANT_END]]

    class TwoRows(ScriptedModel):
        def forward(self, idx, targets=None):
            logits = [super(TwoRows, self).forward(idx[r:r + 1])[0] for r in range(idx.size(0))]
            return torch.cat(logits), None

    rows = reply_tokens(TwoRows(prompt, script), prompt, TOK, {"calculator": REGISTRY["calculator"]}, 50,
                        num_samples=2, temperature=0)
    assert [[t.id for t in row] for row in rows] == [script[:-1]] * 2


@pytest.mark.parametrize("expression, value", [
    ("37*24", "888"), ("1000-1", "999"), ("888/24", "37"), ("10/4", "2.5"), ("2**10", "1024"), ("-(3+4)*2", "-14"),
    ("7//2", "3"), ("7%4", "3"), (" 1.5 + 1.5 ", "3"), ("1/3", "0.3333333333"),
])
def test_the_calculator_computes_arithmetic(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize("expression, says", [
    ("__import__('os').system('ls')", "calls are not allowed"),
    ("x + 1", "names are not allowed"),
    ("(1).real", "attributes are not allowed"),
    ("'a' * 3", "only numbers"),
    ("2**100000", "exponent"),
    ("9**9**9", "exponent"),
    ("10**59 * 10**59", "more than"),
    ("1e308 * 10", "too large"),
    ("1/0", "division by zero"),
    ("1 < 2", "not arithmetic"),
    ("[1, 2]", "not arithmetic"),
    ("1 +" * 30 + "1", "more than"),
    ("1" * (MAX_INPUT_CHARS + 1), "longer than"),
    ("", "empty"),
    ("(-8) ** 0.5", "not a real number"),
])
def test_the_calculator_refuses_with_an_error_string(expression, says):
    out = calculate(expression)
    assert out.startswith("error:") and says in out, out


def test_the_calculator_keeps_results_within_its_digit_limit():
    assert calculate("9" * 30 + "*" + "9" * 29).startswith("999")
    assert calculate("9" * 31 + "*" + "9" * 30).startswith("error:")
    assert MAX_DIGITS == 60


def test_tools_are_registered_through_one_interface():
    register_tool(Tool("shout", lambda text: text.upper(), "capital letters"))
    try:
        assert run_tool_call("shout(hi)", parse_tools_option("calculator,shout")) == "HI"
        assert parse_tools_option("none") == {}
        with pytest.raises(UserError, match="tool 'search' is not registered"):
            parse_tools_option("calculator,search")
    finally:
        REGISTRY.pop("shout")
