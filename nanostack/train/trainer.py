"""The training loop: data -> model -> optimizer, with evaluation, checkpoints and exact resume.

The data is any Dataset (a token stream, or one example per line or paragraph); the model is the
GPT or a makemore model, on torch or, with --backend numpy, on nanostack.grad. The loop reads top
to bottom; what differs between engines and devices is behind backends.Engine, what a checkpoint
holds (random streams included) is checkpoint.py's, and the run folder's files are nanostack.run's.
Under torchrun every rank runs this same code (distributed.py says who may write and log, sampler.py
deals the batches out, parallel.py spreads the model); with one process none of that does anything.
"""
import math
import signal
import sys
import time
from contextlib import closing, nullcontext
from dataclasses import replace

import torch
from tqdm import tqdm

from nanostack.data import open_dataset
from nanostack.errors import Interrupted, UserError
from nanostack.loss import split_loss
from nanostack.models import ModelConfig
from nanostack.models.config import MODERN_DEFAULTS
from nanostack.run import RunFolder, TrainConfig
from nanostack.run.config import make_config
from nanostack.train.backends import Engine
from nanostack.train.checkpoint import RandomStreams, restore_latest, save_best, save_latest
from nanostack.train.distributed import Ranks, everywhere
from nanostack.train.init_from import load_base_weights, open_init_dataset, settle_init
from nanostack.train.mfu import Utilisation
from nanostack.train.sampler import GlobalSampler
from nanostack.train.ema import WeightAverage
from nanostack.train.probes import make_probe
from nanostack.train.start import settle_config
from nanostack.train.schedule import get_lr

LOG_EVERY_S = 5.0  # without a terminal, a progress line at most this often (at log_interval steps)


def model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, block_size=cfg.block_size, kind=cfg.model, n_layer=cfg.n_layer,
                       n_head=cfg.n_head, n_embd=cfg.n_embd, n_embd2=cfg.n_embd2, dropout=cfg.dropout, bias=cfg.bias,
                       batchnorm=cfg.batchnorm, context=cfg.context,
                       **{name: getattr(cfg, name) for name in MODERN_DEFAULTS})


def train(out, cfg_overrides=None, preset=None, resume=False, force=False, log=tqdm.write) -> dict:
    """Train the run in folder `out`; return a summary (steps, losses, speed).

    cfg_overrides are the fields set on the command line; preset is a preset name or TOML file.
    """
    if not resume:
        make_config(preset, cfg_overrides or {})  # bad settings fail before the folder is touched
    with Ranks.join() as ranks:  # torchrun's ranks, or this process alone
        return train_as(ranks, ranks.view(RunFolder(out)), cfg_overrides or {}, preset, resume, force, ranks.log(log))


