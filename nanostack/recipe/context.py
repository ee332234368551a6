"""DoctorContext: what every check may use, whatever the model and the data.

A context holds a Dataset (streams and example-per-row data look the same through it), a way to
build a fresh model from a seed and an optimizer for it, the run's learning rate, batch and block
size, and, for a run folder, its metrics and probes. It gives the checks deterministic batches
(the trainer's own first batch included), token texts, the baselines a loss is judged against
(ln V, the unigram and the bigram cross-entropy of the held-out split under the training split's
counts), and measurements several checks share (the statistics of one step at initialization,
the dependency chart of one position, a short training run), computed once.

It is built from a TrainConfig (`from_config`), a run folder (`from_run`), or directly from
functions (tests build models with one bug each this way).
"""
import json
import math
from dataclasses import replace
from functools import cached_property

import numpy as np
import torch
import torch.nn as nn

from nanostack.data import open_dataset
from nanostack.errors import UserError
from nanostack.models.engines import build_model, resolve_device
from nanostack.recipe.result import thresholds_with
from nanostack.run import open_run
from nanostack.train.optimizer import make_optimizer
from nanostack.train.probe_stats import Capture, to_host
from nanostack.train.trainer import model_config

BASELINE_TOKENS = 2_000_000   # tokens of each split read for the unigram and bigram baselines
BIGRAM_WEIGHT = 0.9           # the bigram baseline: 0.9 x counts(next | current) + 0.1 x unigram
STATS_ROWS = 32               # rows of the batch the statistics at initialization are measured on
SCORED_ROWS = 2000            # held-out rows scored with the trained model for the report


def quiet(*args, **kwargs):
    pass


