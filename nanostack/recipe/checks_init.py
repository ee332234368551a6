"""The checks that need no training step: the first batch, and the network at initialization.

Thresholds and where they come from are in the spec (specs/recipe.md §1): Karpathy's "A Recipe for
Training Neural Networks" (2019) and makemore part 3 (activations, gradients, BatchNorm).
"""
import math

from nanostack.recipe.dependence import NOISE
from nanostack.recipe.result import CheckResult, check
from nanostack.train.probe_stats import DYING, SQUASHING

NONLINEAR = ("tanh", "sigmoid", "relu", "relu2", "gelu", "silu")


def status_by(value: float, pass_at: float, fail_above: float) -> str:
    return "PASS" if value <= pass_at else "FAIL" if value > fail_above else "WARN"


@check("batch-alignment", stage="init", cost="1 batch",
       thresholds={"pass": 1.0},
       source="the recipe: visualize just before the net (a loader that shuffled the labels scored 0.216)",
       hint="the targets are not the inputs shifted by one: check the slicing, and any shuffle applied to y")
def batch_alignment(ctx) -> CheckResult:
    x, y = ctx.first_batch()
    target = y[:, :-1]
    real = target != -1
    same = (target == x[:, 1:]) & real
    value = same.sum().item() / max(real.sum().item(), 1)
    rows = [{"x": ctx.token_texts(x[r].tolist()),
             "y": ["" if t < 0 else s for t, s in zip(y[r].tolist(), ctx.token_texts(y[r].clamp_min(0).tolist()))]}
            for r in range(min(4, x.size(0)))]
    want = ctx.limits("batch-alignment")["pass"]
    return CheckResult("batch-alignment", "PASS" if value >= want else "FAIL", value, f"= {want:g}",
                       detail=f"{value:.3f} of targets are the next input", data={"rows": rows})


@check("init-loss", stage="init", cost="4 forward",
       thresholds={"margin": 0.1},
       source="the recipe: verify loss @ init (makemore part 3: 3.287 at step 0 against ln 27 = 3.296)",
       hint="shrink the output layer (x0.1, or std 0.02) and zero its bias; a loss below the unigram "
            "cross-entropy at init means the targets leak into the inputs")
def init_loss(ctx) -> CheckResult:
    model = ctx.new_model()
    loss = ctx.eval_loss(model, ctx.val_batches(4))
    margin = ctx.limits("init-loss")["margin"]
    low, high = ctx.unigram_ce - margin, ctx.ln_vocab + margin
    ok = low <= loss <= high
    return CheckResult("init-loss", "PASS" if ok else "FAIL", loss, f"{low:.3f} .. {high:.3f}",
                       detail=f"L0 {loss:.3f} (ln V {ctx.ln_vocab:.3f}, unigram {ctx.unigram_ce:.3f})")


def layers_of(ctx, kinds) -> list:
    return [(name, layer) for name, layer in ctx.init_stats.items() if layer["kind"] in kinds]


@check("saturation", stage="init", cost="1 forward",
       thresholds={"pass": 0.25, "fail": 0.5},
       source="makemore part 3: |h| > 0.97; gain 5/3 gave 20.9/9.2/7.5/6.0/5.9%, weights x10 about 90%",
       hint="initialize with gain/sqrt(fan_in) (calculate_gain gives 5/3 for tanh), or add a norm layer")
def saturation(ctx) -> CheckResult:
    layers = layers_of(ctx, SQUASHING)
    if not layers:
        return CheckResult("saturation", "SKIP", detail="no tanh or sigmoid layer")
    fractions = [layer["act"]["saturated"] for _, layer in layers]
    value = max(fractions)
    t = ctx.limits("saturation")
    return CheckResult("saturation", status_by(value, t["pass"], t["fail"]), value, f"<= {t['pass']:.0%}",
                       detail="saturated " + "/".join(f"{f:.1%}" for f in fractions),
                       data={"layers": {name: f for (name, _), f in zip(layers, fractions)}})


@check("dead-units", stage="init", cost="1 forward",
       thresholds={"pass": 0.05, "fail": 0.25},
       source="makemore part 3 (white columns); cs231n: as much as 40% of ReLUs die at a high lr",
       hint="lower the init scale (or the bias before the nonlinearity) or the learning rate")
def dead_units(ctx) -> CheckResult:
    layers = [(name, layer) for name, layer in layers_of(ctx, DYING) if layer["act"]["dead"] is not None]
    if not layers:
        return CheckResult("dead-units", "SKIP", detail="no tanh, sigmoid, ReLU, ReLU² or GELU layer")
    fractions = {name: sum(layer["act"]["dead"]) / len(layer["act"]["dead"]) for name, layer in layers}
    worst = max(fractions, key=fractions.get)
    value = fractions[worst]
    t = ctx.limits("dead-units")
    return CheckResult("dead-units", status_by(value, t["pass"], t["fail"]), value, f"<= {t['pass']:.0%}",
                       detail=f"{value:.1%} of units dead in {worst}", data={"layers": fractions})