def train_as(ranks, run, cfg_overrides, preset, resume, force, log) -> dict:
    """train() on one rank: rank 0 (or the only process) holds the lock, checks, writes and logs;
    the other ranks see the folder read-only (run) and log nothing (log)."""
    with run.lock():
        cfg = ranks.from_main(settle_config, run, cfg_overrides, preset, resume, force, ranks.world_size)
        cfg, data = ranks.main_first(open_training_data, run, cfg, cfg_overrides, resume, log)  # rank 0 fills caches
        cfg = replace(cfg, block_size=data.block_size(cfg.block_size, log))
        engine = Engine(cfg.backend, cfg.device, cfg.dtype, cfg.compile, ranks, cfg.parallel)
        for note in engine.notes:
            log(f"note: {note}")
        model = engine.build_model(model_config(cfg, data.tokenizer.vocab_size), cfg.seed)
        if not resume:
            run.clear()  # a new run, or --force: the old run's files go, a user's own files stay
        if getattr(model, "learns_by_counting", False):  # bigram_counts: fitted in one pass, no optimizer
            return fit_by_counting(run, cfg, data, model, engine, log)
        optimizer = engine.optimizer(model, cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2), cfg.optimizer,
                                     cfg.muon_lr, cfg.muon_momentum)
        if cfg.init and not (resume and run.checkpoint("latest") is not None):
            load_base_weights(model, cfg, log)  # fine-tuning starts from the base run (before --ema copies it)
        if cfg.ema:  # evaluations and best/ use the average; latest/ holds both
            optimizer = WeightAverage(optimizer, model, cfg.ema)
        streams = RandomStreams(cfg.seed, engine)
        step, best_val = 0, math.inf
        if resume and run.checkpoint("latest") is not None:
            step, best_val = restore_latest(run, model, optimizer, engine, streams, log)
            run.truncate_metrics(step)
            log(f"resuming {run.path} from step {step}")
        elif resume:
            run.truncate_metrics(0)
            log(f"{run.path} stopped before its first checkpoint: starting it again from step 0")
        if step >= cfg.max_iters:
            log(f"{run.path} is already at step {step} of max_iters {cfg.max_iters}: nothing to train "
                "(raise --max-iters to continue it)")
            return summary(run, step, None, best_val, model, [], time.time())
        run.write_tokenizer(data.tokenizer)
        run.write_config(cfg, model.config, data)
        log(f"model: {describe_size(model.num_params())} parameters, vocab {model.config.vocab_size}, "
            f"block {cfg.block_size}, device {engine.device}, backend {cfg.backend}"
            + (f", {ranks.world_size} ranks ({cfg.parallel})" if ranks.many else ""))
        return train_loop(run, cfg, data, model, optimizer, engine, streams, step, best_val, log)


def open_training_data(run, cfg, overrides, resume, log):
    """(cfg, the Dataset to train on); fine-tuning (--init) settles the shape and tokenizer here."""
    if resume:  # the data it trained on, with its own tokenizer, so its token ids mean what they meant
        data = run.dataset(log)
    elif cfg.init:  # fine-tuning: the base run's shape and tokenizer (with the chat tokens for chat data)
        cfg, tokenizer = settle_init(cfg, overrides, run.path)
        data = open_init_dataset(cfg, tokenizer, log)
    else:
        data = open_dataset(cfg.data, cfg.tokenizer, cfg.examples, cfg.seed, log=log)
    if data.skipped:
        shown = ", ".join(data.skipped[:3]) + (" ..." if len(data.skipped) > 3 else "")
        log(f"note: {len(data.skipped)} file(s) of {cfg.data} left out as binary, non-UTF-8 or unreadable: {shown}")
    return cfg, data