class DoctorContext:
    def __init__(self, dataset, model_factory, optimizer_factory, *, learning_rate: float, batch_size: int,
                 block_size: int, seed: int = 1337, device: str = "cpu", weight_decay: float = 0.0,
                 warmup_iters: int = 0, config=None, run=None, thresholds=None, log=quiet):
        self.dataset, self.model_factory, self.optimizer_factory = dataset, model_factory, optimizer_factory
        self.learning_rate, self.batch_size, self.block_size = learning_rate, batch_size, block_size
        self.seed, self.device, self.weight_decay, self.warmup_iters = seed, device, weight_decay, warmup_iters
        self.config, self.run, self.log = config, run, log
        self.thresholds = thresholds if thresholds is not None else thresholds_with({}, "defaults")

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg, run=None, dataset=None, thresholds=None, log=quiet) -> "DoctorContext":
        """The context of a training config (a TrainConfig): its data, model, optimizer and settings."""
        if dataset is None:
            dataset = open_dataset(cfg.data, cfg.tokenizer, cfg.examples, cfg.seed, log=log)
        block = dataset.block_size(cfg.block_size or None, log=quiet)
        cfg = replace(cfg, block_size=block)
        shape = model_config(cfg, dataset.tokenizer.vocab_size)
        if cfg.model == "bigram_counts":
            raise UserError("bigram_counts is fitted by counting, with no gradients for the checks to probe",
                            "check --model bigram (the same table learned by gradient descent) instead")
        device = resolve_device(cfg.device)
        device_type = device.split(":")[0]

        def new_model(seed):
            return build_model("torch", shape, seed, device)

        def new_optimizer(model, lr, weight_decay):
            # built as the trainer builds it, at the run's peak lr (Muon's groups take their lr_scale from it), then
            # set to lr as the trainer's schedule sets it
            optimizer = make_optimizer(model, cfg.learning_rate, weight_decay, (cfg.beta1, cfg.beta2), device_type,
                                       kind=cfg.optimizer, muon_lr=cfg.muon_lr, muon_momentum=cfg.muon_momentum)
            set_lr(optimizer, lr)
            return optimizer

        return cls(dataset, new_model, new_optimizer, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
                   block_size=block, seed=cfg.seed, device=device, weight_decay=cfg.weight_decay,
                   warmup_iters=cfg.warmup_iters, config=cfg, run=run, thresholds=thresholds, log=log)

    @classmethod
    def from_run(cls, run_dir, thresholds=None, log=quiet) -> "DoctorContext":
        """The context of a trained run: its config, its data (hash-checked, its own tokenizer), its files."""
        run = open_run(run_dir)
        if not run.metrics():
            raise UserError(f"{run.path} has no metrics yet (metrics.jsonl is missing or empty)",
                            "train it for at least --log-interval steps, or check a config before training with "
                            "`nanostack doctor --data NAME --config PRESET`")
        return cls.from_config(run.train_config(), run=run, dataset=run.dataset(log), thresholds=thresholds,
                               log=log)

    # ---- what checks use ------------------------------------------------------------------------------
    @property
    def run_dir(self):
        return None if self.run is None else self.run.path

    @property
    def tokenizer(self):
        return self.dataset.tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def ln_vocab(self) -> float:
        return math.log(self.vocab_size)

    def limits(self, check_id: str) -> dict:
        return self.thresholds[check_id]

    def new_model(self, seed=None, dropout: bool = True):
        """A freshly initialized model (train mode, on the device); seed defaults to the run's."""
        seed = self.seed if seed is None else seed
        torch.manual_seed(seed)
        model = self.model_factory(seed)
        if not isinstance(model, nn.Module):
            raise UserError(f"the checks probe torch models, and this model is a {type(model).__name__}",
                            "check it with the torch backend (its weights load on either)")
        if not any(p.requires_grad for p in model.parameters()):
            raise UserError("this model has no trainable parameters for the checks to probe",
                            "check a model trained by gradient descent")
        model = model.to(self.device).train()
        return model if dropout else without_dropout(model)

    def new_optimizer(self, model, lr=None, weight_decay=None):
        return self.optimizer_factory(model, self.learning_rate if lr is None else lr,
                                      self.weight_decay if weight_decay is None else weight_decay)

    @cached_property
    def adaptive(self) -> bool:
        """True when the optimizer scales its steps per parameter (Adam and kin), False for SGD-like ones."""
        name = type(self.new_optimizer(self.new_model())).__name__.lower()
        return any(k in name for k in ("adam", "rmsprop", "adagrad", "adafactor", "lion", "muon", "sophia"))

    def batch(self, split: str, i: int = 0, batch_size=None):
        """Batch i of a split: the same rows every time (a generator of its own, seeded by seed, split, i)."""
        generator = torch.Generator().manual_seed(self.seed * 1009 + 7919 * (i + 1) + (0 if split == "train" else 1))
        return self.dataset.batch(split, batch_size or self.batch_size, self.block_size, generator, self.device)

    def first_batch(self):
        """The trainer's first batch: its data generator is seeded with the run's seed and draws nothing before."""
        generator = torch.Generator().manual_seed(self.seed)
        return self.dataset.batch("train", self.batch_size, self.block_size, generator, self.device)

    def token_texts(self, ids) -> list:
        """The text of each token id, one by one (a byte-level token that is half a character shows as �)."""
        return [self.tokenizer.decode_bytes([int(i)]).decode("utf-8", errors="replace") for i in ids]

    def decode(self, ids) -> str:
        return self.tokenizer.decode_bytes([int(i) for i in ids if int(i) >= 0]).decode("utf-8", errors="replace")

    def loss(self, model, x, y) -> torch.Tensor:
        _, loss = model(x, y)
        return loss

    def eval_loss(self, model, batches, zero_inputs: bool = False) -> float:
        """Mean loss over held-out batches (eval mode, no gradients)."""
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                losses = [self.loss(model, torch.zeros_like(x) if zero_inputs else x, y).item() for x, y in batches]
        finally:
            model.train(was)
        return sum(losses) / len(losses)

    def val_batches(self, n: int = 4) -> list:
        """n held-out batches of at least STATS_ROWS rows (a loss on a few short examples is too noisy)."""
        return [self.batch("val", i, batch_size=max(self.batch_size, STATS_ROWS)) for i in range(n)]

    # ---- baselines -------------------------------------------------------------------------------------
    @cached_property
    def baselines(self) -> dict:
        """{"ln_v", "unigram_ce", "bigram_ce"} of the data (see compute_baselines)."""
        return compute_baselines(self.dataset, self.block_size)

    @property
    def unigram_ce(self) -> float:
        return self.baselines["unigram_ce"]

    @property
    def bigram_ce(self) -> float:
        return self.baselines["bigram_ce"]

    # ---- shared measurements ----------------------------------------------------------------------------
    @cached_property
    def init_stats(self) -> dict:
        """{layer name: {"kind", "act": stats, "grad": stats}} of one forward and backward at initialization (train
        mode, as training runs) on a batch of at least STATS_ROWS rows: "dead at every position" needs positions."""
        model = self.new_model()
        x, y = self.batch("train", 0, batch_size=max(self.batch_size, STATS_ROWS))
        with Capture(model, mask=y != -1) as capture:  # padding positions are not what the model learns from
            self.loss(model, x, y).backward()
        layers = {name: {"kind": layer["kind"], "act": layer["act"].reduce(),
                         "grad": None if layer["grad"].empty else layer["grad"].reduce()}
                  for name, layer in capture.layers.items() if not layer["act"].empty}
        return to_host(layers)

    @cached_property
    def dependence(self):
        """How logits[0, T/2] depend on every input position (see dependence.py)."""
        from nanostack.recipe.dependence import dependence_chart  # noqa: PLC0415

        return dependence_chart(self)

    @cached_property
    def lr_found(self) -> dict:
        """fastai's learning-rate range test on a fresh copy (see training.lr_find)."""
        from nanostack.recipe.training import lr_find  # noqa: PLC0415

        return lr_find(self)

    @property
    def suggested_lr(self) -> float:
        """lr_at_min/10 (fastai's "minimum/10"), or the run's lr when the range test found no minimum."""
        at_min = self.lr_found["lr_at_min"]
        return at_min / 10 if at_min else self.learning_rate

    @cached_property
    def short_training(self) -> dict:
        """The same init trained on real inputs and on zeroed inputs (input-dependence), at the range test's
        suggested lr: the check is about the data, so an lr too high or too low must not decide it."""
        from nanostack.recipe.training import train_with_and_without_inputs  # noqa: PLC0415

        t = self.limits("input-dependence")
        return train_with_and_without_inputs(self, self.suggested_lr, int(t["steps"]), int(t["max_steps"]),
                                             t["margin"])

    @cached_property
    def update_ratios(self) -> list:
        """Update ratios of a short run at the run's lr (update-ratio, when the run has no probes)."""
        from nanostack.recipe.training import update_ratio_run  # noqa: PLC0415

        return update_ratio_run(self, int(self.limits("update-ratio")["steps"]))

    # ---- a run's files ------------------------------------------------------------------------------------
    def metrics(self) -> list:
        return self.run.metrics() if self.run is not None else []

    def probes(self) -> list:
        return read_probes(self.run.path) if self.run is not None else []

    @cached_property
    def heldout_scores(self):
        """Per-token losses of the run's best checkpoint on the first held-out rows, or None without a run or
        a checkpoint: {"rows": [{"example", "targets", "nll"}], "token_std", "mean"}."""
        if self.run is None or (self.run.checkpoint("best") is None and self.run.checkpoint("latest") is None):
            return None
        from nanostack.loss import token_nll  # noqa: PLC0415

        model = self.run.load_model("best", self.device)
        examples = self.dataset.examples("val", self.block_size)
        rows, every = [], []
        for batch_rows, x, y in self.dataset.batches("val", self.block_size):
            nll = token_nll(model, x.to(self.device), y.to(self.device)).cpu()
            for r, i in enumerate(batch_rows):
                keep = y[r] != -1
                rows.append({"example": examples[i], "targets": y[r][keep].tolist(), "nll": nll[r][keep].tolist()})
                every.append(nll[r][keep])
            if len(rows) >= SCORED_ROWS:
                break
        tokens = torch.cat(every)
        return {"rows": rows, "token_std": tokens.std().item(), "mean": tokens.mean().item()}


