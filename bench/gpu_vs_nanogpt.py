"""Benchmark: nanoGPT and nanostack side by side on one GPU (plan: shared/specs/gpu-scale.md, section 4).

    python bench/gpu_vs_nanogpt.py --nanogpt DIR [--stages env,data,parity,tput,char] [--out DIR] [--smoke]

DIR is a nanoGPT checkout (commit 3adf61e), kept outside the repository's history, e.g.
`git clone https://github.com/karpathy/nanoGPT .bench/nanogpt` (.bench/ is git-ignored). Nothing is
downloaded: nanoGPT is copied to OUT/nanogpt and its data is written there.

Stages (each prints JSON lines as it goes; a table and the targets come at the end):
  env     versions, device, nvidia-smi clocks, temperature and power (read-only); peak_meas, the median
          of 10 timed 8192^3 bf16 matmuls after 3 warm-ups
  data    2^26 random tokens below 50257 as data/openwebtext/{train,val}.bin; tiny shakespeare as
          data/shakespeare_char/input.txt, then nanoGPT's own prepare.py
  parity  nanoGPT's GPT and nanostack's gpt2 (exact GELU, as nanoGPT) with the same weights: logits
          within 1e-5 in fp32 with TF32 off, else tput is skipped
  tput    GPT-2 124M, ~0.5M tokens per step, 25 steps; one subprocess per run with its own inductor
          cache, in the order A B A B: tok/s, step p10/p50/p90 (from step 5), mfu_989 (854.65M FLOPs per
          token against 989 TFLOP/s), mfu_meas (against peak_meas), peak memory, first-step seconds
          (compile included). nanoGPT runs train.py config/train_gpt2.py at batch 12 x 40 and 32 x 16
          (the better counts); nanostack its own micro-batch (--micro-batch, default 32) with
          accumulation to 524,288 tokens
  char    shakespeare-char to val 1.4697: nanoGPT's config/train_shakespeare_char.py unchanged, timed from
          launch to exit; nanostack with seeds 0, 1, 2, timed from launch to its first evaluation at or
          below 1.4697 (the shakespeare_char_fast preset and --stop-at-val where this nanostack has
          them, else the shakespeare_char preset, stopped once an evaluation reaches the target);
          nanoGPT's best checkpoint is re-scored by nanostack's evaluator (import nanogpt, eval --data)
  ablate  (optional) 15 nanostack steps per variant, one change each: compile off; SDPA flash, cuDNN,
          efficient; fused AdamW off; fp32 cross-entropy (no chunking); micro-batch 16, 32, 64

Pass: tok/s ratio >= 1.3; mfu_989 >= 0.50; median T_nanostack / T_nanoGPT <= 0.333 with every seed at
the target. Same torch for both, no extra inductor flags, equal FLOPs per token (vocabulary 50304),
compile time counted in char. --smoke runs every stage on the CPU at toy sizes to check this harness
(its figures mean nothing).
"""
import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOPS_124M = 854_654_976  # per token, spec section 2 (6 * 123,568,128 + 12 * 12 * 768 * 1024)
PEAK = 989e12
TARGET_VAL = 1.4697
TOKENS_PER_STEP = 524_288


def say(record: dict) -> dict:
    print(json.dumps(record), flush=True)
    return record


# ---- env ----------------------------------------------------------------------------------------------
def gpu_state() -> dict:
    """nvidia-smi's read-only view of clocks, temperature and power (nothing is set)."""
    fields = "clocks.sm,clocks.mem,temperature.gpu,power.draw"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return {}
    values = out[0].split(", ") if out else []
    return dict(zip(fields.split(","), values))


def stage_env(args) -> dict:
    import torch

    env = {"stage": "env", "python": sys.version.split()[0], "torch": torch.__version__,
           "nanostack": git_rev(REPO), "nanogpt": git_rev(Path(args.nanogpt)) if args.nanogpt else None,
           "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        env.update(device=torch.cuda.get_device_name(), gpu=gpu_state(), peak_meas=matmul_peak())
    return say(env)


def matmul_peak(n: int = 8192) -> float:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    times = []
    for i in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end) / 1000)
    return 2 * n ** 3 / statistics.median(times)


