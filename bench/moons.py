"""Benchmark: micrograd's moons demo on the scalar engine (nanostack.grad.Value).

    python bench/moons.py [--micrograd DIR] [--steps 100]

An MLP 2-16-16-1 learns two interleaved half-moons (100 points, noise 0.1) with micrograd's
max-margin loss, L2 regularisation 1e-4 and full-batch SGD with a learning rate decaying from
1.0 to 0.1, exactly as micrograd's demo.ipynb does. With --micrograd, micrograd's own engine runs
the same data from the same initial weights. Prints one JSON line per engine: seconds, final
loss and accuracy.
"""
import argparse
import gc
import json
import random
import sys
import time

import numpy as np

from nanostack.grad.scalar import MLP, Value


def make_moons(n=100, noise=0.1, seed=1337):
    """Two interleaving half circles (as sklearn.datasets.make_moons); labels -1 and +1."""
    rng = np.random.default_rng(seed)
    n_out = n // 2
    angles_out, angles_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n - n_out)
    X = np.concatenate([np.stack([np.cos(angles_out), np.sin(angles_out)], 1),
                        np.stack([1 - np.cos(angles_in), 1 - np.sin(angles_in) - 0.5], 1)])
    X += rng.normal(scale=noise, size=X.shape)
    y = np.concatenate([-np.ones(n_out), np.ones(n - n_out)])
    return X.tolist(), y.tolist()


def train_moons(Value, model, X, y, steps):
    """micrograd's demo loop, for any engine with its API."""
    for k in range(steps):
        inputs = [[Value(v) for v in row] for row in X]
        scores = [model(x) for x in inputs]
        losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
        data_loss = sum(losses) * (1.0 / len(losses))
        reg_loss = 1e-4 * sum(p * p for p in model.parameters())
        loss = data_loss + reg_loss
        accuracy = sum((yi > 0) == (si.data > 0) for yi, si in zip(y, scores)) / len(y)
        model.zero_grad()
        loss.backward()
        lr = 1.0 - 0.9 * k / 100
        for p in model.parameters():
            p.data -= lr * p.grad
    return loss.data, accuracy


def run(name, Value, MLP, X, y, steps, gc_thresholds):
    gc.set_threshold(*gc_thresholds)  # each engine starts from Python's settings (nanostack's backward changes them)
    random.seed(1337)  # both engines draw their initial weights with random.uniform in the same order
    model = MLP(2, [16, 16, 1])
    t0 = time.perf_counter()
    loss, accuracy = train_moons(Value, model, X, y, steps)
    print(json.dumps({"engine": name, "steps": steps, "seconds": round(time.perf_counter() - t0, 2),
                      "loss": round(loss, 6), "accuracy": accuracy}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--micrograd", help="path to a micrograd checkout to compare with")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    X, y = make_moons()
    python_gc = gc.get_threshold()
    run("nanostack.grad.Value", Value, MLP, X, y, args.steps, python_gc)
    if args.micrograd:
        sys.path.insert(0, args.micrograd)
        from micrograd.engine import Value as PeerValue
        from micrograd.nn import MLP as PeerMLP
        run("micrograd", PeerValue, PeerMLP, X, y, args.steps, python_gc)


if __name__ == "__main__":
    main()
