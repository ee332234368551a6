"""The checks that train a fresh copy of the model for a few hundred steps at most (`--quick` skips them),
and update-ratio, which reads a run's probes when it has them and trains only when it has not."""
import math
import statistics
from collections import Counter, defaultdict

import torch

from nanostack.recipe.dependence import context_reach
from nanostack.recipe.result import CheckResult, check
from nanostack.recipe.training import losses_of_a_few_steps, overfit_batch


def conditional_entropy(x, y, reach: int) -> float:
    """Nats per target of y given the last `reach` inputs, on this batch itself: the lowest loss a model that
    reads only that much context can reach on it."""
    counts, totals = Counter(), Counter()
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        for i, target in enumerate(row_y):
            if target < 0:
                continue
            context = tuple(row_x[max(0, i - reach + 1):i + 1])
            counts[context, target] += 1
            totals[context] += 1
    n = sum(totals.values())
    return -sum(c / n * math.log(c / totals[ctx]) for (ctx, _), c in counts.items()) if n else 0.0


@check("overfit-batch", stage="train", cost="<= 300 steps on 2 sequences",
       thresholds={"fraction": 0.05, "steps": 300},
       source="the recipe: overfit one batch (cpu_small: 42 steps at lr 1e-3, 117 at 3e-4)",
       hint="the model cannot learn even two sequences: look for frozen parameters, a detached loss, lr ~ 0, "
            "or an lr far too high (see lr-range)")
def overfit(ctx) -> CheckResult:
    t = ctx.limits("overfit-batch")
    x, y = ctx.first_batch()
    x, y = x[:2].cpu(), y[:2].cpu()
    reach = context_reach(ctx.dependence)
    whole = reach > ctx.dependence["t"]
    floor = 0.0 if whole else conditional_entropy(x, y, reach)  # a model reading `reach` tokens cannot beat this
    result = overfit_batch(ctx, int(t["steps"]), t["fraction"], floor)
    data = {"losses": result["losses"]}
    want = f"loss < {result['target']:.3f}" + ("" if whole else f" (it reads {reach} token(s): floor {floor:.3f})")
    if result["reached"] is not None:
        return CheckResult("overfit-batch", "PASS", result["losses"][-1], want,
                           detail=f"loss {result['losses'][-1]:.3f} after {result['reached']} steps", data=data)
    problem = result.get("problem") or f"loss {result['losses'][-1]:.3f} after {len(result['losses']) - 1} steps"
    return CheckResult("overfit-batch", "FAIL", result["losses"][-1], want, detail=problem, data=data)


@check("input-dependence", stage="train", cost="2 x 100 steps (up to 2 x 500 while the gap grows), at lr-range's "
                                             "suggested lr",
       thresholds={"margin": 0.1, "steps": 100, "max_steps": 500},
       source="the recipe: input-independent baseline (cpu_small: 2.58 on real inputs against 3.36 on zeros "
              "after 100 steps; with shuffled labels 3.359 against 3.360)",
       hint="the model learns nothing from its inputs that a model of zeros does not: x and y are misaligned")
def input_dependence(ctx) -> CheckResult:
    margin = ctx.limits("input-dependence")["margin"]
    run = ctx.short_training
    real, zero = run["real"], run["zero"]
    want = f"real <= zero - {margin:g}"
    detail = f"val {real:.3f} on real inputs, {zero:.3f} on zeros after {run['steps']} steps at lr {run['lr']:.2g}"
    data = {"real": real, "zero": zero, "init": run["init"], "history": run["history"]}
    if real <= zero - margin:
        return CheckResult("input-dependence", "PASS", zero - real, want, detail=detail, data=data)
    if run["still_learning"]:  # out of steps while the gap still grew: nothing to conclude yet
        return CheckResult("input-dependence", "WARN", zero - real, want, detail=detail + " (still learning)",
                           hint="inconclusive: the model still learns; raise [doctor.input-dependence] max_steps "
                                "or check the learning rate", data=data)
    return CheckResult("input-dependence", "FAIL", zero - real, want, detail=detail + " (the gap stopped growing)",
                       data=data)


@check("lr-range", stage="train", cost="<= 100 steps",
       thresholds={"pass": 10.0, "fail": 2.0, "sgd_pass": 1.0, "sgd_fail": 0.5},
       source="fastai lr_find (Smith 2015): lr from 1e-7 to 10 over 100 steps, suggest minimum/10 (cpu_small: "
              "lr_at_min 0.115; lr 0.1 stalls at the unigram loss). For SGD, where update-ratio decides, an lr past "
              "the minimum warns and one past twice the minimum fails",
       hint="the learning rate is near where the loss blows up: use lr_at_min/10 (Adam at 3e-4 is safe)")
