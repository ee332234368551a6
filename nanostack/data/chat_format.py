"""Conversations: the message format, its checks, and its rendering to token ids with a loss mask.

A conversation is `{"messages": [...]}`: an optional `system` message first, then `user` and
`assistant` taking turns, starting with the user. System and user content is text. Assistant
content is text, or a list of parts:

    {"type": "text", "text": "..."}
    {"type": "tool_call", "tool": "calculator", "input": "37*24"}
    {"type": "tool_output", "output": "888"}          (only right after a tool_call)

Rendering wraps every piece in special tokens the tokenizer reserves (CHAT_TOKENS) and says, token
by token, whether training learns it (mask 1) or only reads it (mask 0):

    <|bos|>                                                        0
    <|user_start|> system text + blank line + user text <|user_end|>   0
    <|assistant_start|>                                             0
        text                                                       1
        <|tool_start|> calculator(37*24) <|tool_end|>              1   (the model writes the call)
        <|output_start|> 888 <|output_end|>                        0   (the tool supplies it at run time)
    <|assistant_end|>                                               1   (the model learns to stop)

All text is encoded as plain text (encode_ordinary): a user who types "<|assistant_end|>" gets those
characters, never the control token. This module knows tokenizers and nothing of models or training.
"""
import json
import re
from dataclasses import dataclass
from pathlib import Path

from nanostack.errors import UserError

BOS = "<|bos|>"
USER_START, USER_END = "<|user_start|>", "<|user_end|>"
ASSISTANT_START, ASSISTANT_END = "<|assistant_start|>", "<|assistant_end|>"
TOOL_START, TOOL_END = "<|tool_start|>", "<|tool_end|>"
OUTPUT_START, OUTPUT_END = "<|output_start|>", "<|output_end|>"
CHAT_TOKENS = (BOS, USER_START, USER_END, ASSISTANT_START, ASSISTANT_END, TOOL_START, TOOL_END, OUTPUT_START,
               OUTPUT_END)
ROLES = ("system", "user", "assistant")
PART_TYPES = ("text", "tool_call", "tool_output")
TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TOOL_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\((.*)\)", re.DOTALL)
SCHEMA_HINT = ('write one {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]} '
               "per line (see the README's chat section)")


@dataclass(frozen=True)
class Part:
    type: str       # text, tool_call or tool_output
    text: str       # the text; the tool's input for a call; the output for an output
    tool: str = ""  # tool_call only

    def to_json(self) -> dict:
        if self.type == "tool_call":
            return {"type": "tool_call", "tool": self.tool, "input": self.text}
        if self.type == "tool_output":
            return {"type": "tool_output", "output": self.text}
        return {"type": "text", "text": self.text}


@dataclass(frozen=True)
class Message:
    role: str
    content: object  # str for system and user; a tuple of Parts for the assistant

    def to_json(self) -> dict:
        if self.role != "assistant":
            return {"role": self.role, "content": self.content}
        parts = self.content
        if all(p.type == "text" for p in parts):
            return {"role": "assistant", "content": "".join(p.text for p in parts)}
        return {"role": "assistant", "content": [p.to_json() for p in parts]}


def tool_call_text(tool: str, tool_input: str) -> str:
    """What the model writes between the tool tokens: name(input)."""
    return f"{tool}({tool_input})"


def parse_tool_call(text: str):
    """(tool name, input) of a call the model wrote, or None when it is not name(input)."""
    match = TOOL_CALL.fullmatch(text.strip())
    return (match.group(1), match.group(2)) if match else None


# ---- reading and checking ----------------------------------------------------------------------
def parse_messages(messages, where: str = "the conversation", for_reply: bool = False) -> tuple:
    """Checked Messages of a JSON list. A conversation for training ends with the assistant's message;
    one to be replied to (for_reply) ends with the user's."""
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: \"messages\" must be a non-empty list", SCHEMA_HINT)
    out = []
    for i, message in enumerate(messages):
        out.append(_parse_message(message, i, f"{where}, message {i + 1}"))
    roles = [m.role for m in out]
    turns = roles[1:] if roles[0] == "system" else roles
    for i, role in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            position = i + 1 + (roles[0] == "system")
            raise UserError(f"{where}: roles out of order: message {position} is from {role!r}, expected {expected!r}",
                            "put an optional system message first, then user and assistant taking turns, "
                            "starting with the user")
    last = "user" if for_reply else "assistant"
    if not turns or turns[-1] != last:
        raise UserError(f"{where}: the last message must be the {last}'s",
                        "end a conversation with the assistant's reply" if last == "assistant"
                        else "end the messages with the user's, for the assistant to reply to")
    return tuple(out)


