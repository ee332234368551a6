"""Tokenizers: text <-> token ids, behind one interface (base.Tokenizer).

`char` is character-level (char.py), `bpe` byte-level BPE as GPT-2/GPT-4 tokenize (bpe.py, trained
by bpe_train.py on the split patterns of patterns.py). A `--tokenizer` setting is parsed once into a
TokenizerSpec (spec.py); a run stores its tokenizer as one JSON file. The tokenizer layer knows no
corpus: it is given text.
"""
from nanostack.tokenizer.base import Tokenizer
from nanostack.tokenizer.bpe import BPETokenizer
from nanostack.tokenizer.char import CharTokenizer
from nanostack.tokenizer.spec import SPEC_HELP, TokenizerSpec, gpt2_tokenizer, load_tokenizer, open_tokenizer

__all__ = ["BPETokenizer", "CharTokenizer", "SPEC_HELP", "Tokenizer", "TokenizerSpec", "gpt2_tokenizer",
           "load_tokenizer", "open_tokenizer"]