def lr_range(ctx) -> CheckResult:
    t = ctx.limits("lr-range")
    found = ctx.lr_found
    at_min = found["lr_at_min"]
    pass_div, fail_div = (t["pass"], t["fail"]) if ctx.adaptive else (t["sgd_pass"], t["sgd_fail"])
    data = {"lrs": found["lrs"], "losses": found["losses"], "lr_at_min": at_min, "lr": ctx.learning_rate,
            "suggestion": None if at_min is None else at_min / t["pass"]}
    if at_min is None:
        return CheckResult("lr-range", "FAIL", ctx.learning_rate, "", detail="the loss was not finite at lr 1e-7",
                           data=data)
    lr = ctx.learning_rate
    status = "PASS" if lr <= at_min / pass_div else "FAIL" if lr > at_min / fail_div else "WARN"
    return CheckResult("lr-range", status, lr, f"lr <= {at_min / pass_div:.3g}",
                       detail=f"lr {lr:.3g}, lr_at_min {at_min:.3g}", data=data)


@check("update-ratio", stage="probes", cost="the run's probes, or 60 steps",
       thresholds={"sgd_low": -4.0, "sgd_high": -2.0, "adaptive_low": -4.0, "adaptive_high": -1.0, "steps": 60},
       source="cs231n and makemore part 3: log10 std(update)/std(weight) about -3 for SGD (MLP: healthy -2.43, "
              "lr x10 -1.53); for Adam the band is wide (cpu_small -1.93, lr x100 -1.47) and lr-range decides",
       hint="scale the learning rate: updates are too large (or too small) for the weights they change")
def update_ratio(ctx, from_probes=None) -> CheckResult:
    t = ctx.limits("update-ratio")
    records = ratios_from_probes(ctx) if from_probes is None else from_probes
    source = "probes.jsonl"
    if not records:
        if getattr(ctx, "quick", False):
            return CheckResult("update-ratio", "SKIP", detail=f"{why_no_ratios(ctx)}, and --quick trains nothing")
        records = ctx.update_ratios
        why = f": {why_no_ratios(ctx)}" if ctx.run is not None else ""
        source = f"{int(t['steps'])} steps at lr {ctx.learning_rate:.2g}{why}"
    hidden = [r for r in records if r["role"] == "hidden" and r.get("trained", True) and r["update"] is not None]
    chosen = hidden or [r for r in records if r.get("trained", True) and r["update"] is not None]
    if not chosen:
        return CheckResult("update-ratio", "FAIL", None, "", detail="no weight matrix was updated")
    value = statistics.median(r["update"] for r in chosen)
    low, high = (t["adaptive_low"], t["adaptive_high"]) if ctx.adaptive else (t["sgd_low"], t["sgd_high"])
    status = "PASS" if low <= value <= high else "FAIL"
    per_weight = defaultdict(list)
    for r in records:
        per_weight[r["name"]].append((r["step"], r["update"]))
    which = "hidden matrices" if hidden else "matrices"
    return CheckResult("update-ratio", status, value, f"{low:g} .. {high:g}",
                       detail=f"median log10 update/data {value:.2f} over {which} ({source})",
                       data={"per_weight": dict(per_weight), "band": [low, high], "adaptive": ctx.adaptive})


def why_no_ratios(ctx) -> str:
    """Why the run's probes gave no update ratio to read: none written, or all within the warmup."""
    probes = [r for r in ctx.probes() if r.get("kind") == "probe"]
    if not probes:
        return "no probe records to read" if ctx.run is not None else "no run, so no probes to read"
    if all(r["step"] < ctx.warmup_iters for r in probes):
        return f"every probe record is inside the warmup (first {ctx.warmup_iters} steps), where updates are not " \
               "yet at the run's lr"
    return "no probe record has update ratios"


def ratios_from_probes(ctx) -> list:
    """[{"step", "name", "role", "update"}] of the run's probes after warmup."""
    out = []
    for record in ctx.probes():
        if record.get("kind") != "probe" or record["step"] < ctx.warmup_iters:
            continue
        for w in record.get("weights", []):
            out.append({"step": record["step"], "name": w["name"], "role": w.get("role", "hidden"),
                        "update": w.get("update"), "trained": w.get("grad_std") is not None})
    return out


@check("determinism", stage="train", cost="2 x 3 steps",
       thresholds={"steps": 3, "cuda_rtol": 1e-6},
       source="the recipe: fix random seed (identical losses on CPU, within 1e-6 on CUDA)",
       hint="something random is not seeded: dropout, data order or init draws from an unseeded generator")
def determinism(ctx) -> CheckResult:
    t = ctx.limits("determinism")
    first = losses_of_a_few_steps(ctx, int(t["steps"]))
    second = losses_of_a_few_steps(ctx, int(t["steps"]))
    if str(ctx.device).startswith("cpu"):
        same, want = first == second, "identical losses"
    else:
        same = all(abs(a - b) <= t["cuda_rtol"] * max(abs(a), abs(b)) for a, b in zip(first, second))
        want = f"losses within {t['cuda_rtol']:g} (relative)"
    worst = max(abs(a - b) for a, b in zip(first, second))
    return CheckResult("determinism", "PASS" if same else "FAIL", worst, want,
                       detail=f"largest difference {worst:.3g} between two runs of {len(first)} steps",
                       data={"first": first, "second": second, "torch": torch.__version__})
