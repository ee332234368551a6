"""The training loop: data -> model -> AdamW, with evaluation, checkpoints and exact resume.

The data is a stream of tokens (shards) or one example per line (examples); the model is the GPT
or a makemore model, on torch or, with --backend numpy, on nanostack.grad (backends.py holds the
differences). Every random draw comes from two streams, both saved in each checkpoint: the data
generator (batch offsets) and the dropout generator (torch's global one, or numpy's). Restoring
them with the weights and optimizer state makes a resumed run take exactly the steps an
uninterrupted one would.
"""
import json
import math
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm import tqdm

from nanostack.cpu import keep_freed_memory
from nanostack.data import check_split_size, open_training_data
from nanostack.errors import UserError
from nanostack.io import read_json, write_json
from nanostack.models import ModelConfig
from nanostack.train.backends import build_model, build_optimizer, clip_grad_norm, dropout_rng_state, no_grad, \
    set_dropout_rng_state
from nanostack.train.checkpoint import (clear_run, find_checkpoint, load_optimizer, load_weights, read_state,
                                        rng_from_json, rng_to_json, save_checkpoint)
from nanostack.train.config import TrainConfig, config_from_dict, make_config
from nanostack.train.schedule import get_lr


class Interrupted(Exception):
    """Ctrl-C stopped training after a checkpoint was saved at `step`."""

    def __init__(self, step: int, run_dir: Path):
        super().__init__(f"interrupted at step {step}")
        self.step, self.run_dir = step, run_dir