def git_rev(path: Path):
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except OSError:
        return None


# ---- data ---------------------------------------------------------------------------------------------
def stage_data(args) -> dict:
    import numpy as np

    nano = args.out / "nanogpt"
    if not (Path(args.nanogpt) / "train.py").is_file():
        raise SystemExit(f"--nanogpt {args.nanogpt} is not a nanoGPT checkout (no train.py)")
    shutil.rmtree(nano, ignore_errors=True)
    shutil.copytree(args.nanogpt, nano, ignore=shutil.ignore_patterns(".git"))
    owt = nano / "data" / "openwebtext"
    rng = np.random.default_rng(0)
    n = 2 ** 16 if args.smoke else 2 ** 26
    for split, size in (("train", n), ("val", n // 16)):
        rng.integers(0, 50257, size, dtype=np.uint16).tofile(owt / f"{split}.bin")
    char = nano / "data" / "shakespeare_char"
    shutil.copy(args.shakespeare, char / "input.txt")
    done = subprocess.run([sys.executable, "prepare.py"], cwd=char, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"nanoGPT's prepare.py failed:\n{done.stderr[-2000:]}")
    return say({"stage": "data", "openwebtext_tokens": n, "shakespeare_char": done.stdout.strip().splitlines()[-1]})


# ---- parity -------------------------------------------------------------------------------------------
def stage_parity(args) -> dict:
    import torch

    sys.path.insert(0, str(args.out / "nanogpt"))
    import model as nanogpt_model  # nanoGPT's model.py

    from nanostack.models import ModelConfig, build

    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    shape = dict(n_layer=2, n_head=2, n_embd=64, block_size=64) if args.smoke else \
        dict(n_layer=12, n_head=12, n_embd=768, block_size=1024)
    torch.manual_seed(0)
    theirs = nanogpt_model.GPT(nanogpt_model.GPTConfig(**shape, vocab_size=50304, bias=False, dropout=0.0))
    ours = build(ModelConfig(vocab_size=50304, **shape, bias=False, dropout=0.0, activation="gelu"))
    missing, unexpected = ours.load_state_dict(theirs.state_dict(), strict=False)
    theirs.to(device).eval()
    ours.to(device).eval()
    generator = torch.Generator(device).manual_seed(1)
    idx = torch.randint(50257, (2, shape["block_size"]), device=device, generator=generator)
    with torch.no_grad():
        difference = (theirs(idx, idx)[0] - ours(idx, idx)[0]).abs().max().item()
    sys.path.remove(str(args.out / "nanogpt"))
    return say({"stage": "parity", "device": device, "max_logit_difference": difference, "ok": difference <= 1e-5,
                "unloaded": sorted(set(missing) | set(unexpected))})


# ---- tput ---------------------------------------------------------------------------------------------
def stage_tput(args, env: dict) -> list:
    results = []
    nano_batches = [(4, 2)] if args.smoke else [(12, 40), (32, 16)]
    for _ in range(args.repeats):  # A B A B
        for batch, accumulation in nano_batches:
            results.append(say(measure(args, env, ["--worker", "nanogpt", "--batch", str(batch),
                                                   "--accumulation", str(accumulation)])))
        results.append(say(measure(args, env, ["--worker", "nanostack", "--micro-batch", str(args.micro_batch)])))
    return results


def stage_ablate(args, env: dict) -> list:
    variants = [["--no-compile"], ["--sdpa", "flash"], ["--sdpa", "cudnn"], ["--sdpa", "efficient"], ["--no-fused"],
                ["--fp32-ce"], ["--micro-batch", "16"], ["--micro-batch", "32"], ["--micro-batch", "64"]]
    base = ["--worker", "nanostack", "--steps", "15", "--micro-batch", str(args.micro_batch)]
    return [say({**measure(args, env, base + variant), "variant": " ".join(variant)}) for variant in variants]


def measure(args, env: dict, worker_args: list) -> dict:
    """One run in a subprocess of its own (fresh inductor cache), with the GPU's state around it."""
    with tempfile.TemporaryDirectory() as cache:
        before = gpu_state()
        t0 = time.time()
        done = subprocess.run([sys.executable, "-u", __file__, "--out", str(args.out), *worker_args,
                               *(["--smoke"] if args.smoke else [])],
                              capture_output=True, text=True, env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache})
        wall = time.time() - t0
    found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not found:
        return {"stage": "tput", "run": " ".join(worker_args), "failed": (done.stderr or done.stdout)[-1500:]}
    result = json.loads(found[-1][len("RESULT "):])
    step = result["step_s_p50"]
    tok_s = result["tokens_per_step"] / step
    flops = result.get("flops_per_token", FLOPS_124M)
    return {"stage": "tput", **result, "tok_s": round(tok_s), "mfu_989": round(tok_s * flops / PEAK, 4),
            "mfu_meas": round(tok_s * flops / env["peak_meas"], 4) if env.get("peak_meas") else None,
            "wall_s": round(wall, 1), "gpu_before": before, "gpu_after": gpu_state()}


def percentiles(times: list) -> dict:
    ordered = sorted(times)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"step_s_p10": pick(0.1), "step_s_p50": statistics.median(ordered), "step_s_p90": pick(0.9)}


