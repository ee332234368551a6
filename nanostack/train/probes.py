"""Probes: what the trainer records about the network itself while it trains (`--probe-every N`).

On step 0, every Nth step and the last step, hooks (probe_stats.Capture) record each probed
layer's activation and gradient statistics and histograms; before optimizer.step() the weights'
gradients are summarized and the weights copied, and after it the update-to-data ratio
log10(std(Δp)/std(p)) of every matrix is measured (makemore part 3, cells 15-18). After each
evaluation the model's argmax predictions (and per-token loss) on one fixed held-out window are
recorded, and after the last one, for a model with attention, the attention map of every head on
that window. Everything goes to RUN_DIR/probes.jsonl, one JSON record per line:

    {"kind": "window", "x": [...], "y": [...]}                      the fixed window, once
    {"kind": "probe", "step": S, "layers": [...], "weights": [...]}  S = steps done before this one (0: init)
    {"kind": "eval", "step": S, "pred": [...], "nll": [...], "attention": [...]?}   S as in metrics.jsonl

Probing never changes training: hooks read detached tensors, evaluation runs in eval mode without
random draws, and nothing is registered on steps that are not probed (or at all with N = 0).
With torch.compile the trainer runs probed steps through the eager model (hooks and compiled graphs
do not mix). The analysis and plots of these records are nanostack.recipe's.
"""
import json
import math

import torch
import torch.nn as nn

from nanostack.io import write_atomic
from nanostack.train.probe_stats import Capture, to_host

MAX_DEAD_LISTED = 64      # dead unit indices kept per layer
ATTENTION_WINDOW = 32     # positions of the window whose attention maps are kept


def make_probe(run, cfg, data, model, optimizer, start_step: int, log):
    """The run's Probe, or None when probing is off (--probe-every 0) or the model is not a torch model."""
    if cfg.probe_every <= 0:
        return None
    if not isinstance(model, nn.Module):
        log("note: --probe-every probes torch models; this numpy-backend run is not probed")
        return None
    return Probe(model, optimizer, every=cfg.probe_every, path=run.path / "probes.jsonl", last_step=cfg.max_iters - 1,
                 window=fixed_window(data, cfg.block_size, next(model.parameters()).device), start_step=start_step)


def fixed_window(data, block_size: int, device="cpu"):
    """(x, y) of shape (1, T): the first row of the held-out split's exact pass, the same in every run."""
    _, x, y = next(iter(data.batches("val", block_size, batch_size=1)))
    return x[:1].to(device), y[:1].to(device)


class Probe:
    def __init__(self, model, optimizer, every: int = 100, path=None, last_step=None, window=None, start_step=0):
        self.model, self.optimizer, self.every = model, optimizer, every
        self.path, self.last_step, self.window = path, last_step, window
        self.records = []  # kept in memory when there is no path (tests, the doctor)
        self._capture = self._step = self._weights = None
        self._file = None
        if path is not None:
            self._start_file(start_step)

    # ---- the trainer's hooks --------------------------------------------------------------------
    def wants(self, step: int) -> bool:
        return step % self.every == 0 or step == self.last_step

    def before_forward(self, step: int) -> bool:
        """Start probing optimizer step `step` (0-based) if it is a probe step; True if it is."""
        if not self.wants(step):
            return False
        self._step = step
        self._capture = Capture(self.model).__enter__()
        return True

    def before_step(self) -> None:
        """After backward, before optimizer.step(): stop the hooks, summarize the weights' gradients, copy
        the weights."""
        self._capture.__exit__(None, None, None)
        self._weights = []
        with torch.no_grad():
            for name, p, role in matrices(self.model):
                entry = {"name": name, "role": role, "shape": list(p.shape), "p": p, "before": p.detach().clone(),
                         "std": p.detach().float().std()}
                if p.grad is not None:
                    g = p.grad.detach().float()
                    gmax = g.abs().max()
                    entry.update(grad_std=g.std(), grad_absmax=gmax,
                                 grad_hist=torch.histc(sample(g) / torch.where(gmax > 0, gmax, torch.ones_like(gmax)),
                                                       bins=64, min=-1.0, max=1.0))
                self._weights.append(entry)

    def after_step(self, step: int) -> dict:
        """After optimizer.step(): measure the updates and write the step's record (one host sync)."""
        weights = []
        with torch.no_grad():
            for entry in self._weights:
                p, before = entry.pop("p"), entry.pop("before")
                delta = (p.detach().float() - before.float()).std()
                entry["update"] = torch.log10(delta / entry["std"].clamp_min(1e-30))
                weights.append(entry)
        layers = [{"name": name, "kind": layer["kind"], "act": layer["act"].reduce(),
                   "grad": None if layer["grad"].empty else layer["grad"].reduce()}
                  for name, layer in self._capture.layers.items() if not layer["act"].empty]
        record = {"kind": "probe", "step": step, "layers": layers, "weights": weights}
        record = tidy(to_host(record))
        self._capture = self._weights = None
        self._write(record)
        return record

    def after_eval(self, step: int, model=None, final: bool = False) -> dict | None:
        """After an evaluation at `step`: predictions on the fixed window (and attention maps when final)."""
        if self.window is None:
            return None
        model = model or self.model
        x, y = self.window
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                maps = attention_maps(model, x[:, :ATTENTION_WINDOW]) if final else None
                logits, _ = model(x, y)
                logits = logits.float()
                nll = torch.nn.functional.cross_entropy(logits[0], y[0], ignore_index=-1, reduction="none")
                record = {"kind": "eval", "step": step, "pred": logits[0].argmax(-1), "nll": nll}
                if maps is not None:
                    record["attention"] = maps
                record = tidy(to_host(record))
        finally:
            model.train(was_training)
        self._write(record)
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # ---- the file ---------------------------------------------------------------------------------
    def _start_file(self, start_step: int) -> None:
        """Keep the records of the steps before start_step (a resumed run probes the rest again)."""
        kept = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    r = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if isinstance(r, dict) and (r.get("kind") == "window" or
                                            (r.get("kind") == "probe" and r.get("step", 0) < start_step) or
                                            (r.get("kind") == "eval" and r.get("step", 0) <= start_step)):
                    kept.append(line + "\n")
        if start_step > 0 or kept:
            write_atomic(self.path, "".join(kept))
        self._file = open(self.path, "a", encoding="utf-8")
        if self.window is not None and not any('"window"' in line for line in kept):
            x, y = self.window
            self._write({"kind": "window", "x": x[0].tolist(), "y": y[0].tolist()})

    def _write(self, record: dict) -> None:
        if self._file is None:
            self.records.append(record)
            return
        self._file.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        self._file.flush()


