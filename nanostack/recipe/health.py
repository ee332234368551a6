"""run-health: what a finished (or running) run's metrics say, read from metrics.jsonl and its config.

- no NaN or inf in any recorded loss;
- the training loss of the last 10% of logged steps is below that of the first 10%;
- the best validation loss is below the unigram cross-entropy (minus a margin): a model that does
  not beat "always predict the token frequencies" has learned nothing from the context; below the
  bigram cross-entropy too, or a WARN;
- "add significant digits to your eval": the validation estimate's standard error,
  std(token loss) / sqrt(tokens per estimate), is at most 0.01 (measured with the run's best
  checkpoint on held-out tokens, when it has one);
- "don't trust learning rate decay defaults": a WARN when the lr reaches min_lr before 0.8 x max_iters.
"""
import math

from nanostack.recipe.result import CheckResult, check


@check("run-health", stage="run", cost="reads metrics.jsonl",
       thresholds={"unigram_margin": 0.05, "stderr": 0.01, "decay_fraction": 0.8},
       source="the recipe: no NaN, a falling loss, beat the input-independent baselines, add significant digits "
              "to your eval, don't trust learning rate decay defaults",
       hint="read the named step in metrics.jsonl: lower the lr (or raise warmup) for a NaN or a rising loss, "
            "train longer or fix the model when val does not beat the baselines, raise --eval-iters for more "
            "significant digits")
def run_health(ctx) -> CheckResult:
    records = ctx.metrics()
    if ctx.run is None:
        return CheckResult("run-health", "SKIP", detail="no run to read (check a run folder after training)")
    t = ctx.limits("run-health")
    problems, warnings = [], []
    for r in records:
        for key in ("loss", "train_loss", "val_loss"):
            value = r.get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                problems.append(f"{key} {value} at step {r['step']}")
                break
    train = sorted((r["step"], r["loss"]) for r in records
                   if r.get("kind") == "train" and isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"]))
    if len(train) >= 2:
        k = max(1, len(train) // 10)
        first = sum(v for _, v in train[:k]) / k
        last = sum(v for _, v in train[-k:]) / k
        if last >= first:
            problems.append(f"train loss rose from {first:.3f} (steps {train[0][0]}-{train[k - 1][0]}) to {last:.3f} "
                            f"(steps {train[-k][0]}-{train[-1][0]})")
    evals = [(r["val_loss"], r["step"]) for r in records
             if r.get("kind") == "eval" and isinstance(r.get("val_loss"), (int, float)) and math.isfinite(r["val_loss"])]
    best = min(evals) if evals else None
    if best is not None:
        if best[0] >= ctx.unigram_ce - t["unigram_margin"]:
            problems.append(f"best val {best[0]:.3f} (step {best[1]}) is not below the unigram cross-entropy "
                            f"{ctx.unigram_ce:.3f} - {t['unigram_margin']:g}")
        elif best[0] >= ctx.bigram_ce:
            warnings.append(f"best val {best[0]:.3f} (step {best[1]}) is not below the bigram cross-entropy "
                            f"{ctx.bigram_ce:.3f}")
    cfg = ctx.config
    stderr = None
    scores = ctx.heldout_scores
    if cfg is not None and scores is not None:
        stderr = scores["token_std"] / math.sqrt(cfg.eval_iters * cfg.batch_size * ctx.block_size)
        if stderr > t["stderr"]:
            warnings.append(f"the val estimate is +-{stderr:.3f} (std {scores['token_std']:.2f} over "
                            f"{cfg.eval_iters} x {cfg.batch_size} x {ctx.block_size} tokens)")
    if cfg is not None and cfg.lr_decay_iters < t["decay_fraction"] * cfg.max_iters:
        warnings.append(f"the lr reaches min_lr at step {cfg.lr_decay_iters}, before {t['decay_fraction']:g} x "
                        f"max_iters ({cfg.max_iters})")
    status = "FAIL" if problems else "WARN" if warnings else "PASS"
    detail = "; ".join(problems + warnings) or (f"best val {best[0]:.3f} at step {best[1]}" if best else
                                                "no evaluation yet")
    data = {"best_val": best[0] if best else None, "stderr": stderr, **ctx.baselines}
    return CheckResult("run-health", status, best[0] if best else None,
                       f"best val < {ctx.unigram_ce - t['unigram_margin']:.3f}", detail=detail, data=data)
