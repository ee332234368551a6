"""`nanostack eval RUN_DIR`: the exact loss of a run on its held-out data.

For a line-per-example run: the mean NLL per token over every test example, next to how many
test examples also occur in train (names.txt repeats names, so some "test" names are not new).
It can also write the NLL of every example, train and test, to a file: the hardest and the
most surprising examples are where a data engine starts. For a stream run: the loss over the
whole val split.
"""
import csv
from pathlib import Path

from nanostack.data import read_examples
from nanostack.data.shards import prepare_shards
from nanostack.errors import UserError
from nanostack.io import read_json
from nanostack.sample import load_run
from nanostack.train.evaluate import example_nll, split_loss


def evaluate_run(run_dir, which="best", per_example=None) -> dict:
    run_dir = Path(run_dir)
    model, _ = load_run(run_dir, which)
    config = read_json(run_dir / "config.json", "run config")
    train_cfg = config.get("train", {})
    if config.get("data_mode") != "lines":
        if per_example:
            raise UserError("--per-example is for line-per-example runs", "drop it for this run")
        shards = prepare_shards(train_cfg["data"], train_cfg.get("tokenizer", "char"), log=lambda *a: None)
        return {"split": "val", "loss": split_loss(model, shards.val, model.config.block_size)}
    examples = read_examples(train_cfg["data"], train_cfg["seed"])
    if examples.data_hash != config.get("data_hash"):
        raise UserError(f"the data {train_cfg['data']} has changed since this run trained",
                        "evaluate on the data it trained on, or retrain")
    result = {"split": "test", "test_examples": len(examples.test_words), "test_in_train": examples.overlap()}
    for split in ("train", "test"):
        total, count = example_nll(model, *examples.tensors(split))
        result[f"{split}_nll"] = (total.sum() / count.sum()).item()
        if per_example:
            words = examples.train_words if split == "train" else examples.test_words
            rows = [(split, w, t.item(), c.item(), t.item() / c.item()) for w, t, c in zip(words, total, count)]
            result.setdefault("_rows", []).extend(rows)
    if per_example:
        write_per_example(per_example, result.pop("_rows"))
        result["per_example"] = str(per_example)
    result["loss"] = result["test_nll"]
    return result


def write_per_example(path, rows) -> None:
    """A TSV: split, example, nll_sum, tokens, nll_per_token; hardest (highest NLL per token) first."""
    path = Path(path)
    rows = sorted(rows, key=lambda r: -r[4])
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["split", "example", "nll_sum", "tokens", "nll_per_token"])
        writer.writerows((s, w, f"{t:.6f}", c, f"{m:.6f}") for s, w, t, c, m in rows)
    tmp.replace(path)
