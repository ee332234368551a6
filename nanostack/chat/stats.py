"""The numbers an eval reports: accuracy with a 95% interval, accuracy centred on chance, pass@k.

- Accuracy over N items whose scores are 0 or 1 gets the Wilson score interval, which stays inside
  [0, 1] and keeps close to 95% coverage even for few items or accuracies near 0 or 1 (the plain
  normal interval collapses to a point there). Fractional scores (pass@1 estimated from several samples
  per item) get the normal interval of their mean, clipped to [0, 1].
- Centred accuracy is (accuracy - chance) / (1 - chance): 0 at the chance baseline (1/choices for
  multiple choice; 0 for free answers), 1 at perfect. Its interval is the accuracy's, mapped the same way.
- pass@k from n samples of which c are right: 1 - C(n - c, k) / C(n, k), the unbiased estimator of the
  chance that at least one of k samples is right (Chen et al. 2021, "Evaluating Large Language Models
  Trained on Code").
"""
import math

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(scores, z: float = Z95) -> tuple:
    """(mean, low, high) of per-item scores in [0, 1]: Wilson when every score is 0 or 1, else normal."""
    scores = [float(s) for s in scores]
    n = len(scores)
    if n == 0:
        return (math.nan, 0.0, 1.0)
    mean = sum(scores) / n
    if all(s in (0.0, 1.0) for s in scores):
        return (mean, *wilson_interval(sum(scores), n, z))
    var = sum((s - mean) ** 2 for s in scores) / max(n - 1, 1)
    half = z * math.sqrt(var / n)
    return (mean, max(0.0, mean - half), min(1.0, mean + half))


def centred(accuracy: float, chance: float) -> float:
    return (accuracy - chance) / (1 - chance) if chance < 1 else math.nan


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k of the n samples (c of them right) is right."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, not {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)