def train_loop(run, cfg, data, model, optimizer, engine, streams, step, best_val, log) -> dict:
    train_model = engine.for_training(model)
    ranks = engine.ranks
    sampler = GlobalSampler(data, ranks.rank, ranks.world_size)  # one process's batches, dealt out to the ranks
    micro_steps = cfg.gradient_accumulation_steps // ranks.world_size  # this rank's share of the step's
    eval_model = optimizer.model if cfg.ema else model
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps
    utilisation = None if engine.numpy else Utilisation(model, cfg.block_size, engine.device, ranks.world_size)
    step_times, last_val, t_start, last_line, reached = [], None, time.time(), time.time(), False
    on_terminal = sys.stderr.isatty() and ranks.main  # a bar on a terminal; logs get a line now and then instead
    bar = tqdm(total=cfg.max_iters, initial=step, unit="step", dynamic_ncols=True, disable=not on_terminal)
    # None with --probe-every 0 (no hooks at all), and with several ranks: the probed forward runs the eager
    # model, which would skip the ranks' gradient sync
    probe = None if ranks.many else make_probe(run, cfg, data, model, optimizer, step, log)
    if ranks.many and cfg.probe_every:
        log(f"note: --probe-every is off with {ranks.world_size} ranks (probes.jsonl is written by one process only)")
    with StopFlag() as stop, run.open_metrics() as metrics, bar, closing(probe) if probe else nullcontext():
        while step < cfg.max_iters:
            t0 = time.perf_counter()
            lr = get_lr(step, cfg.learning_rate, cfg.min_lr, cfg.warmup_iters, cfg.lr_decay_iters)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)  # Muon's groups peak at their own rate
            # forward and backward, over this rank's micro-batches; gradients are reduced on the last
            loss_sum, learned = 0.0, 0
            probing = probe is not None and probe.before_forward(step)
            for micro in range(micro_steps):
                x, y = sampler.batch("train", cfg.batch_size, cfg.block_size, streams.data, engine.device)
                if data.masks_targets and not bool((y >= 0).any()):  # nothing to learn (all masked): no NaN loss
                    continue
                with engine.gradient_sync(last=micro == micro_steps - 1):
                    with engine.autocast:
                        _, loss = (model if probing else train_model)(x, y)  # hooks see the eager model
                    (loss / micro_steps).backward()
                loss_sum = engine.add_loss(loss_sum, loss)  # stays on the device
                learned += 1
            logging = (step + 1) % cfg.log_interval == 0 and learned > 0
            grad_norm = None
            if learned and (cfg.grad_clip > 0 or logging):  # clipping off: the norm is measured on logged steps only
                grad_norm = engine.clip_grad_norm(model, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            # the mean over the micro-batches that learned (all of them on every rank but for chat data, which
            # trains in one process): gradient_accumulation_steps when none was skipped
            loss_mean = ranks.sum(loss_sum) / (max(learned, 1) * ranks.world_size)
            loss_value, grad_norm = engine.read_numbers(loss_mean, grad_norm)  # the step's one host sync
            if not (math.isfinite(loss_value) and (grad_norm is None or math.isfinite(grad_norm))):
                raise everywhere(diverged(run, loss_value, grad_norm, step + 1))
            if learned:  # a step without a target moves no weight
                if probing:
                    probe.before_step()
                optimizer.step()
                if probing:
                    probe.after_step(step)
            optimizer.zero_grad(set_to_none=True)
            step += 1
            dt = time.perf_counter() - t0
            step_times.append(dt)
            mfu = utilisation.mfu(tokens_per_step / dt) if utilisation else None
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_step / dt:,.0f}",
                            **({"mfu": f"{100 * mfu:.1f}%"} if mfu is not None else {}), refresh=False)
            if logging:
                write_metric(metrics, {"kind": "train", "step": step, "loss": loss_value, "lr": lr,
                                       "grad_norm": grad_norm, "ms_per_step": 1000 * dt,
                                       "tokens_per_s": tokens_per_step / dt,
                                       **({"mfu": mfu} if mfu is not None else {})})
                if not on_terminal and time.time() - last_line >= LOG_EVERY_S:
                    log(f"step {step}/{cfg.max_iters}: loss {loss_value:.4f}, lr {lr:.2e}, "
                        f"{1000 * median(step_times[-cfg.log_interval:]):.1f} ms/step")
                    last_line = time.time()
            if step % cfg.eval_interval == 0 or step == cfg.max_iters:
                losses = estimate_loss(eval_model, data, cfg, engine)
                if cfg.stop_at_val:  # decided on the exact figure, never on the noisy estimate
                    losses["val_full"] = split_loss(eval_model, data, "val", cfg.block_size, engine.device)
                    reached = losses["val_full"] <= cfg.stop_at_val
                last_val = losses["val"]
                write_metric(metrics, {"kind": "eval", "step": step, "train_loss": losses["train"],
                                       "val_loss": losses["val"],
                                       **({"val_loss_full": losses["val_full"]} if cfg.stop_at_val else {})})
                if probe is not None:
                    probe.after_eval(step, final=step == cfg.max_iters)
                log(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, "
                    f"lr {lr:.2e}, {1000 * median(step_times[-cfg.eval_interval:]):.1f} ms/step")
                last_line = time.time()
                if losses["val"] < best_val:
                    best_val = losses["val"]
                    save_best(run, eval_model, engine, step, best_val)
            stopping = ranks.agree(stop.requested)  # a Ctrl-C seen by any rank stops all of them at this step
            if step % cfg.ckpt_interval == 0 or step == cfg.max_iters or stopping or reached:
                save_latest(run, model, optimizer, engine, streams, step, best_val)
            if reached:
                log(f"step {step}: val loss over the whole split {losses['val_full']:.4f} reached "
                    f"--stop-at-val {cfg.stop_at_val}: stopping")
                break
            if stopping:
                raise Interrupted(step, run.path)
    return {**summary(run, step, last_val, best_val, model, step_times, t_start), "reached_val": reached}


