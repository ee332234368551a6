"""The cross-entropy of a linear head, a chunk of rows at a time: the loss without the batch's logits.

`F.cross_entropy(x @ W.T, targets)` holds B*T x vocab logits, and under bf16 autocast an fp32 copy
of them as well (cross_entropy runs in fp32): for GPT-2 at 64 x 1024 tokens that is 13 GB. Here
the forward pass takes the rows `chunk_rows` at a time: it computes one chunk's logits (in the
autocast dtype), their log-sum-exp and loss in fp32, and right away the chunk's gradients
(softmax - one_hot, times W for x and times x for W), then drops the chunk's logits. The backward
pass only scales the stored gradients. Memory: one chunk of logits; arithmetic: the same matmuls
as forward + backward through the head. Targets of -1 are ignored, as in F.cross_entropy.
"""
import torch

CHUNK_ELEMENTS = 2 ** 27  # logits per chunk (512 MB in fp32): about 2,700 rows of GPT-2's vocabulary


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_rows: int = 0):
    """Mean cross-entropy of logits x @ weight.T (x: N x C, weight: V x C, targets: N) over targets != -1."""
    if chunk_rows <= 0:
        chunk_rows = max(1, CHUNK_ELEMENTS // weight.size(0))
    device_type = x.device.type
    compute = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
    return _LinearCrossEntropy.apply(x, weight, targets, chunk_rows, compute)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, targets, chunk_rows, compute):
        with torch.autocast(x.device.type, enabled=False):
            exact = torch.float64 if x.dtype == torch.float64 else torch.float32  # log-softmax precision
            w = weight.to(compute)
            counted = (targets != -1).sum()
            loss = torch.zeros((), dtype=exact, device=x.device)
            grad_x = torch.empty_like(x)
            grad_w = torch.zeros(weight.shape, dtype=exact, device=weight.device)
            for start in range(0, x.size(0), chunk_rows):
                xc, tc = x[start:start + chunk_rows].to(compute), targets[start:start + chunk_rows]
                logits = (xc @ w.t()).to(exact)
                keep = (tc != -1).unsqueeze(1)
                safe = tc.clamp(min=0).unsqueeze(1)
                lse = torch.logsumexp(logits, dim=1, keepdim=True)
                loss += ((lse - logits.gather(1, safe)) * keep).sum()
                probs = torch.exp_(logits.sub_(lse))  # softmax, in the logits' own memory
                probs.scatter_add_(1, safe, -torch.ones_like(safe, dtype=exact))  # d loss / d logits
                g = (probs * keep).to(compute)
                grad_x[start:start + chunk_rows] = (g @ w).to(x.dtype)
                grad_w += (g.t() @ xc).to(exact)
            scale = 1.0 / counted.clamp(min=1).to(exact)
            ctx.save_for_backward(grad_x, grad_w, scale)
            ctx.weight_dtype = weight.dtype
        return (loss * scale).to(x.dtype if x.dtype == torch.float64 else torch.float32)

    @staticmethod
    def backward(ctx, grad_loss):
        grad_x, grad_w, scale = ctx.saved_tensors
        factor = grad_loss * scale
        return (grad_x * factor.to(grad_x.dtype), (grad_w * factor.to(grad_w.dtype)).to(ctx.weight_dtype),
                None, None, None)
