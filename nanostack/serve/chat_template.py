"""The one place where chat messages become a prompt: `chat_prompt(tokenizer, messages)`.

A run whose tokenizer has the chat special tokens (trained with --examples chat) gets the chat layer's
template (nanostack.chat.template): its token ids, ending with <|assistant_start|>, and the text of
<|assistant_end|> and <|bos|> as stops. Every other run gets the plain-text template a base model can
continue:

    System: …            (only if there is a system message)
    User: …
    Assistant: …
    User: …
    Assistant:

with stop string "\\nUser:", so the model's next invented user turn is cut off.
"""
from nanostack.chat.template import has_chat_template, render_for_reply, stop_token_id

PLAIN_STOP = "\nUser:"
ROLE_NAMES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}


def plain_chat_text(messages) -> str:
    lines = [f"{ROLE_NAMES[m['role']]}: {m['content']}" for m in messages]
    return "\n".join(lines + ["Assistant:"])


def chat_template_name(tokenizer) -> str:
    """What /v1/models reports as the run's chat template."""
    return "nanostack" if has_chat_template(tokenizer) else "plain"


def chat_prompt(tokenizer, messages):
    """(token ids, stop strings) for a list of {"role", "content"} messages (content as plain text)."""
    if has_chat_template(tokenizer):
        roles = [{**m, "role": "system" if m.get("role") == "developer" else m.get("role")} for m in messages]
        stops = [tokenizer.decode([stop_token_id(tokenizer)]), tokenizer.decode([tokenizer.special_id("<|bos|>")])]
        return render_for_reply(tokenizer, roles), stops
    return tokenizer.encode(plain_chat_text(messages), allowed_special="none"), [PLAIN_STOP]