def worker_nanogpt(args) -> None:
    """nanoGPT's train.py in this process (to read its peak memory), on the copy's random tokens."""
    import runpy

    import torch

    nano = args.out / "nanogpt"
    os.chdir(nano)
    sys.path.insert(0, str(nano))
    steps = 8 if args.smoke else 25
    sys.argv = ["train.py", "config/train_gpt2.py", f"--batch_size={args.batch}",
                f"--gradient_accumulation_steps={args.accumulation}", f"--max_iters={steps}",
                "--eval_interval=1000000000", "--eval_iters=1", "--log_interval=1", "--wandb_log=False",
                f"--out_dir={tempfile.mkdtemp()}"]
    if args.smoke:
        sys.argv += ["--device=cpu", "--compile=False", "--dtype=float32", "--n_layer=2", "--n_head=2",
                     "--n_embd=64", "--block_size=64"]
    lines = []
    real_print = print

    def tee(*values, **kwargs):  # nanoGPT prints its step times; keep them
        lines.append(" ".join(map(str, values)))
        real_print(*values, **kwargs)

    import builtins
    builtins.print = tee
    try:
        runpy.run_path("train.py", run_name="__main__")
    finally:
        builtins.print = real_print
    times = [float(t) / 1000 for n, t in re.findall(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", "\n".join(lines))]
    per_iter = dict(enumerate(times))
    block = 64 if args.smoke else 1024
    result = {"impl": "nanogpt", "batch": args.batch, "accumulation": args.accumulation,
              "tokens_per_step": args.batch * args.accumulation * block, "first_step_s": per_iter.get(0),
              **percentiles([t for i, t in per_iter.items() if i >= 5]),
              "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None}
    real_print("RESULT " + json.dumps(result), flush=True)


def worker_nanostack(args) -> None:
    """nanostack's training loop (trainer.train_loop, as `nanostack train` runs it) on the same random
    tokens, through the Dataset interface's batch()."""
    import numpy as np
    import torch

    from nanostack.data.loader import get_batch
    from nanostack.run import RunFolder
    from nanostack.run.config import make_config
    from nanostack.train.backends import Engine
    from nanostack.train.checkpoint import RandomStreams
    from nanostack.train.mfu import flops_per_token
    from nanostack.train.optimizer import decay_groups
    from nanostack.train.trainer import model_config, train_loop

    class TokenFile:
        def __init__(self, folder: Path):
            self.tokens = {s: np.memmap(folder / f"{s}.bin", dtype=np.uint16, mode="r") for s in ("train", "val")}

        def batch(self, split, batch_size, block_size, generator, device="cpu"):
            return get_batch(self.tokens[split], batch_size, block_size, generator, device)

    smoke = args.smoke
    block = 64 if smoke else 1024
    micro = 4 if smoke else args.micro_batch
    steps = 8 if smoke else args.steps
    accumulation = 2 if smoke else max(1, TOKENS_PER_STEP // (micro * block))
    shape = dict(n_layer=2, n_head=2, n_embd=64) if smoke else dict(n_layer=12, n_head=12, n_embd=768)
    cfg = make_config(None, {**shape, "block_size": block, "bias": False, "dropout": 0.0, "batch_size": micro,
                             "gradient_accumulation_steps": accumulation, "max_iters": steps,
                             "lr_decay_iters": 600000, "warmup_iters": 2000, "learning_rate": 6e-4, "min_lr": 6e-5,
                             "weight_decay": 0.1, "beta2": 0.95, "grad_clip": 1.0, "eval_interval": 10 ** 9,
                             "eval_iters": 1, "log_interval": 1, "ckpt_interval": 10 ** 9,
                             "device": "cpu" if smoke else "cuda", "compile": "false" if args.no_compile or smoke
                             else "true"})
    engine = Engine(cfg.backend, cfg.device, cfg.dtype, cfg.compile)
    if args.fp32_ce:
        engine.loss_only = False
    model = engine.build_model(model_config(cfg, 50304), cfg.seed)
    if args.no_fused:
        optimizer = torch.optim.AdamW(decay_groups(list(model.parameters()), cfg.weight_decay), lr=cfg.learning_rate,
                                      betas=(cfg.beta1, cfg.beta2), foreach=True)
    else:
        optimizer = engine.optimizer(model, cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    with tempfile.TemporaryDirectory() as folder:
        run = RunFolder(Path(folder) / "run")
        run.path.mkdir()
        attention = sdpa_context(args.sdpa)
        with attention:
            train_loop(run, cfg, TokenFile(args.out / "nanogpt" / "data" / "openwebtext"), model, optimizer, engine,
                       RandomStreams(cfg.seed, engine), 0, math.inf, lambda *a: None)
        records = [r for r in run.metrics() if r["kind"] == "train"]
    times = [r["ms_per_step"] / 1000 for r in records]
    result = {"impl": "nanostack", "micro_batch": micro, "accumulation": accumulation,
              "tokens_per_step": micro * accumulation * block, "first_step_s": times[0],
              **percentiles(times[5:] or times), "flops_per_token": flops_per_token(model, block),
              "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None,
              "compile": engine.compile, "chunked_loss": engine.loss_only, "sdpa": args.sdpa or "default"}
    print("RESULT " + json.dumps(result), flush=True)


def sdpa_context(name):
    from contextlib import nullcontext

    if not name:
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
               "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[name]
    return sdpa_kernel([backend])


# ---- char ---------------------------------------------------------------------------------------------
def stage_char(args) -> list:
    results = [say(run_nanogpt_char(args))]
    for seed in (0, 1, 2):
        results.append(say(run_nanostack_char(args, seed)))
    results.append(say(rescore_nanogpt(args, results[0])))
    return results


def target(args) -> float:
    return 4.0 if args.smoke else TARGET_VAL


def stamped(command, cwd, env=None, stop_when=None):
    """Run command; return (lines with the seconds since launch at which each arrived, wall seconds).
    stop_when(line) -> True ends the process there."""
    t0 = time.time()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    lines = []
    for line in proc.stdout:
        lines.append((time.time() - t0, line.rstrip("\n")))
        if stop_when and stop_when(line):
            proc.terminate()
            break
    proc.wait()
    return lines, time.time() - t0, proc.returncode


def run_nanogpt_char(args) -> dict:
    nano = args.out / "nanogpt"
    out_dir = args.out / "nanogpt_char"
    shutil.rmtree(out_dir, ignore_errors=True)
    command = [sys.executable, "-u", "train.py", "config/train_shakespeare_char.py", f"--out_dir={out_dir}"]
    if args.smoke:
        command += ["--device=cpu", "--compile=False", "--max_iters=40", "--lr_decay_iters=40", "--eval_interval=20",
                    "--eval_iters=2", "--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=8"]
    with tempfile.TemporaryDirectory() as cache:
        lines, wall, code = stamped(command, nano, {"TORCHINDUCTOR_CACHE_DIR": cache})
    vals = [(t, float(v)) for t, line in lines for v in re.findall(r"val loss ([\d.]+)", line)]
    reached = [t for t, v in vals if v <= target(args)]
    return {"stage": "char", "impl": "nanogpt", "T_s": round(wall, 1), "exit": code,
            "best_val": min((v for _, v in vals), default=None),
            "first_at_target_s": round(reached[0], 1) if reached else None, "checkpoint": str(out_dir / "ckpt.pt")}


def run_nanostack_char(args, seed: int) -> dict:
    from nanostack.run.config import FIELDS, preset_names

    fast = "stop_at_val" in FIELDS and "shakespeare_char_fast" in preset_names()
    out = args.out / f"nanostack_char_{seed}"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-u", "-m", "nanostack", "train", "--out", str(out), "--data", str(args.shakespeare),
               "--seed", str(seed), "--config", "shakespeare_char_fast" if fast else "shakespeare_char"]
    if fast:
        command += ["--stop-at-val", str(target(args))]
    if args.smoke:
        command += ["--device", "cpu", "--max-iters", "40", "--lr-decay-iters", "40", "--eval-interval", "20",
                    "--eval-iters", "2", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
                    "--batch-size", "8", "--ckpt-interval", "1000"]
    reached = []

    def at_target(line):  # the trainer logs "step N: train loss X, val loss Y, ..." at each evaluation
        values = [float(v) for v in re.findall(r"val loss ([\d.]+)", line)]
        if values and values[0] <= target(args):
            reached.append(True)
        return bool(reached) and not fast  # without --stop-at-val: stop it here
    with tempfile.TemporaryDirectory() as cache:
        lines, wall, code = stamped(command, REPO, {"TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONPATH": str(REPO)},
                                    stop_when=at_target)
    first = next((t for t, line in lines if any(float(v) <= target(args)
                                                for v in re.findall(r"val loss ([\d.]+)", line))), None)
    return {"stage": "char", "impl": "nanostack", "seed": seed, "preset": "shakespeare_char_fast" if fast else
            "shakespeare_char", "eval": "full val split" if fast else "eval_iters random batches",
            "T_s": round(first, 1) if first is not None else None, "reached": first is not None,
            "wall_s": round(wall, 1)}


def rescore_nanogpt(args, nanogpt: dict) -> dict:
    """nanoGPT's best checkpoint, imported and scored on the whole val split by nanostack's evaluator."""
    from nanostack.evaluate import evaluate_run
    from nanostack.interop.nanogpt import import_nanogpt

    checkpoint = Path(nanogpt["checkpoint"])
    if not checkpoint.is_file():
        return {"stage": "char", "rescore": "skipped: nanoGPT wrote no checkpoint"}
    run = args.out / "nanogpt_char_imported"
    shutil.rmtree(run, ignore_errors=True)
    import_nanogpt(checkpoint, run, args.out / "nanogpt" / "data" / "shakespeare_char" / "meta.pkl",
                   log=lambda *a: None)
    result = evaluate_run(run, data=str(args.shakespeare), device="cpu" if args.smoke else "cuda")
    return {"stage": "char", "rescore": "nanoGPT best checkpoint, full val split", "val_nll": round(result["loss"], 4),
            "nanogpt_reported": nanogpt["best_val"]}


# ---- summary ------------------------------------------------------------------------------------------
def summarise(tput: list, char: list) -> None:
    def best(impl):
        runs = [r for r in tput if r.get("impl") == impl and "tok_s" in r]
        return max(runs, key=lambda r: r["tok_s"]) if runs else None

    nano, ours = best("nanogpt"), best("nanostack")
    checks = {}
    if nano and ours:
        print(f"\n{'impl':<10} {'tok/s':>10} {'p50 s':>8} {'mfu_989':>8} {'mfu_meas':>9} {'mem GB':>7}")
        for r in (nano, ours):
            print(f"{r['impl']:<10} {r['tok_s']:>10,} {r['step_s_p50']:>8.3f} {r['mfu_989']:>8.3f} "
                  f"{r['mfu_meas'] if r['mfu_meas'] is not None else float('nan'):>9.3f} "
                  f"{r['peak_memory_gb'] or float('nan'):>7.1f}")
        checks["tok_s_ratio >= 1.3"] = round(ours["tok_s"] / nano["tok_s"], 3)
        checks["mfu_989 >= 0.50"] = ours["mfu_989"]
    nano_char = next((r for r in char if r.get("impl") == "nanogpt"), None)
    ours_char = [r for r in char if r.get("impl") == "nanostack"]
    if nano_char and ours_char:
        times = [r["T_s"] for r in ours_char if r["reached"]]
        if len(times) == len(ours_char):
            checks["char T_ns / T_nano <= 0.333"] = round(statistics.median(times) / nano_char["T_s"], 3)
        else:
            checks["char T_ns / T_nano <= 0.333"] = f"{len(ours_char) - len(times)} seed(s) missed the target"
    limits = {"tok_s_ratio >= 1.3": lambda v: v >= 1.3, "mfu_989 >= 0.50": lambda v: v >= 0.5,
              "char T_ns / T_nano <= 0.333": lambda v: v <= 0.333}
    for name, value in checks.items():
        passed = isinstance(value, (int, float)) and limits[name](value)
        say({"target": name, "value": value, "pass": passed})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", help="a nanoGPT checkout (3adf61e)")
    parser.add_argument("--stages", default="env,data,parity,tput,char")
    parser.add_argument("--out", default=str(REPO / ".bench" / "gpu_vs_nanogpt"), help="scratch folder")
    parser.add_argument("--shakespeare", default=None, help="tinyshakespeare.txt (default: NANOSTACK_DATA_DIR's, "
                                                            "else shared/data's)")
    parser.add_argument("--micro-batch", type=int, default=32, help="nanostack's micro-batch in tput")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of A B in tput")
    parser.add_argument("--smoke", action="store_true", help="CPU, toy sizes: check the harness")
    # worker mode (one measured run, in a subprocess of its own)
    parser.add_argument("--worker", choices=("nanogpt", "nanostack"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--accumulation", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=25, help=argparse.SUPPRESS)
    parser.add_argument("--no-compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-fused", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fp32-ce", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sdpa", choices=("flash", "cudnn", "efficient", "math"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out = Path(args.out).resolve()
    if args.worker:
        (worker_nanogpt if args.worker == "nanogpt" else worker_nanostack)(args)
        return
    stages = args.stages.split(",")
    if not args.nanogpt and set(stages) & {"data", "parity", "tput", "char"}:
        parser.error("--nanogpt DIR is needed for the data, parity, tput and char stages")
    args.shakespeare = Path(args.shakespeare or Path(os.environ.get("NANOSTACK_DATA_DIR", REPO.parent / "shared" /
                                                                     "data")) / "tinyshakespeare.txt").resolve()
    import torch

    if not torch.cuda.is_available() and not args.smoke and set(stages) & {"tput", "char", "ablate"}:
        parser.error("tput, char and ablate need a CUDA GPU (or --smoke, to check the harness on the CPU)")
    args.out.mkdir(parents=True, exist_ok=True)
    env, tput, char = {}, [], []
    if "env" in stages:
        env = stage_env(args)
        (args.out / "env.json").write_text(json.dumps(env))
    elif (args.out / "env.json").is_file():
        env = json.loads((args.out / "env.json").read_text())
    if "data" in stages:
        stage_data(args)
    parity_ok = True
    if "parity" in stages:
        parity_ok = stage_parity(args)["ok"]
    if "tput" in stages:
        tput = stage_tput(args, env) if parity_ok else [say({"stage": "tput", "skipped": "parity failed"})]
    if "char" in stages:
        char = stage_char(args)
    if "ablate" in stages:
        stage_ablate(args, env)
    summarise(tput, char)


if __name__ == "__main__":
    main()
