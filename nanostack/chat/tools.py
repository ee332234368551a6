"""Tools the model can call while it generates, behind one small interface, and the registry of them.

A tool is a name and a function from the call's input text to its output text. The model writes
<|tool_start|>name(input)<|tool_end|>; generation (generate.py) runs the tool and forces its output
into the stream. A tool should return an error as text (the model reads it and carries on) rather
than raise; one that raises anyway has its exception turned into an "error: ..." output.

    from nanostack.chat.tools import Tool, register_tool
    register_tool(Tool("upper", lambda text: text.upper(), "capital letters"))

The calculator (calculator.py) is registered as "calculator".
"""
from dataclasses import dataclass
from typing import Callable

from nanostack.chat.calculator import calculate
from nanostack.data.chat_format import TOOL_NAME, parse_tool_call
from nanostack.errors import UserError

MAX_OUTPUT_CHARS = 500  # a longer output is cut: it is forced into the model's context


@dataclass(frozen=True)
class Tool:
    name: str
    run: Callable[[str], str]
    description: str = ""


REGISTRY = {}


def register_tool(tool: Tool) -> Tool:
    if not TOOL_NAME.fullmatch(tool.name):
        raise UserError(f"tool name {tool.name!r} is not a name", "name tools with letters, digits and _")
    REGISTRY[tool.name] = tool
    return tool


register_tool(Tool("calculator", calculate, "arithmetic: + - * / // % ** and parentheses on numbers"))


def resolve_tools(names) -> dict:
    """{name: Tool} of the names asked for (e.g. --tools calculator); an unknown name is an error."""
    tools = {}
    for name in names:
        if name not in REGISTRY:
            raise UserError(f"tool {name!r} is not registered", f"use one of: {', '.join(sorted(REGISTRY))}")
        tools[name] = REGISTRY[name]
    return tools


def parse_tools_option(text) -> dict:
    """The tools of a --tools value: a comma-separated list of names, or none."""
    if text is None:
        return resolve_tools(["calculator"])
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return {}
    return resolve_tools(names)


def run_tool_call(call_text: str, tools: dict) -> str:
    """The output of a call the model wrote (name(input)); a malformed call or an unknown or failing
    tool gives an error string, never an exception."""
    call = parse_tool_call(call_text)
    if call is None:
        return "error: a tool call is written name(input)"
    name, tool_input = call
    if name not in tools:
        return f"error: no tool named {name!r}"
    try:
        output = tools[name].run(tool_input)
    except Exception as e:  # a user's tool failing must not end the generation  # noqa: BLE001
        return f"error: {name} failed ({type(e).__name__})"
    return str(output)[:MAX_OUTPUT_CHARS]
