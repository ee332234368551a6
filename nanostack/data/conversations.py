"""Conversations as training data: the chat kind of Dataset (dataset.py), for supervised fine-tuning.

A JSONL file of conversations (chat_format.py) is rendered to token ids with a loss mask, and only
what the assistant writes is learned: the target of every other position is -1, which every model's
loss ignores. Training rows are block_size + 1 tokens long. Conversations are packed into them whole
(each row starts with the next conversation in a seeded random order, its room is filled best fit from
the next few waiting, and then its conversations are put in a random order), so a conversation that fits
in a row is never cut; a longer one is cut into pieces of a row each (one token overlapping, so every
token is a target once), and the count is said. Pieces with nothing to learn are not trained on.
Padding reads <|bos|> and has target -1.

The exact pass (examples, batches) gives each conversation (or piece) a row of its own, aligned with
its Example: the text is the rendered conversation, the offset its line's character offset in the file.
The split is by seed, as for lines: 1000 test conversations, or 10% when there are fewer.
"""
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nanostack.data.chat_format import BOS, CHAT_TOKENS, plain_texts, read_conversation_lines, render
from nanostack.data.dataset import Dataset, Example, example_id
from nanostack.errors import UserError
from nanostack.tokenizer import Tokenizer, TokenizerSpec

MAX_TEST = 1000
MIN_CONVERSATIONS = 10
DEFAULT_MAX_BLOCK = 1024  # the default block size is the longest conversation, up to this


@dataclass
class Unit:
    """A conversation, or a piece of one too long for a row: what one row of the exact pass holds."""
    ids: list
    mask: list
    line: int     # the conversation's line in the file
    offset: int   # that line's character offset
    piece: int    # 0 for a whole conversation, else its piece number from 1


@dataclass
class Conversations(Dataset):
    source: str
    tokenizer: object
    train_items: list   # [(messages, line, offset)], per split
    test_items: list
    data_hash: str
    seed: int = 0       # fixes the packing order
    kind: str = "chat"
    _block: int = field(default=0, repr=False)
    _units: dict = field(default_factory=dict, repr=False)
    _rows: dict = field(default_factory=dict, repr=False)
    _rendered: dict = field(default_factory=dict, repr=False)

    heldout = "test"
    boundary = BOS
    masks_targets = True  # only the assistant's tokens are learned

    def items(self, split: str) -> list:
        return self.train_items if self.split_name(split) == "train" else self.test_items

    def rendered(self, split: str) -> list:
        """[(ids, mask)] of every conversation of the split."""
        split = self.split_name(split)
        if split not in self._rendered:
            self._rendered[split] = [render(self.tokenizer, messages, f"{self.source} line {line}")
                                     for messages, line, _ in self.items(split)]
        return self._rendered[split]

    @property
    def longest(self) -> int:
        return max(len(ids) for split in ("train", "test") for ids, _ in self.rendered(split))

    def block_size(self, requested=None, log=print) -> int:
        """The longest conversation (less one: x is a row's tokens but the last), up to 1024, unless a
        size was asked for. Longer conversations are cut into pieces, and the count is said."""
        block = requested or min(self.longest - 1, DEFAULT_MAX_BLOCK)
        self._use_block(block)
        too_long = sum(len(ids) > block + 1 for split in ("train", "test") for ids, _ in self.rendered(split))
        if too_long:
            log(f"note: {too_long} conversation(s) of {self.source} are longer than block_size {block} allows "
                f"(the longest has {self.longest} tokens); they are cut into pieces of {block + 1} tokens. "
                "Raise --block-size to keep them whole.")
        return block

    def units(self, split: str, block_size: int) -> list:
        """Every conversation of the split as one Unit, or as pieces of block_size + 1 tokens."""
        self._use_block(block_size)
        split = self.split_name(split)
        if split not in self._units:
            capacity, out = block_size + 1, []
            for (ids, mask), (_, line, offset) in zip(self.rendered(split), self.items(split)):
                if len(ids) <= capacity:
                    out.append(Unit(ids, mask, line, offset, 0))
                    continue
                for number, start in enumerate(range(0, len(ids) - 1, capacity - 1), start=1):
                    out.append(Unit(ids[start:start + capacity], mask[start:start + capacity], line, offset, number))
            self._units[split] = out
        return self._units[split]

    def _use_block(self, block_size: int) -> None:
        if block_size != self._block:
            self._block, self._units, self._rows = block_size, {}, {}

    def rows(self, split: str, block_size: int):
        """(x, y) int64 tensors (rows, block_size): the split's conversations packed whole into rows."""
        self._use_block(block_size)
        split = self.split_name(split)
        if split not in self._rows:
            units = [u for u in self.units(split, block_size) if any(u.mask[1:])]  # something to learn
            order = torch.randperm(len(units), generator=torch.Generator().manual_seed(self.seed)).tolist()
            packing = pack([len(u.ids) for u in units], block_size + 1, order, seed=self.seed)
            self._rows[split] = encode_rows(packing, units, block_size, self.tokenizer.special_tokens[BOS])
        return self._rows[split]

    def batch(self, split, batch_size, block_size, generator, device="cpu"):
        x, y = self.rows(split, block_size)
        picked = torch.randint(len(x), (batch_size,), generator=generator)
        return x[picked].to(device), y[picked].to(device)

    def examples(self, split, block_size=None) -> list:
        block_size = block_size or self._block or self.block_size(None, log=lambda *_: None)
        name = self.split_name(split)
        out = []
        for index, unit in enumerate(self.units(split, block_size)):
            text = self.tokenizer.decode(unit.ids)
            out.append(Example(example_id(text), name, index, self.source, unit.offset, text))
        return out

    def batches(self, split, block_size=None, batch_size=256):
        block_size = block_size or self._block or self.block_size(None, log=lambda *_: None)
        units = self.units(split, block_size)
        bos = self.tokenizer.special_tokens[BOS]
        for first in range(0, len(units), batch_size):
            rows = range(first, min(first + batch_size, len(units)))
            x, y = encode_rows([[i] for i in rows], units, block_size, bos)
            yield rows, x, y

    def unit(self, block_size) -> str:
        return "conversations"

    def heldout_in_train(self) -> int:
        train = {tuple(ids) for ids, _ in self.rendered("train")}
        return sum(tuple(ids) in train for ids, _ in self.rendered("test"))

    def describe(self) -> dict:
        return {"examples": {"kind": "chat", "train": len(self.train_items), "test": len(self.test_items),
                             "test_in_train": self.heldout_in_train(), "block_size": self._block or None,
                             "boundary": BOS}}


