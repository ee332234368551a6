"""`nanostack eval RUN_DIR`: the exact loss of a run on the data it trained on.

Every example (or stream window) of the held-out split is scored once, and the mean NLL per token
reported; for example-per-row data, with how many held-out examples also occur in train (names.txt
repeats names, so some "test" names are not new). `--splits train,test` adds the training split.
It can also write the NLL of every example to a TSV, with the example's stable id and place in the
source, so it can be joined with other scores: the hardest and most surprising examples are where
a data engine starts.

`--data TEXT` scores the run on other data instead (cut the way the run's data was, tokenized by
the run's own tokenizer): the held-out split of TEXT, or the splits named. An imported run has no
data of its own, so this is how it is evaluated.
"""
import csv
from pathlib import Path

from nanostack.data import open_dataset
from nanostack.errors import UserError
from nanostack.loss import example_losses
from nanostack.run import open_run


def evaluate_run(run_dir, which="best", per_example=None, splits=None, device="cpu", data=None) -> dict:
    """{"heldout": name, "<split>_nll": mean NLL per token, "<split>_examples": count, "heldout_in_train": n}.
    With `data` (a corpus name, file or folder), on that data instead of the run's own."""
    run = open_run(run_dir)
    model = run.load_model(which, device)
    block = model.config.block_size
    if data is None:
        data = run.dataset()
    else:
        data = open_dataset(data, run.tokenizer(), run.data_kind, run.train_config().seed, log=lambda *a: None)
        data.block_size(block, log=lambda *a: None)
    wanted = [data.split_name(s) for s in (splits or [data.heldout])]
    result = {"heldout": data.heldout, "heldout_in_train": data.heldout_in_train(), "unit": data.unit(block)}
    rows = []
    for split in dict.fromkeys(wanted):  # in order, once each
        sums, counts = example_losses(model, data, split, block, device)
        result[f"{split}_nll"] = (sums.sum() / counts.sum()).item()
        result[f"{split}_examples"] = len(sums)
        result[f"{split}_tokens"] = int(counts.sum())
        if per_example:
            for example, total, n in zip(data.examples(split, block), sums.tolist(), counts.tolist()):
                rows.append((example, total, n))
    result["loss"] = result[f"{data.heldout}_nll"] if data.heldout in wanted else result[f"{wanted[0]}_nll"]
    if per_example:
        write_per_example(per_example, rows)
        result["per_example"] = str(per_example)
    return result


def parse_splits(text: str) -> list:
    splits = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in splits if s not in ("train", "val", "test")]
    if not splits or unknown:
        raise UserError(f"--splits {text!r} names no split or an unknown one", "use train, val or test, e.g. train,test")
    return splits


def write_per_example(path, rows) -> None:
    """A TSV: split, id, source, offset, example, nll_sum, tokens, nll_per_token; hardest (highest NLL per
    token) first. Written to a temporary name and renamed."""
    path = Path(path)
    rows = sorted(rows, key=lambda r: -r[1] / max(r[2], 1))
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["split", "id", "source", "offset", "example", "nll_sum", "tokens", "nll_per_token"])
            writer.writerows((e.split, e.id, e.source, e.offset, e.text, f"{t:.6f}", n, f"{t / max(n, 1):.6f}")
                             for e, t, n in rows)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path} ({e.strerror})", "choose another --per-example path") from None