def resolve_device(name: str) -> str:
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name} was asked for but CUDA is not available", "use --device cpu or auto")
    if name.startswith("cuda:") and not (name[5:].isdigit() and int(name[5:]) < torch.cuda.device_count()):
        raise UserError(f"there is no device {name}", f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device mps was asked for but MPS is not available", "use --device cpu or auto")
    return name


def autocast_for(device: str, dtype: str):
    device_type = device.split(":")[0]
    if dtype == "auto":
        dtype = "bfloat16" if device_type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if dtype == "bfloat16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return nullcontext()


def model_config(cfg: TrainConfig, vocab_size: int, block_size: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, block_size=block_size, kind=cfg.model, n_layer=cfg.n_layer,
                       n_head=cfg.n_head, n_embd=cfg.n_embd, n_embd2=cfg.n_embd2, dropout=cfg.dropout, bias=cfg.bias,
                       batchnorm=cfg.batchnorm, context=cfg.context)


def open_run_dir(out: Path, cfg_overrides: dict, preset, resume: bool, force: bool) -> TrainConfig:
    """The run's config. Refuses to clobber an existing run unless --force; --resume reads it back."""
    is_run = (out / "config.json").is_file()
    if resume:
        if not is_run:
            raise UserError(f"there is no run to resume at {out}", "drop --resume to start a new run there")
        path = out / "config.json"
        saved = config_from_dict(read_json(path, "run config").get("train", {}), str(path))
        cfg = make_config(preset, cfg_overrides, base=saved)
        if cfg.backend != saved.backend:
            raise UserError(f"{out} was trained with the {saved.backend} backend, not {cfg.backend}",
                            f"resume with --backend {saved.backend}, or start a new run (its weights load on either)")
        return cfg
    cfg = make_config(preset, cfg_overrides)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file", "give a folder for the run")
    if is_run and not force:
        raise UserError(f"run folder {out} already holds a run",
                        "pass --resume to continue it, --force to start over, or choose another --out")
    if out.is_dir() and any(out.iterdir()) and not is_run:
        raise UserError(f"--out {out} is a non-empty folder that is not a nanostack run", "choose another --out")
    return cfg


@torch.no_grad()
def estimate_loss(model, data, cfg, device, autocast) -> dict:
    """Mean loss over eval_iters batches of each split. The batches are drawn from their own
    generator, the same ones at every evaluation, so evaluating never moves the training streams."""
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    model.eval()
    out = {}
    for split in ("train", "val"):
        losses = torch.zeros(cfg.eval_iters)
        for i in range(cfg.eval_iters):
            x, y = data.batch(split, cfg.batch_size, cfg.block_size, generator, device)
            with autocast, no_grad(model):
                _, loss = model(x, y)
            losses[i] = loss.item()
        out[split] = losses.mean().item()
    model.train()
    return out


def train(out, cfg_overrides=None, preset=None, resume=False, force=False, log=tqdm.write) -> dict:
    """Train the run in folder `out`; return a summary (steps, losses, speed).

    cfg_overrides are the fields set on the command line; preset is a preset name or TOML file.
    """
    out = Path(out)
    cfg = open_run_dir(out, cfg_overrides or {}, preset, resume, force)
    data = open_training_data(cfg.data, cfg.tokenizer, cfg.examples, cfg.seed, log=log)
    if data.mode == "stream":
        for split, tokens in (("train", data.train), ("val", data.val)):
            check_split_size(tokens, cfg.block_size, split, cfg.data)
    elif cfg.block_size != data.block_size:  # examples set their own length: the longest one + 1
        log(f"block_size {data.block_size}: the longest example of {cfg.data} and its boundary token")
        cfg = replace(cfg, block_size=data.block_size)
    device = "cpu" if cfg.backend == "numpy" else resolve_device(cfg.device)
    device_type = device.split(":")[0]
    autocast = autocast_for(device, cfg.dtype)
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    if device_type == "cpu":
        keep_freed_memory()
    model = build_model(cfg.backend, model_config(cfg, data.tokenizer.vocab_size, cfg.block_size), cfg.seed, device)
    counting = getattr(model, "learns_by_counting", False)  # bigram_counts: fitted in one pass, no optimizer
    optimizer = None if counting else build_optimizer(model, cfg.learning_rate, cfg.weight_decay,
                                                      (cfg.beta1, cfg.beta2), device_type)
    data_generator = torch.Generator().manual_seed(cfg.seed)
    step, best_val = 0, math.inf

    latest = find_checkpoint(out, "latest") if resume and not counting else None
    if resume:
        saved_hash = read_json(out / "config.json", "run config").get("data_hash")
        if saved_hash != data.data_hash:
            raise UserError(f"the data {cfg.data} has changed since this run started",
                            "resume needs the same data; start a new run to train on the new data")
    if latest is not None:
        state = read_state(latest)
        load_weights(model, latest / "model.safetensors")
        load_optimizer(optimizer, latest / "optimizer.pt")
        step, best_val = state["step"], state["best_val_loss"]
        data_generator.set_state(rng_from_json(state["rng"]["data"]))
        torch.set_rng_state(rng_from_json(state["rng"]["torch"]))
        set_dropout_rng_state(model, state["rng"].get("numpy"))
        if device_type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(rng_from_json(state["rng"]["cuda"]))
        truncate_metrics(out / "metrics.jsonl", step)
        log(f"resuming {out} from step {step}")
    elif resume:
        truncate_metrics(out / "metrics.jsonl", 0)
        log(f"no checkpoint in {out} yet: starting it from step 0")
    else:
        out.mkdir(parents=True, exist_ok=True)
        clear_run(out)  # only reached with --force on an existing run, or for a new/empty folder
    data.tokenizer.save(out / "tokenizer.json")
    write_json(out / "config.json", {"train": asdict(cfg), "model": asdict(model.config), "data_mode": data.mode,
                                     "data_hash": data.data_hash, **data.describe()})
    if counting:
        return fit_by_counting(out, model, data, cfg, device, autocast, log)

    n_params = model.num_params()
    log(f"model: {n_params / 1e6:.2f}M parameters, vocab {model.config.vocab_size}, device {device}, "
        f"backend {cfg.backend}")
    train_model = torch.compile(model) if cfg.compile else model

    def checkpoint_state():
        rng = {"data": rng_to_json(data_generator.get_state()), "torch": rng_to_json(torch.get_rng_state())}
        if device_type == "cuda":
            rng["cuda"] = rng_to_json(torch.cuda.get_rng_state())
        if dropout_rng_state(model) is not None:
            rng["numpy"] = dropout_rng_state(model)
        return {"step": step, "best_val_loss": best_val, "rng": rng}

    if step >= cfg.max_iters:
        log(f"{out} is already at step {step} of max_iters {cfg.max_iters}: nothing to train "
            "(raise --max-iters to continue it)")
    stop = StopFlag()
    metrics = open(out / "metrics.jsonl", "a", encoding="utf-8")
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps
    step_times, last_val, t_start = [], None, time.time()
    # a bar on a terminal only; logs get the evaluation lines (tqdm's disable=None misjudges some terminals)
    bar = tqdm(total=cfg.max_iters, initial=step, unit="step", dynamic_ncols=True, disable=not sys.stderr.isatty())
    try:
        with stop:
            while step < cfg.max_iters:
                t0 = time.perf_counter()
                lr = get_lr(step, cfg.learning_rate, cfg.min_lr, cfg.warmup_iters, cfg.lr_decay_iters)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_sum = 0.0
                for _ in range(cfg.gradient_accumulation_steps):
                    x, y = data.batch("train", cfg.batch_size, cfg.block_size, data_generator, device)
                    with autocast:
                        _, loss = train_model(x, y)
                    (loss / cfg.gradient_accumulation_steps).backward()
                    loss_sum += loss.item()
                loss_value = loss_sum / cfg.gradient_accumulation_steps
                grad_norm = clip_grad_norm(model, cfg.grad_clip) if cfg.grad_clip > 0 else 0.0
                if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
                    done = find_checkpoint(out, "latest")
                    kept = f"the last good checkpoint (step {read_state(done)['step']}) is kept in {done}" \
                        if done else "no checkpoint had been written yet"
                    raise UserError(f"training diverged: the loss became {loss_value} at step {step + 1}; {kept}",
                                    "lower --learning-rate or raise --warmup-iters, then start again")
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                dt = time.perf_counter() - t0
                step_times.append(dt)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_step / dt:,.0f}",
                                refresh=False)
                if step % cfg.log_interval == 0:
                    write_metric(metrics, {"kind": "train", "step": step, "loss": loss_value, "lr": lr,
                                           "grad_norm": grad_norm, "ms_per_step": 1000 * dt,
                                           "tokens_per_s": tokens_per_step / dt})
                if step % cfg.eval_interval == 0 or step == cfg.max_iters:
                    losses = estimate_loss(model, data, cfg, device, autocast)
                    last_val = losses["val"]
                    write_metric(metrics, {"kind": "eval", "step": step, "train_loss": losses["train"],
                                           "val_loss": losses["val"]})
                    log(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, "
                              f"lr {lr:.2e}, {1000 * median(step_times[-cfg.eval_interval:]):.1f} ms/step")
                    if losses["val"] < best_val:
                        best_val = losses["val"]
                        save_checkpoint(out, "best", model, {"step": step, "val_loss": best_val})
                if step % cfg.ckpt_interval == 0 or step == cfg.max_iters or stop.requested:
                    save_checkpoint(out, "latest", model, checkpoint_state(), optimizer)
                if stop.requested:
                    raise Interrupted(step, out)
    finally:
        bar.close()
        metrics.close()
    return {"step": step, "val_loss": last_val, "best_val_loss": best_val, "params": n_params,
            "ms_per_step_median": 1000 * median(step_times) if step_times else None,
            "elapsed_s": time.time() - t_start, "run_dir": str(out)}