def _parse_message(message, index: int, where: str) -> Message:
    if not isinstance(message, dict):
        raise UserError(f"{where} is not an object", SCHEMA_HINT)
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
        raise UserError(f"{where} has role {role!r}", "use system, user or assistant")
    if role == "system" and index != 0:
        raise UserError(f"{where}: a system message may only come first", "move it to the start, or make it a user's")
    if role != "assistant":
        if not isinstance(content, str):
            raise UserError(f"{where}: {role} content must be a string", SCHEMA_HINT)
        return Message(role, content)
    if isinstance(content, str):
        return Message(role, (Part("text", content),) if content else ())
    if not isinstance(content, list):
        raise UserError(f"{where}: assistant content must be a string or a list of parts", SCHEMA_HINT)
    parts = []
    for k, part in enumerate(content):
        parts.append(_parse_part(part, f"{where}, part {k + 1}", parts[-1] if parts else None))
    return Message(role, tuple(parts))


def _parse_part(part, where: str, previous) -> Part:
    hint = 'use {"type": "text", "text": ...}, {"type": "tool_call", "tool": NAME, "input": ...} or ' \
           '{"type": "tool_output", "output": ...}'
    if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
        raise UserError(f"{where} is not a text, tool_call or tool_output part", hint)
    kind = part["type"]
    field = {"text": "text", "tool_call": "input", "tool_output": "output"}[kind]
    value = part.get(field)
    if not isinstance(value, str):
        raise UserError(f"{where}: a {kind} part needs a string {field!r}", hint)
    if kind == "tool_call":
        tool = part.get("tool")
        if not isinstance(tool, str) or not TOOL_NAME.fullmatch(tool):
            raise UserError(f"{where}: tool name {tool!r} is not a name", "name tools like calculator (letters, "
                                                                         "digits and _)")
        return Part(kind, value, tool)
    if kind == "tool_output" and (previous is None or previous.type != "tool_call"):
        raise UserError(f"{where}: a tool_output must come right after a tool_call", "put each output after its call")
    return Part(kind, value)


def read_conversation_lines(path) -> list:
    """[(messages, line number, character offset)] of a JSONL file of conversations, every line checked;
    blank lines are skipped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"conversation file {path} does not exist", "give a .jsonl file of conversations")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text", "give a UTF-8 .jsonl file of conversations") from None
    out, offset = [], 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.strip():
            out.append((parse_line(line, f"{path} line {number}"), number, offset))
        offset += len(line)
    return out


def parse_line(line: str, where: str) -> tuple:
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise UserError(f"{where} is not JSON ({e.msg})", SCHEMA_HINT) from None
    if not isinstance(obj, dict) or "messages" not in obj:
        raise UserError(f"{where} is not a conversation (no \"messages\")", SCHEMA_HINT)
    return parse_messages(obj["messages"], where)


# ---- rendering -----------------------------------------------------------------------------------
def segments(messages) -> list:
    """[(text, is_special, trained)] of a conversation, in order: what render() encodes."""
    out = [(BOS, True, 0)]
    system = ""
    for message in messages:
        if message.role == "system":
            system = message.content + "\n\n"
            continue
        if message.role == "user":
            out += [(USER_START, True, 0), (system + message.content, False, 0), (USER_END, True, 0)]
            system = ""
            continue
        out.append((ASSISTANT_START, True, 0))
        for part in message.content:
            if part.type == "text":
                out.append((part.text, False, 1))
            elif part.type == "tool_call":
                out += [(TOOL_START, True, 1), (tool_call_text(part.tool, part.text), False, 1), (TOOL_END, True, 1)]
            else:
                out += [(OUTPUT_START, True, 0), (part.text, False, 0), (OUTPUT_END, True, 0)]
        out.append((ASSISTANT_END, True, 1))
    return out


def plain_texts(messages) -> list:
    """The ordinary (non-special) texts of a conversation: what a tokenizer made for it must cover."""
    return [text for text, special, _ in segments(messages) if not special and text]


def require_chat_tokens(tokenizer) -> None:
    missing = [name for name in CHAT_TOKENS if name not in tokenizer.special_tokens]
    if missing:
        raise UserError(f"the tokenizer has no chat special tokens ({', '.join(missing[:3])}"
                        f"{' ...' if len(missing) > 3 else ''})",
                        "train with --examples chat (which adds them), or fine-tune with --init BASE_RUN")


def render(tokenizer, messages, where: str = "a conversation") -> tuple:
    """(ids, mask): the conversation's token ids and, for each, 1 if training learns it, else 0."""
    require_chat_tokens(tokenizer)
    ids, mask = [], []
    for text, special, trained in segments(messages):
        if special:
            piece = [tokenizer.special_tokens[text]]
        else:
            try:
                piece = tokenizer.encode_ordinary(text)
            except UserError as e:
                raise UserError(f"{where}: {e.message}", e.hint) from None
        ids += piece
        mask += [trained] * len(piece)
    return ids, mask