def same_kind_ratio(ctx, what: str):
    """(ratio deepest / shallowest of `what`'s std, kind) for the kind of nonlinearity with the most layers,
    or (None, None) where no kind has two."""
    by_kind = {}
    for name, layer in layers_of(ctx, NONLINEAR):
        stats = layer[what]
        if stats is not None:
            by_kind.setdefault(layer["kind"], []).append(stats["std"])
    ratios = {k: v[-1] / v[0] for k, v in by_kind.items() if len(v) >= 2 and v[0] > 0}
    if not ratios:
        return None, None, by_kind
    kind = max(ratios, key=lambda k: abs(math.log(ratios[k])) if ratios[k] > 0 else math.inf)
    return ratios[kind], kind, by_kind


@check("act-scale", stage="init", cost="1 forward",
       thresholds={"low": 0.6, "high": 1.6},
       source="makemore part 3: deepest/shallowest tanh std 0.88 with gain 5/3, 0.52 with gain 1",
       hint="the init gain is wrong for this depth: activations shrink or grow layer by layer")
def act_scale(ctx) -> CheckResult:
    ratio, kind, by_kind = same_kind_ratio(ctx, "act")
    if ratio is None:
        return CheckResult("act-scale", "SKIP", detail="fewer than two layers of one nonlinearity")
    t = ctx.limits("act-scale")
    ok = t["low"] <= ratio <= t["high"]
    stds = "/".join(f"{s:.3g}" for s in by_kind[kind])
    return CheckResult("act-scale", "PASS" if ok else "WARN", ratio, f"{t['low']:g} .. {t['high']:g}",
                       detail=f"{kind} std {stds}: deepest/shallowest {ratio:.2f}", data={"std": by_kind})


@check("grad-flow", stage="init", cost="1 forward + backward",
       thresholds={"pass": 3.0, "fail": 10.0},
       source="makemore part 3: 2.64e-3 to 1.95e-3 across layers; measured MLP 1.38, GPT 1.47, MLP weights x10 102",
       hint="fix the init gain or add normalization: gradients shrink or grow layer by layer")
def grad_flow(ctx) -> CheckResult:
    stds = [(name, layer["grad"]["std"]) for name, layer in layers_of(ctx, NONLINEAR) if layer["grad"] is not None]
    if len(stds) < 2:
        return CheckResult("grad-flow", "SKIP", detail="fewer than two nonlinear layers with gradients")
    values = [s for _, s in stds]
    if not any(values):  # zero-initialised output projections (--zero-init) pass no gradient back until step 1
        return CheckResult("grad-flow", "SKIP", detail="no gradient reaches any nonlinearity at init (an output "
                                                       "projection starts at zero): nothing to compare yet")
    smallest = min(values)
    value = max(values) / smallest if smallest > 0 else math.inf
    t = ctx.limits("grad-flow")
    return CheckResult("grad-flow", status_by(value, t["pass"], t["fail"]), value, f"max/min <= {t['pass']:g}",
                       detail=f"grad std {'/'.join(f'{v:.3g}' for v in values)}: max/min {value:.3g}",
                       data={"layers": dict(stds)})


@check("causality", stage="init", cost="1 forward + backward",
       thresholds={"tolerance": 0.0},
       source="the recipe: use backprop to chart dependencies (a model with is_causal=False gave 430)",
       hint="an output sees the future or another row: use a causal mask, and transpose, not view, "
            "to split heads")
def causality(ctx) -> CheckResult:
    chart = ctx.dependence
    grad, t = chart["grad"], chart["t"]
    future = grad[0, t + 1:].sum().item() + grad[1:].sum().item()
    past = grad[0, :t + 1].sum().item()
    tolerance = ctx.limits("causality")["tolerance"]
    perturbed = chart.get("perturbed")
    if future > tolerance:
        status, detail = "FAIL", f"future grad {future:.3g}"
    elif past <= 0:
        status, detail = "FAIL", "no gradient reaches the inputs at all" + (", even with noisy weights" if perturbed
                                                                             else "")
    else:
        status, detail = "PASS", f"future grad {future:.3g}, past {past:.3g}"
    how = chart["method"] + (f"; {perturbed}: charted on a copy with weights + N(0, {NOISE:g}^2) noise"
                             if perturbed else "")
    return CheckResult("causality", status, future, "0 after T/2 and in other rows", detail=f"{detail} ({how})",
                       data={"chart": grad[0].tolist(), "t": t, "perturbed": perturbed})
