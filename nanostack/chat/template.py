"""The chat template, as other layers use it: does a tokenizer have one, the ids of a prompt that asks
for the assistant's reply, the id that ends a reply, and a reply's ids read back as message parts.

    has_chat_template(tokenizer) -> bool
    render_for_reply(tokenizer, messages) -> list[int]   # ends with <|assistant_start|>
    stop_token_id(tokenizer) -> int                      # <|assistant_end|>
    reply_message(tokenizer, ids) -> dict                # {"role": "assistant", "content": ...}

messages are JSON-like dicts as in a conversation file (chat_format.py): an optional system message,
then user and assistant taking turns, ending with the user's. An assistant's content may be text or a
list of parts (text, tool_call, tool_output); OpenAI-style text parts ({"type": "text", "text": ...})
are accepted in user and system content too. Bad messages raise UserError.
"""
from nanostack.data.chat_format import (ASSISTANT_END, CHAT_TOKENS, Message, parse_messages, render_prompt,
                                        reply_parts)
from nanostack.errors import UserError


def has_chat_template(tokenizer) -> bool:
    """True when the tokenizer reserves every chat special token (a run trained with --examples chat)."""
    return all(name in tokenizer.special_tokens for name in CHAT_TOKENS)


def stop_token_id(tokenizer) -> int:
    """The id that ends the assistant's reply."""
    return tokenizer.special_id(ASSISTANT_END)


def render_for_reply(tokenizer, messages) -> list:
    """The prompt ids for the assistant's next reply: the conversation so far, then <|assistant_start|>."""
    if not has_chat_template(tokenizer):
        raise UserError("this run's tokenizer has no chat template (no chat special tokens)",
                        "fine-tune it on conversations: nanostack train --init RUN --data chat.jsonl --examples chat")
    return render_prompt(tokenizer, parse_messages(_plain_text_parts(messages), "the messages", for_reply=True))


def reply_message(tokenizer, ids) -> dict:
    """A reply's generated ids (after <|assistant_start|>, up to <|assistant_end|>) as an assistant message:
    content is the text, or a list of parts when the reply called tools."""
    return Message("assistant", reply_parts(tokenizer, ids)).to_json()


def _plain_text_parts(messages):
    """OpenAI-style user/system content given as [{"type": "text", "text": ...}] joined into one text."""
    if not isinstance(messages, list):
        return messages
    out = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(m, dict) and m.get("role") in ("user", "system") and isinstance(content, list) and all(
                isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            m = {**m, "content": "".join(p["text"] for p in content)}
        out.append(m)
    return out