def fit_by_counting(out: Path, model, data, cfg, device, autocast, log) -> dict:
    """Models fitted by counting (bigram_counts): one pass over the training split, no optimizer."""
    t0 = time.time()
    if data.mode == "lines":
        x, y = data.tensors("train")
    else:
        x, y = (torch.from_numpy(data.train[s].astype("int64"))[None] for s in (slice(None, -1), slice(1, None)))
    model.fit(x, y)
    losses = estimate_loss(model, data, cfg, device, autocast)
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as metrics:
        write_metric(metrics, {"kind": "eval", "step": 1, "train_loss": losses["train"], "val_loss": losses["val"]})
    for name in ("best", "latest"):
        save_checkpoint(out, name, model, {"step": 1, "val_loss": losses["val"], "best_val_loss": losses["val"]})
    log(f"counted the training split: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    return {"step": 1, "val_loss": losses["val"], "best_val_loss": losses["val"], "params": 0,
            "ms_per_step_median": None, "elapsed_s": time.time() - t0, "run_dir": str(out)}


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def write_metric(file, record: dict) -> None:
    file.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")
    file.flush()


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after `step`: a resumed run logs those steps again."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
            if _step_of(line) is not None and _step_of(line) <= step]
    path.write_text("".join(kept), encoding="utf-8")


def _step_of(line: str):
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None  # a line cut short by a crash


class StopFlag:
    """While active, the first Ctrl-C asks the loop to stop after the current step (and save);
    a second one stops at once."""

    requested = False

    def __enter__(self):
        self._previous = None
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not in the main thread: leave Ctrl-C alone
            pass
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