def matrices(model):
    """[(name, parameter, role)] of every weight matrix (2-D and up), each tied weight once. The role is
    embedding (an Embedding's table), output (the last Linear: the head) or hidden."""
    roles = {}
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            roles[id(m.weight)] = "embedding"
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        roles.setdefault(id(linears[-1].weight), "output")
    seen, out = set(), []
    for name, p in model.named_parameters():
        if p.dim() >= 2 and id(p) not in seen:
            seen.add(id(p))
            out.append((name, p, roles.get(id(p), "hidden")))
    return out


def sample(t, limit=16_384):
    flat = t.reshape(-1)
    return flat[::max(1, flat.numel() // limit)][:limit]


def attention_maps(model, x):
    """[{"layer", "head", "map": T x T}] for every attention module with a fused q,k,v projection (c_attn)
    and n_head: the causal softmax(q k^T / sqrt(d)) of the queries and keys the model attends with, so with
    QK-norm and rotary embeddings where the module has them (its own `modern_qkv`)."""
    found = [(name, m) for name, m in model.named_modules() if hasattr(m, "c_attn") and hasattr(m, "n_head")]
    if not found:
        return None
    qk = {}

    def keep_qk(name):
        def hook(module, args, kwargs):
            if name not in qk:
                qk[name] = queries_and_keys(module, args, kwargs)
        return hook

    handles = [m.register_forward_pre_hook(keep_qk(name), with_kwargs=True) for name, m in found]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    maps = []
    for layer, (name, m) in enumerate(found):
        if name not in qk:
            continue
        q, k = qk[name]
        T = q.size(-2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
        weights = scores.softmax(-1)[0]
        for head in range(m.n_head):
            # the causal map is lower-triangular: row i keeps its i + 1 entries
            maps.append({"layer": layer, "name": name, "head": head, "map": [weights[head, i, :i + 1] for i in range(T)]})
    return maps


def queries_and_keys(module, args, kwargs):
    """(q, k) as float (B, n_head, T, head_dim), computed as the module's forward computes them from its input x
    and, where it is passed, rope (nanostack's CausalSelfAttention(x, kv_cache, layer, rope))."""
    x = args[0] if args else kwargs["x"]
    rope = args[3] if len(args) > 3 else kwargs.get("rope")
    B, T, C = x.shape
    if hasattr(module, "modern_qkv") and (getattr(module, "qk_norm", False) or rope is not None):
        q, k, _ = module.modern_qkv(x, rope)
    else:
        q, k, _ = module.c_attn(x).split(C, dim=2)
        q, k = (t.view(B, T, module.n_head, C // module.n_head).transpose(1, 2) for t in (q, k))
    return q.detach().float(), k.detach().float()


def tidy(node):
    """Floats to 4 significant digits, histogram counts to ints, non-finite numbers to None (JSON has none)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("hist", "grad_hist") and isinstance(v, list):
                out[k] = [int(c) for c in v]
            elif k == "dead" and isinstance(v, list):
                dead = [i for i, d in enumerate(v) if d]
                out["dead"] = len(dead) / max(len(v), 1)
                out["dead_units"] = dead[:MAX_DEAD_LISTED]
                out["units"] = len(v)
            elif k == "pred" and isinstance(v, list):
                out[k] = [int(t) for t in v]
            elif k == "map" and isinstance(v, list):
                out[k] = [[round(p, 3) for p in row] for row in v]
            else:
                out[k] = tidy(v)
        return out
    if isinstance(node, list):
        return [tidy(v) for v in node]
    if isinstance(node, float):
        if not math.isfinite(node):
            return None
        return float(f"{node:.4g}")
    return node
