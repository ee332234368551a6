"""TrainConfig: every setting of a run, its default, its help text and its valid range.

A config is built in three layers: the defaults below, then a TOML preset or file (--config),
then command-line flags. Field names follow nanoGPT's where the two overlap. The presets ship
inside the package (nanostack/configs/*.toml), so an installed nanostack has them too.
"""
import difflib
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from nanostack.errors import UserError
from nanostack.models.config import ACTIVATIONS, GPT2_ACTIVATIONS, MODERN_DEFAULTS
from nanostack.models.config import KINDS as MODEL_KINDS
from nanostack.models.config import numpy_support_problem
from nanostack.tokenizer import TokenizerSpec

PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs"
BACKENDS = ("torch", "numpy")
EXAMPLES_MODES = ("auto", "stream", "lines", "paragraphs", "chat")
DTYPES = ("auto", "float32", "bfloat16", "float64")
PARALLEL_MODES = ("ddp", "fsdp")
SWITCHES = ("auto", "true", "false")  # settings that are on, off, or chosen by the device (auto)
OPTIMIZERS = ("adamw", "muon")


def _f(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # data
    data: str = _f("pystdlib", "corpus: pystdlib, shakespeare, names, a text file, a folder of text files, or a "
                                   "dataset version of `nanostack data` (NAME@TAG or a version id)")
    tokenizer: str = _f("char", "tokenizer: char (one token per character of the data), bpe:VOCAB_SIZE (byte-level "
                                "BPE trained on the train split), gpt2, or a tokenizer .json file")
    examples: str = _f("auto", "stream (one long text, random windows), lines (one example per line, for "
                               "makemore-style models), paragraphs (examples separated by blank lines), chat (a .jsonl "
                               "file of conversations; only the assistant's tokens are learned), or auto: "
                               "lines for names, stream otherwise")
    init: str = _f("", "fine-tune: start from this run folder's best weights and its tokenizer (a trained or an "
                       "imported run; the model's shape comes from it; with --examples chat its tokenizer gains the "
                       "chat special tokens)")
    # model
    model: str = _f("transformer", "transformer (the GPT), bigram, bigram_counts, mlp, rnn, gru, lstm or wavenet")
    n_layer: int = _f(4, "number of transformer blocks")
    n_head: int = _f(4, "attention heads per block (must divide n_embd)")
    n_embd: int = _f(128, "width of the residual stream (transformer) or of the token embeddings (others)")
    n_embd2: int = _f(64, "hidden width of mlp, rnn, gru, lstm and wavenet")
    batchnorm: bool = _f(False, "mlp and wavenet: BatchNorm on the hidden layers")
    context: int = _f(0, "mlp and wavenet: how many tokens back they read (0: all of block_size)")
    block_size: int = _f(0, "context length in tokens (0: 64 for a stream, the longest example + 1 for lines "
                            "and paragraphs)")
    dropout: float = _f(0.0, "dropout probability, 0 to turn off")
    bias: bool = _f(True, "use biases in Linear and LayerNorm layers")
    # transformer, modern options (off: GPT-2's architecture; the cpu_modern preset turns them on)
    rotary: bool = _f(False, "rotary position embeddings on queries and keys instead of learned positions")
    rmsnorm: bool = _f(False, "RMSNorm instead of LayerNorm")
    qk_norm: bool = _f(False, "RMSNorm on each head's queries and keys")
    activation: str = _f("gelu", "the MLP's nonlinearity: gelu (exact), gelu_tanh (GPT-2's) or relu2 (ReLU squared)")
    untied_head: bool = _f(False, "a language-model head of its own, not tied to the token embedding")
    zero_init: bool = _f(False, "start the output projections (and an untied head) at zero")
    # optimisation
    batch_size: int = _f(12, "sequences per micro-batch")
    gradient_accumulation_steps: int = _f(1, "micro-batches per optimizer step")
    learning_rate: float = _f(1e-3, "peak learning rate")
    min_lr: float = _f(1e-4, "learning rate at the end of the cosine decay")
    warmup_iters: int = _f(100, "steps of linear warmup from 0 to learning_rate")
    lr_decay_iters: int = _f(2000, "step at which the cosine decay reaches min_lr")
    max_iters: int = _f(2000, "optimizer steps to train for")
    weight_decay: float = _f(0.1, "AdamW weight decay, applied to weight matrices and embeddings only")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.99, "AdamW beta2")
    grad_clip: float = _f(1.0, "clip the gradient norm to this value, 0 to turn off")
    optimizer: str = _f("adamw", "adamw, or muon: Muon (orthogonalised momentum) for the transformer's hidden "
                                 "matrices and AdamW for the rest")
    muon_lr: float = _f(0.02, "Muon's peak learning rate: it follows learning_rate's warmup and decay, and "
                              "weight_decay shrinks Muon's matrices by lr * weight_decay a step, as AdamW's")
    muon_momentum: float = _f(0.95, "Muon's momentum")
    ema: float = _f(0.0, "keep an exponential moving average of the weights with this decay, e.g. 0.999 (0: off); "
                         "evaluations and best/ use the average, latest/ the live weights (and the average, to resume)")
    # evaluation, logging and checkpoints
    eval_interval: int = _f(250, "estimate train/val loss every this many steps")
    eval_iters: int = _f(20, "batches per loss estimate")
    log_interval: int = _f(10, "append the training loss to metrics.jsonl every this many steps")
    ckpt_interval: int = _f(250, "write the latest checkpoint every this many steps")
    stop_at_val: float = _f(0.0, "stop once the val loss over the whole val split, computed at each evaluation, "
                                  "is at or below this (0: off)")
    probe_every: int = _f(100, "record activation and gradient statistics, histograms and update ratios to "
                               "probes.jsonl on step 0, every this many steps and the last step (0: no probes, "
                               "no hooks)")
    # system
    backend: str = _f("torch", "torch, or numpy: the from-scratch nanostack.grad engine (CPU only, slower; "
                               "its checkpoints load on torch and back)")
    device: str = _f("auto", "auto, cpu, cuda, cuda:N or mps (auto picks cuda, then mps, then cpu)")
    dtype: str = _f("auto", "auto, float32, bfloat16 or float64 (auto: bfloat16 autocast on CUDA, float32 elsewhere; "
                            "float64 weights are for exactness checks)")
    compile: str = _f("auto", "auto, true or false: compile the model with torch.compile (slow to start, faster per "
                              "step; auto: on CUDA only)")
    parallel: str = _f("ddp", "with several processes (torchrun): ddp (every rank holds the whole model) or fsdp "
                              "(FSDP2: weights, gradients and optimizer state sharded across the ranks)")
    seed: int = _f(1337, "seed for initialisation, data order and dropout")

    def validate(self) -> "TrainConfig":
        """Every setting in range and finite, checked before anything is written."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"{f.name} must be a finite number, got {value}", f"set --{_flag(f.name)} to a number")
        positive = ["n_layer", "n_head", "n_embd", "n_embd2", "batch_size", "gradient_accumulation_steps",
                    "max_iters", "eval_interval", "eval_iters", "log_interval", "ckpt_interval", "lr_decay_iters"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be positive, got {getattr(self, name)}", f"set --{_flag(name)} > 0")
        for name in ["learning_rate", "min_lr", "weight_decay", "grad_clip", "warmup_iters", "context", "block_size",
                     "seed", "muon_lr", "stop_at_val", "probe_every"]:
            if getattr(self, name) < 0:
                raise UserError(f"{name} must not be negative, got {getattr(self, name)}", f"set --{_flag(name)} >= 0")
        for name in ["dropout", "beta1", "beta2", "muon_momentum", "ema"]:
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"{name} must be in [0, 1), got {getattr(self, name)}", f"fix --{_flag(name)}")
        if self.model == "transformer" and self.n_embd % self.n_head:
            raise UserError(f"n_embd ({self.n_embd}) is not divisible by n_head ({self.n_head})",
                            "choose n_embd as a multiple of n_head")
        if self.min_lr > self.learning_rate:
            raise UserError(f"min_lr ({self.min_lr}) is above learning_rate ({self.learning_rate})",
                            "set --min-lr at or below --learning-rate")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}", f"use {', '.join(DTYPES)}")
        if self.activation not in ACTIVATIONS:
            raise UserError(f"unknown activation {self.activation!r}", f"use one of: {', '.join(ACTIVATIONS)}")
        if self.compile not in SWITCHES:
            raise UserError(f"bad value {self.compile!r} for compile", "use auto, true or false")
        if self.parallel not in PARALLEL_MODES:
            raise UserError(f"unknown parallel mode {self.parallel!r}", f"use {' or '.join(PARALLEL_MODES)}")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise UserError(f"unknown device {self.device!r}", "use auto, cpu, cuda, cuda:N or mps")
        if self.model not in MODEL_KINDS:
            raise UserError(f"unknown model {self.model!r}", f"use one of: {', '.join(MODEL_KINDS)}")
        if self.examples not in EXAMPLES_MODES:
            raise UserError(f"unknown examples mode {self.examples!r}", f"use {', '.join(EXAMPLES_MODES)}")
        TokenizerSpec.parse(self.tokenizer)
        if self.backend not in BACKENDS:
            raise UserError(f"unknown backend {self.backend!r}", f"use one of: {', '.join(BACKENDS)}")
        self._validate_modern()
        if self.backend == "numpy":
            if self.device not in ("auto", "cpu"):
                raise UserError(f"the numpy backend runs on the CPU, not on {self.device}", "use --device cpu or auto")
            if self.dtype in ("bfloat16", "float64"):
                raise UserError("the numpy backend computes in float32 only", "use --dtype float32 or auto")
            if self.compile == "true":
                raise UserError("--compile is for the torch backend (a preset may turn it on)",
                                "add --compile false, or use --backend torch")
            for name in ("stop_at_val", "ema"):
                if getattr(self, name):
                    raise UserError(f"--{_flag(name)} is for the torch backend", "drop it, or use --backend torch")
            problem = numpy_support_problem(self.model, self.batchnorm)
            if problem:
                raise UserError(problem, "use --backend torch for the other makemore models")
        return self

    def _validate_modern(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise UserError(f"unknown activation {self.activation!r}", f"use one of: {', '.join(ACTIVATIONS)}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}", f"use one of: {', '.join(OPTIMIZERS)}")
        modern = [name for name, off in MODERN_DEFAULTS.items() if getattr(self, name) != off
                  and not (name == "activation" and self.activation in GPT2_ACTIVATIONS)]  # as ModelConfig's
        if self.optimizer == "muon":
            modern.append("optimizer muon")
        if modern and self.model != "transformer":
            raise UserError(f"{', '.join(modern)}: options of the transformer, not of the {self.model}",
                            "drop them, or use --model transformer")
        if modern and self.backend == "numpy":
            raise UserError(numpy_support_problem(self.model, self.batchnorm, modern),
                            "drop those options, or use --backend torch")
        if self.rotary and (self.n_embd // self.n_head) % 2:
            raise UserError(f"rotary embeddings need an even head size, and {self.n_embd} / {self.n_head} heads "
                            f"is {self.n_embd // self.n_head}", "choose n_embd and n_head so n_embd / n_head is even")


def _flag(name: str) -> str:
    return name.replace("_", "-")


TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
FIELDS = {f.name: f for f in fields(TrainConfig)}
SWITCHED = ("compile",)  # the fields that take SWITCHES


def field_help(name: str) -> str:
    return FIELDS[name].metadata["help"]


def coerce(name: str, value, source: str):
    """value converted to the field's type, or a UserError naming the key and where it came from."""
    if name not in FIELDS:
        close = difflib.get_close_matches(name, FIELDS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "see `nanostack train --help` for the keys"
        raise UserError(f"unknown config key {name!r} in {source}", hint)
    kind = type(FIELDS[name].default)
    if name in SWITCHED:  # auto, or a boolean (older runs stored compile as true/false)
        text = str(value).lower()
        if text in SWITCHES or text in ("1", "0"):
            return {"1": "true", "0": "false"}.get(text, text)
        raise UserError(f"bad value {value!r} for {name} in {source}", "it must be auto, true or false")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind is str and isinstance(value, str):
        return value
    else:
        try:
            if isinstance(value, str):
                return kind(value)
        except ValueError:
            pass
    raise UserError(f"bad value {value!r} for {name} in {source}", f"it must be {TYPE_NAMES[kind]}")


def preset_names() -> list:
    """The presets that ship with nanostack (nanostack/configs/*.toml)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_preset(spec: str) -> dict:
    """The key/value pairs of a preset name (configs/NAME.toml) or a TOML file path."""
    path = Path(spec)
    if not path.is_file():
        path = PRESETS_DIR / f"{spec}.toml"
    if not path.is_file():
        raise UserError(f"config {spec} is neither a file nor a preset",
                        f"use a TOML file or one of: {', '.join(preset_names())}")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"config {path} is not valid TOML ({e})", "fix the file") from None
    values.pop("doctor", None)  # the [doctor] table holds thresholds for `nanostack doctor` (nanostack.recipe's)
    return {k: coerce(k, v, str(path)) for k, v in values.items()}


def make_config(preset=None, overrides=None, base=None) -> TrainConfig:
    """Defaults (or `base`) <- preset file <- overrides, validated."""
    values = asdict(base) if base is not None else {}
    if preset:
        values.update(load_preset(preset))
    for k, v in (overrides or {}).items():
        values[k] = coerce(k, v, "the command line")
    return TrainConfig(**values).validate()


def config_from_dict(values: dict, source: str) -> TrainConfig:
    return TrainConfig(**{k: coerce(k, v, source) for k, v in values.items()}).validate()