def pack(lengths, capacity: int, order=None, lookahead: int = 64, seed=None) -> list:
    """Pack items of the given lengths (each <= capacity) into rows: lists of indices, one per row.

    Each row starts with the next item in `order` (default: as given), and its room is then filled best
    fit: again and again the longest of the next `lookahead` waiting items that still fits. With a seed,
    the items of each row are then put in a random order. Both matter for a model with learned positions:
    a reply to a new conversation is generated from position 0, so every kind of conversation must often
    be trained there. Longest-first packing put the short ones always behind a long one, and the short
    ones are what best fit picks to fill a row; a model trained so failed the short problems it was asked."""
    waiting = list(range(len(lengths)) if order is None else order)
    waiting.reverse()  # pop() takes the next in order
    buffer, rows = [], []
    while waiting or buffer:
        while waiting and len(buffer) < lookahead:
            buffer.append(waiting.pop())
        row = [buffer.pop(0)]
        room = capacity - lengths[row[0]]
        while True:
            fits = [k for k, i in enumerate(buffer) if lengths[i] <= room]
            if not fits:
                break
            k = max(fits, key=lambda k: (lengths[buffer[k]], -k))
            room -= lengths[buffer[k]]
            row.append(buffer.pop(k))
            if len(buffer) < lookahead and waiting:
                buffer.append(waiting.pop())
        rows.append(row)
    if seed is not None:
        rng = random.Random(seed)
        for row in rows:
            rng.shuffle(row)
    return rows


def encode_rows(rows, units, block_size: int, pad: int):
    """x, y (len(rows), block_size): each row's units one after another; y[t] is the next token when
    training learns it, else -1; padding reads `pad` and has target -1."""
    x = torch.full((len(rows), block_size + 1), pad, dtype=torch.long)
    learn = torch.zeros((len(rows), block_size + 1), dtype=torch.bool)
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            unit = units[i]
            x[r, at:at + len(unit.ids)] = torch.as_tensor(unit.ids)
            learn[r, at:at + len(unit.ids)] = torch.as_tensor(unit.mask, dtype=torch.bool)
            learn[r, at] = False  # the first token of a unit is never predicted from the one before
            at += len(unit.ids)
    y = torch.where(learn[:, 1:], x[:, 1:], torch.full_like(x[:, 1:], -1))
    return x[:, :-1].contiguous(), y.contiguous()


def read_conversations(spec: str, seed: int, tokenizer="char") -> Conversations:
    """The conversations of a JSONL file, split into train and test by seed. tokenizer is a spec (a new
    tokenizer is made from the conversations, with the chat special tokens) or a tokenizer object that
    has them (a run's own, or an --init base run's, extended)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        raise UserError(f"--examples chat reads one .jsonl file, and {spec} is a folder", "give the .jsonl file")
    items = [(messages, line, offset) for messages, line, offset in read_conversation_lines(path)]
    if len(items) < MIN_CONVERSATIONS:
        raise UserError(f"{spec} has {len(items)} conversation(s); chat training needs at least {MIN_CONVERSATIONS}",
                        "add conversations, one JSON object per line")
    test_size = min(MAX_TEST, len(items) // 10)
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    train_items, test_items = [items[i] for i in order[:-test_size]], [items[i] for i in order[-test_size:]]
    if not isinstance(tokenizer, Tokenizer):
        spec_value = TokenizerSpec.parse(tokenizer)
        train_text = "\n".join(t for messages, _, _ in train_items for t in plain_texts(messages))
        test_text = "\n".join(t for messages, _, _ in test_items for t in plain_texts(messages))
        tokenizer = spec_value.build(train_text + "\n", test_text, special_tokens=list(CHAT_TOKENS))
    data_hash = hashlib.sha256(f"chat|{seed}|".encode() + path.read_bytes()).hexdigest()
    data = Conversations(spec, tokenizer, train_items, test_items, data_hash, seed)
    data.rendered("train")  # refuses a tokenizer without the chat tokens, or text it cannot encode, up front
    data.rendered("test")
    return data
