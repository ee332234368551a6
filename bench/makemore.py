"""Benchmark: every makemore model on names.txt, at makemore's settings and step counts.

    python bench/makemore.py [--models bigram_counts,bigram,mlp,...] [--scale 1.0] [--set KEY=VALUE ...]

Each model trains with the `names` preset (makemore's batch 32, lr 5e-4, its sizes and its seed
3407, which gives makemore's exact 1000-name test split) for the number of steps makemore's figure
was taken at, then `nanostack eval` measures the mean NLL per token over the whole test split.
--scale multiplies every step count (0.1 for a quick look). Prints one JSON line per model, with
makemore's figure beside ours (and beside ours measured makemore's way, as a mean of 10 batch means),
and how many test names also occur in train.
"""
import argparse
import json
import tempfile
import time

from nanostack.evaluate import evaluate_run
from nanostack.train import train

# (model, steps, makemore's test NLL at those steps, measured with makemore's own code on a 2-core CPU)
MAKEMORE = [
    ("bigram_counts", 1, 2.451),  # compared with makemore's bigram: the counted table needs no steps
    ("bigram", 30_000, 2.451),
    ("mlp", 15_000, 2.040),
    ("rnn", 25_000, 2.050),
    ("gru", 14_000, 2.016),
    ("lstm", 14_000, None),
    ("wavenet", 15_000, 1.993),  # the WaveNet lecture's validation figure (its own split and sizes)
    ("transformer", 4_500, 2.013),
    ("transformer", 10_000, 1.972),
]
EXTRA = {"wavenet": {"n_embd": 24, "n_embd2": 128, "batchnorm": True, "context": 8},  # the lecture's sizes
         # makemore's own schedule: the preset's decay pulls the table of logits toward uniform (2.460),
         # and a bigram learns its table best at a small constant rate (2.455 cosine from 2e-3, 2.458 from 1e-2)
         "bigram": {"learning_rate": 5e-4, "min_lr": 5e-4, "warmup_iters": 0, "weight_decay": 0.01},
         "transformer": {"learning_rate": 4e-3}}  # at 4,500 steps: 2.009, against 2.023 at the preset's 2e-3


def run(model: str, steps: int, reference, scale: float, extra: dict) -> dict:
    steps = max(1, int(steps * scale))
    with tempfile.TemporaryDirectory() as out:
        t0 = time.time()
        summary = train(f"{out}/run", {"model": model, "max_iters": steps, "lr_decay_iters": steps,
                                       "eval_interval": max(1, steps // 5), "ckpt_interval": steps,
                                       **EXTRA.get(model, {}), **extra},
                        preset="names", log=lambda *a: None)
        seconds = time.time() - t0
        result = evaluate_run(f"{out}/run", "latest", splits=["train", "test"])
        batch_means = makemore_style_test_loss(f"{out}/run")
    return {"model": model, "steps": steps, "test_nll": round(result["test_nll"], 4), "makemore": reference,
            "test_nll_batch_means": round(batch_means, 4),
            "train_nll": round(result["train_nll"], 4), "test_in_train": result["heldout_in_train"],
            "params": summary["params"], "seconds": round(seconds, 1),
            "ms_per_step": round(summary["ms_per_step_median"], 2) if summary["ms_per_step_median"] else None}


def makemore_style_test_loss(run_dir) -> float:
    """makemore's own estimator: the mean of the mean losses of 10 batches of 100 test names (ours is the
    mean over every test token; names differ in length, so the two differ a little)."""
    from nanostack.loss import example_losses
    from nanostack.run import open_run

    run = open_run(run_dir)
    model = run.load_model("latest")
    total, count = example_losses(model, run.dataset(), "test", model.config.block_size)
    return sum((total[i:i + 100].sum() / count[i:i + 100].sum()).item() for i in range(0, 1000, 100)) / 10


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="bigram_counts,bigram,mlp,rnn,gru,lstm,wavenet,transformer")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every step count")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra settings for every model")
    args = parser.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.set)
    chosen = args.models.split(",")
    for model, steps, reference in MAKEMORE:
        if model in chosen:
            print(json.dumps(run(model, steps, reference, args.scale, extra)), flush=True)


if __name__ == "__main__":
    main()
