"""The one place where chat messages become a prompt: `chat_prompt(tokenizer, messages)`.

SEAM for the chat layer (nanostack.chat): when a run's tokenizer has chat special tokens, this is
where the chat layer's renderer takes over (its token ids, and its end-of-turn token as the stop).
Until then every run gets the plain-text template a base model can continue:

    System: …            (only if there is a system message)
    User: …
    Assistant: …
    User: …
    Assistant:

with stop string "\\nUser:", so the model's next invented user turn is cut off.
"""
PLAIN_STOP = "\nUser:"
ROLE_NAMES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}


def plain_chat_text(messages) -> str:
    lines = [f"{ROLE_NAMES[m['role']]}: {m['content']}" for m in messages]
    return "\n".join(lines + ["Assistant:"])


def chat_template_name(tokenizer) -> str:
    """What /v1/models reports as the run's chat template."""
    return "plain"


def chat_prompt(tokenizer, messages):
    """(token ids, stop strings) for a list of {"role", "content"} messages (content as plain text)."""
    return tokenizer.encode(plain_chat_text(messages), allowed_special="none"), [PLAIN_STOP]
