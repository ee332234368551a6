"""Optimizers on Tensor parameters, step for step the same arithmetic as torch.optim's."""
import numpy as np

from nanostack.grad.tensor import Tensor


def _groups(params, defaults):
    params = list(params)
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    return [{**defaults, **g, "params": list(g["params"])} for g in groups]


class Optimizer:
    def __init__(self, params, defaults):
        self.param_groups = _groups(params, defaults)
        self.state = {}  # per parameter (by position in the groups): its buffers

    def parameters(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def state_dict(self) -> dict:
        """{"step": n, "<buffer>.<i>": array} for the i-th parameter of the groups, flattened."""
        out = {"step": self.step_count}
        for i, buffers in self.state.items():
            out.update({f"{name}.{i}": array for name, array in buffers.items()})
        return out

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.state = {}
        for key, array in state.items():
            if key != "step":
                name, i = key.rsplit(".", 1)
                self.state.setdefault(int(i), {})[name] = np.array(array)


class SGD(Optimizer):
    """p -= lr * v, with v = momentum * v + (g + weight_decay * p) (torch's SGD, no dampening)."""

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.step_count = 0

    def step(self):
        self.step_count += 1
        i = -1
        for group in self.param_groups:
            for p in group["params"]:
                i += 1
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p.data if group["weight_decay"] else p.grad
                if group["momentum"]:
                    buffers = self.state.setdefault(i, {})
                    v = buffers["momentum_buffer"] = g.copy() if "momentum_buffer" not in buffers \
                        else group["momentum"] * buffers["momentum_buffer"] + g
                    g = v
                p.data -= (group["lr"] * g).astype(p.dtype)


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW computes it:
    p *= 1 - lr * wd; m, v = moving averages of g and g^2; p -= lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.step_count = 0

    def step(self):
        self.step_count += 1
        t = self.step_count
        i = -1
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                i += 1
                if p.grad is None:
                    continue
                g = p.grad
                buffers = self.state.setdefault(i, {})
                if not buffers:
                    buffers["exp_avg"], buffers["exp_avg_sq"] = np.zeros_like(p.data), np.zeros_like(p.data)
                m, v = buffers["exp_avg"], buffers["exp_avg_sq"]
                if wd:
                    p.data *= 1 - lr * wd
                m *= beta1
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * g * g
                denom = np.sqrt(v) / np.sqrt(1 - beta2 ** t) + eps
                p.data -= (lr / (1 - beta1 ** t)) * m / denom


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale the gradients so that their joint L2 norm is at most max_norm (torch's clip_grad_norm_,
    with its 1e-6 guard); returns the norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = float(np.sqrt(sum(np.vdot(g, g) for g in grads)))
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for g in grads:
            g *= g.dtype.type(scale)
    return total
