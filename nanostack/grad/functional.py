"""Composite ops on Tensor, each fused: one forward in numpy and one hand-written backward.

Fusing keeps the graph small and the numbers stable: softmax subtracts the row maximum before
exp, cross_entropy works from log-probabilities and never takes log(0).
"""
import math

import numpy as np
from numpy.polynomial import chebyshev

from nanostack.grad.tensor import Tensor, _result

# dropout masks come from this generator; seed it (manual_seed) for repeatable training
default_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    global default_generator
    default_generator = np.random.default_rng(seed)


def linear(x: Tensor, weight: Tensor, bias: Tensor = None) -> Tensor:
    """x @ weight.T + bias, with weight stored (out_features, in_features) as in torch."""
    a, w = x.data, weight.data
    a2 = a.reshape(-1, a.shape[-1])  # one 2-D matmul: numpy would run one per leading index otherwise
    out = a2 @ w.T
    if bias is not None:
        out += bias.data
    out = out.reshape(*a.shape[:-1], w.shape[0])

    def backward(g):
        g2 = g.reshape(-1, g.shape[-1])
        grads = ((g2 @ w).reshape(a.shape), g2.T @ a2)
        return grads + (g2.sum(axis=0),) if bias is not None else grads
    return _result(out, (x, weight) if bias is None else (x, weight, bias), backward)


def softmax(x: Tensor, axis=-1) -> Tensor:
    e = np.exp(x.data - x.data.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    return _result(y, (x,), lambda g: (y * (g - (g * y).sum(axis=axis, keepdims=True)),))


def log_softmax(x: Tensor, axis=-1) -> Tensor:
    shifted = x.data - x.data.max(axis=axis, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return _result(out, (x,), lambda g: (g - np.exp(out) * g.sum(axis=axis, keepdims=True),))


def cross_entropy(logits: Tensor, targets, ignore_index=-1) -> Tensor:
    """Mean negative log-likelihood of the target classes; class scores on the last axis of logits,
    targets of the shape of the other axes. Targets equal to ignore_index count for nothing."""
    t = (targets.data if isinstance(targets, Tensor) else np.asarray(targets)).reshape(-1)
    z = logits.data.reshape(-1, logits.shape[-1])
    shifted = z - z.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    keep = t != ignore_index
    rows, picked = np.nonzero(keep)[0], t[keep]
    n = len(rows)
    with np.errstate(invalid="ignore", divide="ignore"):  # no targets at all: nan, as torch gives
        loss = np.asarray(-log_probs[rows, picked].sum() / n, dtype=z.dtype)

    def backward(g):
        grad = np.exp(log_probs)  # softmax - one_hot(target), averaged over the kept targets
        grad[rows, picked] -= 1
        grad[~keep] = 0
        return ((grad * (g / n)).reshape(logits.shape),)
    return _result(loss, (logits,), backward)


def layer_norm(x: Tensor, weight: Tensor = None, bias: Tensor = None, eps=1e-5) -> Tensor:
    """Normalise over the last axis to mean 0 and variance 1, then scale and shift."""
    a = x.data
    mean = a.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(a.var(axis=-1, keepdims=True) + eps)
    xhat = (a - mean) * rstd
    out = xhat * weight.data if weight is not None else xhat
    if bias is not None:
        out = out + bias.data

    def backward(g):
        dxhat = g * weight.data if weight is not None else g
        dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                     - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
        grads = [dx]
        if weight is not None:
            grads.append(g * xhat)  # summed to the weight's shape by the engine
        if bias is not None:
            grads.append(g)
        return grads
    parents = tuple(p for p in (x, weight, bias) if p is not None)
    return _result(out, parents, backward)


def gelu(x: Tensor, approximate="tanh") -> Tensor:
    """x * P(N(0,1) < x). approximate="tanh" uses GPT-2's tanh formula; "none" is exact (erf),
    which is torch's default and what nanostack's GPT uses."""
    a = x.data
    if approximate == "tanh":
        c = math.sqrt(2 / math.pi)
        t = np.tanh(c * (a + 0.044715 * a * a * a))
        out = 0.5 * a * (1 + t)
        return _result(out, (x,), lambda g: (g * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * c * (1 + 3 * 0.044715 * a * a)),))
    if approximate != "none":
        raise ValueError(f"approximate must be 'tanh' or 'none', not {approximate!r}")
    cdf = 0.5 * (1 + erf(a * (1 / math.sqrt(2))))
    out = a * cdf
    return _result(out, (x,), lambda g: (g * (cdf + a * np.exp(-0.5 * a * a) * (1 / math.sqrt(2 * math.pi))),))


def dropout(x: Tensor, p=0.5, training=True, generator=None) -> Tensor:
    """Zero each entry with probability p and scale the rest by 1/(1-p) (identity when not training)."""
    if not training or p == 0:
        return x
    if p >= 1:
        return x * 0.0
    keep = (generator or default_generator).random(x.shape) >= p
    scale = (keep / (1 - p)).astype(x.dtype)
    return _result(x.data * scale, (x,), lambda g: (g * scale,))


# ---- erf, for the exact GELU (numpy has none) -----------------------------------------------
# erf(z) = 1 - t * exp(P(u) - z^2) for z >= 0, with t = 2 / (2 + z), u = t rescaled to [-1, 1]
# and P a polynomial, smooth because it only corrects the asymptote of erfc. P is fitted here,
# at import, to math.erfc on z in [0, 6] (beyond 6, erf is 1 to double precision): degree 20
# gives float64 1e-14, degree 9 gives float32 its own rounding (3e-7 near 1) at less than half the cost.
_T_MIN = 2 / (2 + 6.0)


def _fit_erfc_exponent(degree):
    u = np.cos(np.linspace(0, np.pi, 400))  # Chebyshev points of [-1, 1]
    t = _T_MIN + (u + 1) / 2 * (1 - _T_MIN)
    z = 2 / t - 2
    y = np.array([math.log(math.erfc(v)) for v in z]) + z * z - np.log(t)
    return chebyshev.cheb2poly(chebyshev.chebfit(u, y, degree))  # power basis: coefficients stay below 1


_ERF_COEFFS = {np.dtype(np.float64): _fit_erfc_exponent(20),
               np.dtype(np.float32): _fit_erfc_exponent(9).astype(np.float32)}


def erf(z: np.ndarray) -> np.ndarray:
    coeffs = _ERF_COEFFS.get(z.dtype)
    if coeffs is None:
        return erf(z.astype(np.float64))
    a = np.abs(z)
    np.minimum(a, 6, out=a)
    t = 2 / (2 + a)
    u = t * (2 / (1 - _T_MIN))
    u -= (1 + _T_MIN) / (1 - _T_MIN)
    poly = np.full_like(u, coeffs[-1])
    for c in coeffs[-2::-1]:  # Horner, in place: no temporaries
        poly *= u
        poly += c
    np.square(a, out=a)
    poly -= a
    np.exp(poly, out=poly)
    poly *= t
    np.subtract(1, poly, out=poly)
    return np.copysign(poly, z, out=poly)  # erf is odd