def set_lr(optimizer, lr: float) -> None:
    """Every param group's lr, as the trainer sets it: lr times the group's lr_scale (Muon's groups peak at their
    own rate; AdamW's scale is 1)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def without_dropout(model):
    """The model with every dropout probability set to 0 (modules and the attention's own rate)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "dropout", None), float):
            m.dropout = 0.0
    return model


def compute_baselines(dataset, block_size: int) -> dict:
    """{"ln_v", "unigram_ce", "bigram_ce"}: the held-out cross-entropy (nats per token) of the unigram and
    bigram distributions counted on the training split (add-one unigram; the bigram mixed 0.9 / 0.1 with the
    unigram, so that a pair never seen in training keeps a probability)."""
    V = dataset.tokenizer.vocab_size
    tx, ty = pairs(dataset, "train", block_size)
    vx, vy = pairs(dataset, "val", block_size)
    unigram = (np.bincount(ty, minlength=V) + 1.0) / (len(ty) + V)
    unigram_ce = float(-np.log(unigram[vy]).mean())
    keys = tx.astype(np.int64) * V + ty
    found, counts = np.unique(keys, return_counts=True)
    row_totals = np.bincount(tx, minlength=V).astype(np.float64)
    vkeys = vx.astype(np.int64) * V + vy
    where = np.clip(np.searchsorted(found, vkeys), 0, len(found) - 1)
    pair_counts = np.where(found[where] == vkeys, counts[where], 0)
    totals = row_totals[vx]
    conditional = np.divide(pair_counts, totals, out=np.zeros(len(vx)), where=totals > 0)
    p = np.where(totals > 0, BIGRAM_WEIGHT * conditional + (1 - BIGRAM_WEIGHT) * unigram[vy], unigram[vy])
    return {"ln_v": math.log(V), "unigram_ce": unigram_ce, "bigram_ce": float(-np.log(p).mean())}


def pairs(dataset, split: str, block_size: int):
    """(inputs, targets) as flat int arrays: every (x, y) position of the split's exact pass whose target is
    not padding, up to BASELINE_TOKENS of them."""
    xs, ys, n = [], [], 0
    for _, x, y in dataset.batches(split, block_size):
        keep = y != -1
        xs.append(x[keep].numpy())
        ys.append(y[keep].numpy())
        n += int(keep.sum())
        if n >= BASELINE_TOKENS:
            break
    return np.concatenate(xs), np.concatenate(ys)


def read_probes(run_dir) -> list:
    """Every complete record of RUN_DIR/probes.jsonl (a line cut short by a crash is skipped)."""
    path = run_dir / "probes.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "kind" in record:
            records.append(record)
    return records