def render_prompt(tokenizer, messages) -> list:
    """Ids of messages ending with the user's, followed by <|assistant_start|>: where a reply begins."""
    ids, _ = render(tokenizer, messages, "the prompt")
    return ids + [tokenizer.special_tokens[ASSISTANT_START]]


# ---- reading rendered ids back ------------------------------------------------------------------
def reply_parts(tokenizer, ids) -> tuple:
    """The Parts of an assistant reply's ids (what follows <|assistant_start|>, up to <|assistant_end|>):
    text, tool calls (a call that is not name(input) keeps its text, with tool ""), tool outputs."""
    names = {i: name for name, i in tokenizer.special_tokens.items() if name in CHAT_TOKENS}
    parts, run, inside = [], [], "text"

    def close(kind):
        text = tokenizer.decode(run)
        run.clear()
        if kind == "text":
            if text:
                if parts and parts[-1].type == "text":
                    parts[-1] = Part("text", parts[-1].text + text)
                else:
                    parts.append(Part("text", text))
        elif kind == "tool_call":
            call = parse_tool_call(text)
            parts.append(Part("tool_call", call[1], call[0]) if call else Part("tool_call", text, ""))
        else:
            parts.append(Part("tool_output", text))

    for i in ids:
        name = names.get(int(i))
        if name is None:
            run.append(int(i))
        elif name in (TOOL_START, OUTPUT_START):
            if inside == "text":
                close("text")
            inside = "tool_call" if name == TOOL_START else "tool_output"
        elif name in (TOOL_END, OUTPUT_END):
            close(inside)
            inside = "text"
        elif name == ASSISTANT_END:
            break
        else:  # a token that has no place in a reply: keep its text, so nothing is hidden
            run += tokenizer.encode(name, allowed_special="none")
    if run or inside != "text":
        close(inside)
    return tuple(parts)


def parse_rendered(tokenizer, ids) -> tuple:
    """The Messages of rendered ids (a system message comes back merged into the first user's)."""
    names = {i: name for name, i in tokenizer.special_tokens.items() if name in CHAT_TOKENS}
    messages, start, role = [], None, None
    for position, i in enumerate(list(ids) + [None]):
        name = names.get(int(i)) if i is not None else None
        if name == USER_START:
            role, start = "user", position + 1
        elif name == USER_END and role == "user":
            messages.append(Message("user", tokenizer.decode(ids[start:position])))
            role = None
        elif name == ASSISTANT_START:
            role, start = "assistant", position + 1
        elif role == "assistant" and (name == ASSISTANT_END or i is None):
            messages.append(Message("assistant", reply_parts(tokenizer, ids[start:position])))
            role = None
    return tuple(messages)
