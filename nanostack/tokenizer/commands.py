"""`nanostack tokenizer train | encode | decode | stats | show`: what each subcommand does."""
import sys
import time
from pathlib import Path

from tqdm import tqdm

from nanostack.errors import UserError
from nanostack.tokenizer import BPETokenizer, open_tokenizer
from nanostack.tokenizer.inspect import format_stats, show_html, show_terminal, token_stats


def train(data: str, vocab_size: int, out: str, pattern="gpt4", special=(), force=False, echo=print) -> BPETokenizer:
    """Train a BPE tokenizer on the training split of a corpus and save it to out (.json)."""
    from nanostack.data import load_corpus  # noqa: PLC0415 (data imports the tokenizer package)
    from nanostack.data.shards import split_corpus  # noqa: PLC0415

    out = Path(out)
    if out.suffix != ".json":
        raise UserError(f"--out {out} should be a .json file", "name it like tokenizer.json")
    if out.exists() and not force:
        raise UserError(f"{out} already exists", "pass --force to replace it, or choose another --out")
    train_text, _ = split_corpus(load_corpus(data))
    t0 = time.perf_counter()
    with tqdm(total=max(0, vocab_size - 256 - len(special)), unit="merge", disable=not sys.stderr.isatty()) as bar:
        tok = BPETokenizer.train(train_text, vocab_size, pattern=None if pattern == "none" else pattern,
                                 special_tokens=list(special), progress=lambda n: bar.update(1))
    seconds = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(out)
    echo(f"trained {len(tok.merges):,} merges on {len(train_text):,} characters in {seconds:.2f}s; "
         f"vocab {tok.vocab_size:,}; saved {out}")
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
    tok = open_tokenizer(spec)
    if isinstance(tok, BPETokenizer):
        return " ".join(map(str, tok.encode(text, allowed_special=allowed_special)))
    return " ".join(map(str, tok.encode(text)))


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


def show(spec: str, text: str, html_path=None) -> str:
    tok = open_tokenizer(spec)
    if html_path:
        Path(html_path).write_text(show_html(tok, text, title=f"{spec}: tokens"), encoding="utf-8")
    return show_terminal(tok, text)