def estimate_loss(model, data, cfg, engine) -> dict:
    """Mean loss over eval_iters batches of each split. The batches are drawn from their own
    generator, the same ones at every evaluation, so evaluating never moves the training streams.
    With several ranks, batch i is rank i mod W's; the ranks add their losses into one vector (the
    others' places are zeros, so the sum is exact) and take the same mean as one process."""
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    ranks = engine.ranks
    rounds = -(-cfg.eval_iters // ranks.world_size) * ranks.world_size if engine.parallel.lockstep else cfg.eval_iters
    model.eval()
    out = {}
    for split in ("train", "val"):
        losses, counted = torch.zeros(cfg.eval_iters), torch.zeros(cfg.eval_iters)
        for i in range(rounds):
            mine = i % ranks.world_size == ranks.rank
            if i < cfg.eval_iters:
                x, y = data.batch(split, cfg.batch_size, cfg.block_size, generator, engine.device if mine else "cpu")
            if mine and data.masks_targets and i < cfg.eval_iters and not bool((y >= 0).any()):
                continue  # an all-masked batch has no loss to estimate
            if mine:  # past eval_iters: a forward only to keep in step with the other ranks (FSDP2 gathers)
                with engine.evaluating():
                    _, loss = model(x.to(engine.device), y.to(engine.device))
                if i < cfg.eval_iters:
                    losses[i], counted[i] = loss.item(), 1
        out[split] = (ranks.sum(losses).sum() / ranks.sum(counted).sum()).item()  # 0 / 0: NaN, nothing to estimate
    model.train()
    return out


def fit_by_counting(run, cfg, data, model, engine, log) -> dict:
    """Models fitted by counting (bigram_counts): one exact pass over the training split, no optimizer."""
    t0 = time.time()
    pairs = [(x, y) for _, x, y in data.batches("train", cfg.block_size)]
    model.fit(torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs]))
    losses = estimate_loss(model, data, cfg, engine)
    run.write_tokenizer(data.tokenizer)
    run.write_config(cfg, model.config, data)
    run.truncate_metrics(0)
    with run.open_metrics() as metrics:
        write_metric(metrics, {"kind": "eval", "step": 1, "train_loss": losses["train"], "val_loss": losses["val"]})
    save_best(run, model, engine, 1, losses["val"])
    run.save_checkpoint("latest", model, {"step": 1, "val_loss": losses["val"], "best_val_loss": losses["val"]})
    log(f"counted the training split: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    return summary(run, 1, losses["val"], losses["val"], model, [], t0)


def summary(run, step, val_loss, best_val, model, step_times, t_start) -> dict:
    return {"step": step, "val_loss": val_loss, "best_val_loss": best_val if math.isfinite(best_val) else None,
            "params": model.num_params(), "ms_per_step_median": 1000 * median(step_times) if step_times else None,
            "elapsed_s": time.time() - t_start, "run_dir": str(run.path)}


def diverged(run, loss_value, grad_norm, step) -> UserError:
    done = run.checkpoint("latest")
    kept = f"the last good checkpoint (step {run.read_state(done)['step']}) is kept in {done}" \
        if done else "no checkpoint had been written yet"
    what = f"the loss became {loss_value}" if not math.isfinite(loss_value) else f"the gradient norm became {grad_norm}"
    return UserError(f"training diverged: {what} at step {step}; {kept}",
                     "lower --learning-rate or raise --warmup-iters, then start again")


def describe_size(n: int) -> str:
    """A parameter count as people say it: 0.81M, 27.6K, 729."""
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n / 1e3:.1f}K" if n >= 1000 else str(n)


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def write_metric(file, record: dict) -> None:
    import json  # noqa: PLC0415

    file.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")
    file.flush()


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


__all__ = ["Interrupted", "make_config", "train"]
