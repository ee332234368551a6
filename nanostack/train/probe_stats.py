"""Statistics of a model's activations and gradients, gathered by hooks while a step runs.

`Capture(model)` registers a forward hook on every leaf Linear, Embedding, norm and nonlinearity
module (so models write their nonlinearities as modules: `nn.Tanh()`, not `torch.tanh`), and from
inside that hook a gradient hook on the module's output (`out.register_hook`, not
register_full_backward_hook, which wraps tensors in views and breaks in-place ops). Each call
folds the tensor into running statistics that stay on the device: count, mean and spread, absmax,
the saturated fraction, which units are dead at every position, and up to 16,384 strided samples
for a 64-bin histogram. `to_host(...)` moves everything to the CPU in one transfer. Given a mask of the real positions
(targets that are not padding), tensors laid out (B, T, ...) are read at those positions only.

The definitions follow makemore part 3 (saturated: |tanh| > 0.97) and the recipe spec: a unit is
dead when it is dead at every position seen (tanh |h| > 0.99, ReLU or ReLU² output 0, GELU input below -3).
Nothing here changes what the model computes: hooks read detached tensors and return None.
It knows torch modules only; which steps are probed and where records go is probes.py's.
"""
import torch
import torch.nn as nn

from nanostack.models.gpt import ReLUSquared

BINS = 64                 # histogram bins (the Weights & Biases default)
MAX_SAMPLES = 16_384      # strided samples per histogram
SATURATED = 0.97          # |tanh| above this is saturated (the notebook's threshold)
DEAD_SATURATED = 0.99     # a tanh unit this saturated at every position is dead (the lecture's white column)
GELU_DEAD_INPUT = -3.0    # GELU(x) ~ 0 and GELU'(x) ~ 0 below this

NONLINEAR = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.GELU: "gelu", nn.ReLU: "relu", nn.SiLU: "silu",
             ReLUSquared: "relu2"}
NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.RMSNorm)
SQUASHING = ("tanh", "sigmoid")  # kinds that saturate
DYING = ("tanh", "sigmoid", "relu", "relu2", "gelu")  # kinds whose units can die


def kind_of(module) -> str | None:
    for cls, name in NONLINEAR.items():
        if isinstance(module, cls):
            return name
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, NORMS):
        return "norm"
    return None


def probed_modules(model) -> list:
    """[(name, module, kind)] of the modules probes watch, in the order they were defined."""
    out = []
    for name, module in model.named_modules():
        kind = kind_of(module)
        if kind is not None and not any(True for _ in module.children()):
            out.append((name, module, kind))
    return out


def squash(h, kind):
    """A squashing output mapped to [-1, 1] (sigmoid's 0..1 becomes tanh's -1..1)."""
    return h if kind == "tanh" else 2 * h - 1


