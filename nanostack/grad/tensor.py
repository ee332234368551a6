"""Tensor: a numpy array that remembers how it was computed, and backpropagates through it.

Every op computes its result with numpy and attaches a `backward(g)` function that maps the
gradient of the result, g, to the gradients of its inputs (the chain rule for that op, written
out). Tensor.backward() visits the graph from the output back, in reverse creation order (an
op's result is always created after its inputs, so that order is topological), and sums the
gradients that reach each tensor. Where numpy broadcast an input, its gradient is summed back
over the broadcast axes.

`backward(g)` closes over the inputs' arrays, never over its own result: the graph holds no
reference cycles and is freed as soon as the last result goes away.
"""
from contextlib import contextmanager
from itertools import count

import numpy as np

_creation_order = count()
_grad_enabled = True


@contextmanager
def no_grad():
    """Inside, ops record no graph: for evaluation and for optimizer updates."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "_order", "__weakref__")

    def __init__(self, data, requires_grad=False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        from_python = not isinstance(data, np.ndarray) and not isinstance(data, np.generic)
        data = np.asarray(data, dtype=dtype)
        if dtype is None and from_python and data.dtype == np.float64:
            data = data.astype(np.float32)  # Python floats make float32 tensors, as in torch
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, not {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad
        self._parents, self._backward = (), None
        self._order = next(_creation_order)

    # ---- properties -------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    T = property(lambda self: self.permute(*reversed(range(self.ndim))))

    def __len__(self):
        return len(self.data)

    def numel(self):
        return self.data.size

    def item(self):
        return self.data.item()

    def numpy(self):
        return self.data

    def detach(self):
        return Tensor(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, separator=', ')}{grad})"

    # ---- elementwise arithmetic (broadcasting) ------------------------------------------
    def _lift(self, other):
        if isinstance(other, Tensor):
            return other
        if isinstance(other, np.ndarray):
            return Tensor(other)
        return Tensor(np.asarray(other, dtype=self.data.dtype))  # a Python number takes this tensor's dtype

    def __add__(self, other):
        other = self._lift(other)
        return _result(self.data + other.data, (self, other), lambda g: (g, g))

    def __mul__(self, other):
        other = self._lift(other)
        a, b = self.data, other.data
        return _result(a * b, (self, other), lambda g: (g * b, g * a))

    def __truediv__(self, other):
        other = self._lift(other)
        a, b = self.data, other.data
        return _result(a / b, (self, other), lambda g: (g / b, -g * a / (b * b)))

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("Tensor ** Tensor is not supported: the exponent must be a number")
        a = self.data
        return _result(a ** exponent, (self,), lambda g: (g * exponent * a ** (exponent - 1),))

    def __neg__(self):
        return _result(-self.data, (self,), lambda g: (-g,))

    def __sub__(self, other):
        return self + (-self._lift(other))

    def __radd__(self, other):
        return self + other

    def __rsub__(self, other):
        return self._lift(other) + (-self)

    def __rmul__(self, other):
        return self * other

    def __rtruediv__(self, other):
        return self._lift(other) / self

    def __matmul__(self, other):
        other = self._lift(other)
        return _result(self.data @ other.data, (self, other), _matmul_backward(self.data, other.data))

    # ---- elementwise functions ---------------------------------------------------------
    def exp(self):
        e = np.exp(self.data)
        return _result(e, (self,), lambda g: (g * e,))

    def log(self):
        a = self.data
        return _result(np.log(a), (self,), lambda g: (g / a,))

    def tanh(self):
        t = np.tanh(self.data)
        return _result(t, (self,), lambda g: (g * (1 - t * t),))

    def relu(self):
        positive = self.data > 0
        return _result(self.data * positive, (self,), lambda g: (g * positive,))

    def sigmoid(self):
        s = np.exp(-np.logaddexp(0, -self.data))  # 1 / (1 + e^-x) without overflow
        return _result(s, (self,), lambda g: (g * s * (1 - s),))

    def masked_fill(self, mask, value):
        """A copy with `value` where mask is true; no gradient flows to the filled places."""
        mask = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
        return _result(np.where(mask, np.asarray(value, self.data.dtype), self.data), (self,),
                       lambda g: (np.where(mask, 0, g),))

    # ---- reductions ----------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        shape = self.shape
        return _result(self.data.sum(axis=axis, keepdims=keepdims), (self,),
                       lambda g: (np.broadcast_to(_unreduce(g, axis, keepdims, len(shape)), shape),))

    def mean(self, axis=None, keepdims=False):
        return self.sum(axis, keepdims) * (1.0 / _count(self.shape, axis))

    def max(self, axis=None, keepdims=False):
        """Largest entries; the gradient is shared equally among tied maxima (as torch.amax)."""
        a = self.data
        out = a.max(axis=axis, keepdims=True)

        def backward(g):
            is_max = a == out
            share = is_max / is_max.sum(axis=axis, keepdims=True)
            return (share * _unreduce(g, axis, keepdims, a.ndim),)
        return _result(out if keepdims else _squeeze(out, axis), (self,), backward)

    def var(self, axis=None, keepdims=False, correction=1):
        """Variance; correction=1 divides by n - 1 (torch's default), 0 by n."""
        n = _count(self.shape, axis)
        centered = self - self.mean(axis, keepdims=True)
        return (centered * centered).sum(axis, keepdims) * (1.0 / max(0, n - correction))

    # ---- shape ---------------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        original = self.shape
        return _result(self.data.reshape(shape), (self,), lambda g: (g.reshape(original),))

    view = reshape

    def transpose(self, dim0=0, dim1=1):
        """Swap two axes (torch's transpose)."""
        return _result(self.data.swapaxes(dim0, dim1), (self,), lambda g: (g.swapaxes(dim0, dim1),))

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        inverse = np.argsort(dims)
        return _result(self.data.transpose(dims), (self,), lambda g: (g.transpose(inverse),))

    def __getitem__(self, index):
        index = _plain_index(index)
        shape, dtype = self.shape, self.data.dtype

        def backward(g):
            if isinstance(index, np.ndarray) and index.dtype.kind in "iu":  # rows of a table: an embedding
                return (_scatter_add_rows(shape, index, g),)
            grad = np.zeros(shape, dtype=dtype)
            if _is_basic(index):
                grad[index] = g  # slices and integers never select an element twice
            else:
                np.add.at(grad, index, g)  # fancy indexing may: repeated picks add up
            return (grad,)
        return _result(self.data[index], (self,), backward)

    def split(self, split_size, axis=0):
        """Chunks of split_size along axis (the last may be smaller), or of the sizes in a list."""
        length = self.shape[axis]
        sizes = [split_size] * (length // split_size) + ([length % split_size] if length % split_size else []) \
            if isinstance(split_size, int) else list(split_size)
        if sum(sizes) != length:
            raise ValueError(f"split sizes {sizes} do not add up to the axis length {length}")
        starts = np.cumsum([0] + sizes[:-1])
        prefix = (slice(None),) * (axis % self.ndim)
        return [self[prefix + (slice(s, s + n),)] for s, n in zip(starts, sizes)]

    # ---- backpropagation ---------------------------------------------------------------
    def backward(self, grad=None):
        """Add d(self)/d(t) to t.grad for every tensor t that requires grad and that self was
        computed from. Without `grad`, self must hold a single number (a loss)."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: no input of it has "
                               "requires_grad=True, or it was computed under no_grad()")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a single number, not shape {self.shape}")
            grad = np.ones_like(self.data)
        grads = {self: np.asarray(grad, dtype=self.data.dtype)}
        for node in _graph_order(self):
            g = grads.pop(node, None)
            if g is None:
                continue
            if not node._parents:  # a leaf: keep its gradient (a copy: g may be shared or read-only)
                node.grad = np.array(g, dtype=node.data.dtype) if node.grad is None else node.grad + g
                continue
            for parent, pg in zip(node._parents, node._backward(g)):
                if pg is None or not parent.requires_grad:
                    continue
                pg = _unbroadcast(pg, parent.shape)
                grads[parent] = pg if parent not in grads else grads[parent] + pg


def _result(data, parents, backward) -> Tensor:
    """The output of an op: records its inputs and backward function if any input needs a gradient."""
    out = Tensor.__new__(Tensor)
    out.data, out.grad, out._order = data, None, next(_creation_order)
    out.requires_grad = _grad_enabled and any(p.requires_grad for p in parents)
    out._parents, out._backward = (parents, backward) if out.requires_grad else ((), None)
    return out


def _graph_order(root):
    """The tensors root was computed from that need gradients, root first, each before its inputs."""
    seen, stack = {root}, [root]
    while stack:
        for parent in stack.pop()._parents:
            if parent.requires_grad and parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return sorted(seen, key=lambda t: t._order, reverse=True)


def _unbroadcast(g, shape):
    """Sum g over the axes that broadcasting added or stretched, so it has the input's shape."""
    if g.shape == shape:
        return g
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=stretched, keepdims=True) if stretched else g


def _unreduce(g, axis, keepdims, ndim):
    """Put back the axes a reduction removed, so g broadcasts against the reduction's input."""
    if keepdims or axis is None and g.ndim == ndim:
        return g
    axes = range(ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    return np.expand_dims(g, tuple(a % ndim for a in axes))


def _count(shape, axis) -> int:
    """How many entries a reduction over `axis` combines into each result."""
    axes = range(len(shape)) if axis is None else (axis,) if isinstance(axis, int) else axis
    return int(np.prod([shape[a] for a in axes]))


def _squeeze(a, axis):
    return a.reshape(()) if axis is None else np.squeeze(a, axis=axis)


def _matmul_backward(a, b):
    def backward(g):
        if a.ndim == 1 and b.ndim == 1:  # dot product
            return g * b, g * a
        a2 = a[None, :] if a.ndim == 1 else a  # vectors act as a row (left) or a column (right)
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = np.expand_dims(g, -2) if a.ndim == 1 else g
        g2 = np.expand_dims(g2, -1) if b.ndim == 1 else g2
        ga = g2 @ b2.swapaxes(-1, -2)
        if b2.ndim == 2 and a2.ndim > 2:  # (..., n, k) @ (k, m): one big matmul for the weight's gradient
            gb = a2.reshape(-1, a2.shape[-1]).T @ g2.reshape(-1, g2.shape[-1])
        else:
            gb = a2.swapaxes(-1, -2) @ g2
        return (ga[..., 0, :] if a.ndim == 1 else ga), (gb[..., 0] if b.ndim == 1 else gb)
    return backward


def _scatter_add_rows(shape, index, g):
    """np.add.at(zeros(shape), index, g) for an integer array picking rows, by sorting the picks and
    summing each row's run at once: ~10x faster than np.add.at on an embedding's gradient."""
    picks = index.reshape(-1) % shape[0]  # negative indices count from the end
    rows = g.reshape(picks.size, int(np.prod(shape[1:])))
    order = np.argsort(picks, kind="stable")
    picks = picks[order]
    starts = np.flatnonzero(np.concatenate(([True], picks[1:] != picks[:-1])))
    grad = np.zeros((shape[0], rows.shape[1]), dtype=g.dtype)
    if picks.size:
        grad[picks[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return grad.reshape(shape)


def _plain_index(index):
    """An index with Tensors replaced by their arrays."""
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index.data if isinstance(index, Tensor) else index


def _is_basic(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in parts)


# ---- functions of several tensors ----------------------------------------------------------
def concatenate(tensors, axis=0) -> Tensor:
    tensors = list(tensors)
    ends = np.cumsum([t.shape[axis] for t in tensors])
    return _result(np.concatenate([t.data for t in tensors], axis=axis), tuple(tensors),
                   lambda g: tuple(np.split(g, ends[:-1], axis=axis)))


def stack(tensors, axis=0) -> Tensor:
    tensors = list(tensors)
    return _result(np.stack([t.data for t in tensors], axis=axis), tuple(tensors),
                   lambda g: tuple(np.moveaxis(g, axis, 0)))


def where(condition, a, b) -> Tensor:
    """Elementwise: a where condition is true, else b."""
    cond = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    a = a if isinstance(a, Tensor) else Tensor(np.asarray(a, dtype=b.dtype if isinstance(b, Tensor) else None))
    b = b if isinstance(b, Tensor) else Tensor(np.asarray(b, dtype=a.dtype))
    return _result(np.where(cond, a.data, b.data), (a, b), lambda g: (np.where(cond, g, 0), np.where(cond, 0, g)))
