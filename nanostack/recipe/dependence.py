"""Which input positions one output position depends on ("use backprop to chart dependencies").

In eval mode (BatchNorm mixes the rows of a batch in train mode), take two rows of the trainer's
first batch, backpropagate logits[0, T/2].sum() to the token embeddings, and add up the gradient's
magnitude per input position. A causal model gives exactly 0 for every position after T/2 and for
every position of the other row, and something non-zero at or before T/2.

Models read their tokens in different shapes (a GPT looks up (B, T), an MLP or WaveNet the (B, T,
context) windows it cut from them), so the input position of each looked-up token is found by
tagging: a few forward passes whose token ids spell each position's number in base V, read back at
the embedding's input. A model without an embedding module (the bigram's table is indexed
directly) is charted by perturbation instead: change one input token at a time and see which
changes move logits[0, T/2].

Some healthy models ignore their input at initialization: the learned bigram starts from an all-zero
table, and a GPT with zero-initialised output projections (`--zero-init`, an untied head) has no
path from the input to the logits until the first step. Causality is a property of the wiring, not
of the values, so where a weight matrix is all zeros, or nothing reaches the inputs at all, the
chart is taken on a copy of the model whose parameters get small Gaussian noise (NOISE, seeded by
the run's seed); "perturbed" in the chart says so.
"""
import copy
import math

import torch
import torch.nn as nn

NOISE = 0.01   # std of the noise added to every parameter of the copy charted when the init ignores the input


def token_embedding(model, vocab_size: int):
    """The embedding module that looks up the input tokens (V or V + 1 rows: a blank token), or None."""
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings in (vocab_size, vocab_size + 1):
            return module
    return None


def dependence_chart(ctx) -> dict:
    """{"grad": (2, T) gradient magnitude per input position, "t": T/2, "method", "perturbed": None, or why the
    chart was taken on a copy with noisy weights}."""
    model = ctx.new_model(dropout=False).eval()
    x, y = ctx.first_batch()
    x, y = x[:2], y[:2].clamp_min(0)  # targets only make the model compute every position's logits
    if x.size(0) < 2:
        x, y = x.repeat(2, 1), y.repeat(2, 1)
    t = x.size(1) // 2
    zero = zero_matrices(model)
    chart, method = chart_of(model, x, y, t, ctx.vocab_size)
    perturbed = None
    if zero or not chart.any():
        perturbed = (f"{zero[0]} is all zeros at init" + (f" (and {len(zero) - 1} more)" if len(zero) > 1 else "")
                     if zero else "at init nothing reaches the inputs")
        chart, method = chart_of(with_noise(model, ctx.seed), x, y, t, ctx.vocab_size)
    return {"grad": chart, "t": t, "method": method, "perturbed": perturbed}


def chart_of(model, x, y, t: int, vocab_size: int):
    embedding = token_embedding(model, vocab_size)
    if embedding is None:
        return by_perturbation(model, x, y, t, vocab_size), "perturbation"
    return by_backprop(model, embedding, x, y, t, vocab_size), "backprop"


def zero_matrices(model) -> list:
    """Names of the weight matrices (2-D or more) that are all zeros: no signal passes them at init."""
    return [name for name, p in model.named_parameters() if p.dim() >= 2 and not p.detach().any()]


def with_noise(model, seed: int):
    """A copy of the model with N(0, NOISE^2) added to every floating-point parameter, from a generator of its
    own (the global random state is left alone)."""
    noisy = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in noisy.parameters():
            if p.is_floating_point():
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float32) * NOISE
                p.add_(noise.to(device=p.device, dtype=p.dtype))
    return noisy


def by_backprop(model, embedding, x, y, t: int, vocab_size: int) -> torch.Tensor:
    B, T = x.shape
    positions = tagged_positions(model, embedding, x, y, vocab_size)
    looked_up = {}

    def as_leaf(module, inputs, out):  # the output becomes a leaf of our own, so its gradient is kept
        leaf = out.detach().requires_grad_(True)
        looked_up["out"] = leaf
        return leaf

    handle = embedding.register_forward_hook(as_leaf)
    try:
        with torch.enable_grad():
            logits, _ = model(x, y)
            logits[0, t].float().sum().backward()
    finally:
        handle.remove()
    grad = looked_up["out"].grad
    magnitude = grad.abs().float().sum(-1).reshape(-1) if grad is not None else torch.zeros(positions.numel())
    chart = torch.zeros(B * T, dtype=torch.float64)
    real = positions.reshape(-1) >= 0
    chart.index_add_(0, positions.reshape(-1)[real].cpu(), magnitude[real.to(magnitude.device)].double().cpu())
    return chart.view(B, T)


def tagged_positions(model, embedding, x, y, vocab_size: int) -> torch.Tensor:
    """For every token the embedding looks up, the flat input position (row * T + column) it came from,
    or -1 for a token the model made up (a blank before the start)."""
    B, T = x.shape
    n = B * T
    digits = max(1, math.ceil(math.log(n) / math.log(vocab_size))) if vocab_size > 1 else n
    number = torch.arange(n, device=x.device).view(B, T)
    seen = {}
    handle = embedding.register_forward_pre_hook(lambda module, inputs: seen.__setitem__("ids", inputs[0].detach()))
    positions, made_up = None, None
    try:
        with torch.no_grad():
            for d in range(digits):
                model(number // vocab_size ** d % vocab_size, y)
                ids = seen["ids"]
                made_up = ids >= vocab_size if made_up is None else made_up | (ids >= vocab_size)
                part = ids.clamp_max(vocab_size - 1) * vocab_size ** d
                positions = part if positions is None else positions + part
    finally:
        handle.remove()
    return torch.where(made_up, torch.full_like(positions, -1), positions)


def by_perturbation(model, x, y, t: int, vocab_size: int) -> torch.Tensor:
    B, T = x.shape
    with torch.no_grad():
        base = model(x, y)[0][0, t].float()
        chart = torch.zeros(B, T, dtype=torch.float64)
        for row in range(B):
            for col in range(T):
                changed = x.clone()
                changed[row, col] = (changed[row, col] + 1) % vocab_size
                chart[row, col] = (model(changed, y)[0][0, t].float() - base).abs().sum().item()
    return chart


def context_reach(chart: dict) -> int:
    """How many positions up to and including T/2 of row 0 the output at T/2 depends on (T/2 + 1: all)."""
    return int((chart["grad"][0, :chart["t"] + 1] != 0).sum())
