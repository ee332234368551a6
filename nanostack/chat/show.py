"""`nanostack tokenizer show --chat FILE.jsonl`: conversations as the model trains on them, token by token.

Trained tokens (mask 1: what the assistant writes) are green, tokens it only reads (mask 0) are grey;
without colour, trained tokens are in [brackets] and read ones in (parentheses). A tokenizer without
the chat special tokens (gpt2, say) has them added for the display, as --init would add them.
"""
from nanostack.data.chat_format import CHAT_TOKENS, read_conversation_lines, render
from nanostack.errors import UserError
from nanostack.tokenizer.inspect import token_pieces

TRAINED, READ, RESET = "\x1b[30;48;5;157m", "\x1b[90;48;5;255m", "\x1b[0m"


def show_conversations(tokenizer, path, colour=True, first=3) -> str:
    """The first `first` conversations of a JSONL file, rendered with their loss masks."""
    tokenizer.register_special_tokens(CHAT_TOKENS)
    conversations = read_conversation_lines(path)
    if first < 1:
        raise UserError(f"--first must be at least 1, got {first}", "give how many conversations to show")
    out = []
    for messages, line, _ in conversations[:first]:
        ids, mask = render(tokenizer, messages, f"{path} line {line}")
        out.append(f"line {line}: {len(ids)} tokens, {sum(mask)} trained\n")
        out.append(show_masked(tokenizer, ids, mask, colour) + "\n\n")
    out.append(f"{min(first, len(conversations))} of {len(conversations)} conversation(s) shown; "
               + ("green tokens are trained, grey ones only read\n" if colour
                  else "[trained] tokens are learned, (read) ones only read\n"))
    return "".join(out)


def show_masked(tokenizer, ids, mask, colour=True) -> str:
    pieces = []
    for piece, trained in zip(token_pieces(tokenizer, ids), mask):
        visible = piece.replace("\n", "↵\n")
        if colour:
            pieces.append(f"{TRAINED if trained else READ}{visible}{RESET}")
        else:
            pieces.append(f"[{visible}]" if trained else f"({visible})")
    return "".join(pieces)