class Moments:
    """Running statistics of the tensors one module produced in a step (all calls), on the device."""

    def __init__(self):
        self.parts = []  # per call: (n, mean, M2, absmax, saturated count, dead units or None, samples)

    def add(self, t, kind=None, before=None) -> None:
        with torch.no_grad():
            t = t.detach().float()
            rows = t.reshape(-1, t.shape[-1]) if t.dim() > 1 else t.reshape(-1, 1)
            n = t.numel()
            mean = t.mean()
            m2 = ((t - mean) ** 2).sum()
            absmax = t.abs().max()
            saturated = dead = None
            if kind in SQUASHING:
                s = squash(rows, kind).abs()
                saturated = (s > SATURATED).sum()
                dead = (s > DEAD_SATURATED).all(0)
            elif kind in ("relu", "relu2"):  # relu(x)^2 is 0 exactly where relu(x) is
                dead = (rows == 0).all(0)
            elif kind == "gelu" and before is not None:
                b = before.detach().float()
                dead = (b.reshape(-1, b.shape[-1]) < GELU_DEAD_INPUT).all(0)
            flat = t.reshape(-1)
            samples = flat[::max(1, n // MAX_SAMPLES)][:MAX_SAMPLES]
            self.parts.append((n, mean, m2, absmax, saturated, dead, samples))

    @property
    def empty(self) -> bool:
        return not self.parts

    def reduce(self) -> dict:
        """Device tensors: mean, std, absmax, saturated (fraction or None), dead units (bool mask or None),
        histogram (BINS counts over [-absmax, absmax])."""
        ns = [p[0] for p in self.parts]
        total = sum(ns)
        mean = sum(p[1] * (n / total) for n, p in zip(ns, self.parts))
        m2 = sum(p[2] + n * (p[1] - mean) ** 2 for n, p in zip(ns, self.parts))  # Chan et al.'s merge
        std = (m2 / max(total - 1, 1)).sqrt()
        absmax = torch.stack([p[3] for p in self.parts]).max()
        saturated = None
        if self.parts[0][4] is not None:
            saturated = torch.stack([p[4] for p in self.parts]).sum().float() / total
        dead = None
        if self.parts[0][5] is not None and all(p[5] is not None and p[5].shape == self.parts[0][5].shape
                                                for p in self.parts):
            dead = torch.stack([p[5] for p in self.parts]).all(0)
        samples = torch.cat([p[6] for p in self.parts])
        samples = samples[::max(1, len(samples) // MAX_SAMPLES)][:MAX_SAMPLES]
        # scaled to [-1, 1] on the device, so the histogram's range needs no host sync
        scaled = samples / torch.where(absmax > 0, absmax, torch.ones_like(absmax))
        hist = torch.histc(scaled, bins=BINS, min=-1.0, max=1.0)
        return {"mean": mean, "std": std, "absmax": absmax, "saturated": saturated, "dead": dead, "hist": hist}


class Capture:
    """While active (a `with` block), hooks fold every probed module's outputs (and, with grads=True,
    the gradients flowing back into them) into Moments. `layers` maps module name to
    {"kind", "act": Moments, "grad": Moments}."""

    def __init__(self, model, grads: bool = True, modules=None, mask=None):
        self.model, self.grads, self.mask = model, grads, mask
        self.modules = probed_modules(model) if modules is None else modules
        self.layers = {name: {"kind": kind, "act": Moments(), "grad": Moments()} for name, _, kind in self.modules}
        self.handles = []

    def __enter__(self):
        for name, module, kind in self.modules:
            self.handles.append(module.register_forward_hook(self._hook(name, kind)))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []
        return False

    def _keep(self, out):
        return _keep_positions(self.mask, out)

    def _hook(self, name, kind):
        layer = self.layers[name]

        def forward_hook(module, inputs, out):
            if not isinstance(out, torch.Tensor):
                return None
            before = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            keep = self._keep(out)
            layer["act"].add(out[keep] if keep is not None else out, kind,
                             before[keep] if keep is not None and before is not None else before)
            if self.grads and out.requires_grad:  # the hook returns None: the gradient is unchanged
                out.register_hook(lambda grad: layer["grad"].add(grad[keep] if keep is not None else grad))
            return None

        return forward_hook


def _keep_positions(mask, out):
    """The mask of real (not padding) positions, where out is laid out (B, T, ...) as the mask; else None."""
    if mask is None or out.dim() < 3 or tuple(out.shape[:2]) != tuple(mask.shape):
        return None
    return mask.to(out.device)


def to_host(tree):
    """A nested structure of dicts, lists and device tensors with every tensor moved to Python numbers
    and lists, in one device-to-host transfer."""
    tensors = []

    def collect(node):
        if isinstance(node, torch.Tensor):
            tensors.append(node)
        elif isinstance(node, dict):
            for v in node.values():
                collect(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                collect(v)

    collect(tree)
    if not tensors:
        return tree
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors]).cpu().tolist()  # the one sync
    position = [0]

    def rebuild(node):
        if isinstance(node, torch.Tensor):
            n = node.numel()
            values = flat[position[0]:position[0] + n]
            position[0] += n
            if node.dtype == torch.bool:
                values = [v != 0 for v in values]
            return values[0] if node.dim() == 0 else values
        if isinstance(node, dict):
            return {k: rebuild(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [rebuild(v) for v in node]
        return node

    return rebuild(tree)
