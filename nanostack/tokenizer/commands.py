"""`nanostack tokenizer train | encode | decode | stats | show`: what each subcommand does, given text
(the CLI reads corpora through the data layer; the tokenizer layer knows no corpus)."""
import sys
import time
from pathlib import Path

from tqdm import tqdm

from nanostack.errors import UserError
from nanostack.io import write_atomic
from nanostack.tokenizer import BPETokenizer, open_tokenizer
from nanostack.tokenizer.inspect import format_stats, show_html, show_terminal, token_stats


def train(train_text: str, vocab_size: int, out: str, pattern="gpt4", special=(), force=False,
          echo=print) -> BPETokenizer:
    """Train a BPE tokenizer on train_text (a corpus's training split) and save it to out (.json)."""
    out = Path(out)
    if out.suffix != ".json":
        raise UserError(f"--out {out} should be a .json file", "name it like tokenizer.json")
    if out.exists() and not force:
        raise UserError(f"{out} already exists", "pass --force to replace it, or choose another --out")
    t0 = time.perf_counter()
    with tqdm(total=max(0, vocab_size - 256 - len(special)), unit="merge", disable=not sys.stderr.isatty()) as bar:
        tok = BPETokenizer.train(train_text, vocab_size, pattern=pattern, special_tokens=list(special),
                                 progress=lambda n: bar.update(1))
    seconds = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(out)
    echo(f"trained {len(tok.merges):,} merges on {len(train_text):,} characters in {seconds:.2f}s; "
         f"vocab {tok.vocab_size:,}; saved {out}")
    if tok.vocab_size < vocab_size:
        echo(f"note: the text supports only {len(tok.merges):,} merges (no pair of tokens repeats after that), "
             f"so the vocabulary has {tok.vocab_size:,} tokens, not {vocab_size:,}")
    return tok


def read_input(text, file) -> str:
    """The text given on the command line, or read from --file (- for standard input)."""
    if file is not None:
        if file == "-":
            return sys.stdin.read()
        path = Path(file)
        if not path.is_file():
            raise UserError(f"--file {file} does not exist", "give a text file, or - for standard input")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{file} is not UTF-8 text", "convert it to UTF-8") from None
    if text is None:
        raise UserError("no text given", "pass the text as an argument, or --file PATH")
    return text


def encode(spec: str, text: str, allowed_special="none_raise") -> str:
    return " ".join(map(str, open_tokenizer(spec).encode(text, allowed_special=allowed_special)))


def decode(spec: str, ids) -> str:
    try:
        numbers = [int(i) for i in ids]
    except ValueError:
        raise UserError("token ids must be whole numbers", "give ids such as: 31373 995") from None
    tok = open_tokenizer(spec)
    if any(i < 0 or i >= tok.vocab_size for i in numbers):
        raise UserError(f"an id is outside this tokenizer's vocabulary of {tok.vocab_size}", "check the ids")
    return tok.decode(numbers)


def stats(spec: str, text: str, top=20) -> str:
    return format_stats(token_stats(open_tokenizer(spec), text, top=top))


def show(spec: str, text: str, html_path=None, colour=True) -> str:
    """The text token by token: coloured on a terminal, in brackets in a pipe (no colour codes)."""
    tok = open_tokenizer(spec)
    if html_path:
        write_atomic(html_path, show_html(tok, text, title=f"{spec}: tokens"))
    return show_terminal(tok, text, colour=colour)
