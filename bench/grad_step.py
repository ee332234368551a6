"""Benchmark: one training step (forward, backward, AdamW) on the numpy engine against torch.

    python bench/grad_step.py [--steps 30] [--rounds 3]

Two models, each built on both engines with the same weights and fed the same batches:
- the cpu_small GPT (4 layers, 4 heads, 128 wide, block 64, batch 12, vocab 65), through the
  same model and optimizer builders the trainer uses (models/engines.py, train/optimizer.py);
- makemore's names MLP at its default sizes (context 16 characters, 64-wide embeddings, hidden 64,
  vocab 27, batch 32, predicting every position): models/mlp.py and models/mlp_numpy.py.
The engines alternate, `--rounds` times, so both see the same machine noise. Prints one JSON line
per model and round: median ms per step for each engine and their ratio (numpy / torch).
"""
import argparse
import json
import statistics
import time

import numpy as np
import torch

from nanostack.cpu import keep_freed_memory
from nanostack.models import GPTConfig, ModelConfig
from nanostack.models.engines import build_model
from nanostack.train.optimizer import make_optimizer

NAMES = dict(vocab=27, context=16, n_embd=64, hidden=64, batch=32)


def time_steps(step, steps) -> float:
    for _ in range(3):  # warm up caches and allocator
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def adamw(backend, model, weight_decay):
    return make_optimizer(model, 1e-3, weight_decay, (0.9, 0.99), "cpu", numpy=backend == "numpy")


def gpt_steps():
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    models = {backend: build_model(backend, config, seed=0) for backend in ("torch", "numpy")}
    models["numpy"].load_state_dict({k: v.detach().numpy() for k, v in models["torch"].state_dict().items()})
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randint(65, (12, 64), generator=g) for _ in range(2))
    return {backend: make_step(model, adamw(backend, model, 0.1), x, y) for backend, model in models.items()}


def names_steps():
    config = ModelConfig(vocab_size=NAMES["vocab"], block_size=NAMES["context"], kind="mlp", n_embd=NAMES["n_embd"],
                         n_embd2=NAMES["hidden"])
    models = {backend: build_model(backend, config, seed=0) for backend in ("torch", "numpy")}
    models["numpy"].load_state_dict({k: v.detach().numpy() for k, v in models["torch"].state_dict().items()})
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randint(NAMES["vocab"], (NAMES["batch"], NAMES["context"]), generator=g) for _ in range(2))
    same = np.isclose(models["numpy"](x, y)[1].item(), models["torch"](x, y)[1].item(), rtol=1e-5)
    assert same, "the two names MLPs disagree: the benchmark would compare different work"
    return {backend: make_step(model, adamw(backend, model, 0.01), x, y) for backend, model in models.items()}


def make_step(model, optimizer, x, y):
    def step():
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per engine per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    keep_freed_memory()  # as the trainer does on a CPU
    for name, make in (("gpt_cpu_small", gpt_steps), ("names_mlp", names_steps)):
        steps = make()
        for r in range(args.rounds):
            ms = {backend: time_steps(step, args.steps) for backend, step in steps.items()}
            print(json.dumps({"model": name, "round": r, "torch_ms": round(ms["torch"], 2),
                              "numpy_ms": round(ms["numpy"], 2), "ratio": round(ms["numpy"] / ms["torch"], 2),
                              "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
