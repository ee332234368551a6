"""The tokenization debugger: see where a tokenizer cuts a text, and how well it compresses one.

show_terminal / show_html colour each token with alternating backgrounds, so a reader sees the
pieces the model sees; a token holding part of a character (a byte of an emoji) shows as hex.
token_stats measures a tokenizer on a text: bytes per token, the most frequent tokens, and the
tokens it never uses (vocabulary spent on nothing).
"""
import html
from collections import Counter

# background colours for the terminal (256-colour ANSI) and the page, cycled token by token
TERMINAL_COLOURS = (153, 223, 194, 217, 189, 230)
PAGE_COLOURS = ("#bde0fe", "#ffe5b4", "#caffbf", "#ffc6c6", "#d7ccff", "#fdffb6")


def token_pieces(tokenizer, ids) -> list:
    """The text of each token; bytes that do not form whole characters as <hex>."""
    pieces = []
    for i in ids:
        data = tokenizer.decode_bytes([i])
        try:
            pieces.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            pieces.append("<" + data.hex(" ") + ">")
    return pieces


def encode_plain(tokenizer, text):
    return list(tokenizer.encode_ordinary(text))


def show_terminal(tokenizer, text: str, colour=True) -> str:
    """Each token on an alternating background (colour), or in [brackets] where colour codes would be
    noise (a pipe, a file)."""
    ids = encode_plain(tokenizer, text)
    out = []
    for n, piece in enumerate(token_pieces(tokenizer, ids)):
        visible = piece.replace("\n", "↵\n").replace("\t", "→")
        if colour:
            out.append(f"\x1b[48;5;{TERMINAL_COLOURS[n % len(TERMINAL_COLOURS)]}m\x1b[30m{visible}\x1b[0m")
        else:
            out.append(f"[{visible}]")
    return "".join(out) + f"\n\n{len(ids)} tokens: {' '.join(map(str, ids))}\n"


def show_html(tokenizer, text: str, title="nanostack tokenizer") -> str:
    ids = encode_plain(tokenizer, text)
    spans = []
    for n, (i, piece) in enumerate(zip(ids, token_pieces(tokenizer, ids))):
        visible = html.escape(piece).replace("\n", "↵<br>").replace("\t", "→")
        spans.append(f'<span style="background:{PAGE_COLOURS[n % len(PAGE_COLOURS)]}" title="id {i}">{visible}</span>')
    stats = token_stats(tokenizer, text, top=0)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            "<body style='font-family:monospace;white-space:pre-wrap;max-width:60em'>"
            f"<p>{stats['tokens']} tokens, {stats['bytes']} bytes, {stats['bytes_per_token']:.2f} bytes per token. "
            "Hover a token for its id.</p>"
            f"<div>{''.join(spans)}</div><p>ids: {' '.join(map(str, ids))}</p></body></html>\n")


def token_stats(tokenizer, text: str, top=20, show_unused=20) -> dict:
    """Compression and usage of tokenizer on text."""
    ids = encode_plain(tokenizer, text)
    counts = Counter(ids)
    n_bytes = len(text.encode("utf-8"))
    unused = [i for i in range(tokenizer.vocab_size) if i not in counts]
    frequent = counts.most_common(top)
    frequent_pieces = token_pieces(tokenizer, [i for i, _ in frequent])
    return {
        "characters": len(text), "bytes": n_bytes, "tokens": len(ids),
        "bytes_per_token": n_bytes / max(1, len(ids)),
        "characters_per_token": len(text) / max(1, len(ids)),
        "compression_ratio": n_bytes / max(1, len(ids)),  # bytes in per token out: 1.0 means no compression
        "vocab_size": tokenizer.vocab_size, "tokens_used": len(counts), "tokens_unused": len(unused),
        "most_frequent": [(i, piece, c) for (i, c), piece in zip(frequent, frequent_pieces)],
        "unused_examples": list(zip(unused[:show_unused], token_pieces(tokenizer, unused[:show_unused]))),
    }


def format_stats(stats: dict) -> str:
    lines = [f"{stats['characters']:,} characters, {stats['bytes']:,} bytes -> {stats['tokens']:,} tokens",
             f"bytes per token (compression ratio): {stats['bytes_per_token']:.3f}; "
             f"characters per token: {stats['characters_per_token']:.3f}",
             f"vocabulary: {stats['vocab_size']:,} tokens, {stats['tokens_used']:,} used, "
             f"{stats['tokens_unused']:,} never used in this text"]
    if stats["most_frequent"]:
        lines.append("most frequent:")
        lines += [f"  {i:>6}  {c:>9,}  {piece!r}" for i, piece, c in stats["most_frequent"]]
    if stats["unused_examples"]:
        lines.append("never used (first few):")
        lines += [f"  {i:>6}  {piece!r}" for i, piece in stats["unused_examples"]]
    return "\n".join(lines)
