"""Value: a scalar that remembers how it was computed, and backpropagates through it.

Each op computes its result and records, for each input, the local derivative d(out)/d(input).
backward() walks the graph from the output in reverse topological order and applies the chain
rule: input.grad += local_derivative * out.grad. Gradients accumulate, so a value used twice
gets both contributions.

Unlike micrograd, a node stores its local derivatives as numbers instead of a `_backward`
closure. A closure that updates `out.grad` holds `out` itself: a reference cycle per node,
which only Python's cyclic garbage collector can free, and on a big graph that collector
costs more than the arithmetic. Here the graph is a tree of plain references, freed the
moment the last output goes away.
"""
import gc
import math
import random
from itertools import count
from operator import attrgetter

_creation_order = count()


class Value:
    # at most two inputs per node, in slots rather than tuples: one object allocated per op
    __slots__ = ("data", "grad", "_a", "_da", "_b", "_db", "_op", "_order")

    def __init__(self, data, _a=None, _da=0.0, _b=None, _db=0.0, _op=""):
        self.data = data
        self.grad = 0.0
        self._a, self._da = _a, _da  # first input and d(self)/d(first input)
        self._b, self._db = _b, _db  # second input, if any, and d(self)/d(second input)
        self._op = _op  # the op that made this node, for draw_graph
        # a node is always created after its inputs, so descending creation order is a topological order
        self._order = next(_creation_order)

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, self, 1.0, other, 1.0, "+")

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, self, other.data, other, self.data, "*")

    def __pow__(self, exponent):
        if isinstance(exponent, Value):
            raise TypeError("Value ** Value is not supported: the exponent must be an int or float constant")
        return Value(self.data ** exponent, self, exponent * self.data ** (exponent - 1), _op="**")

    def exp(self):
        e = math.exp(self.data)
        return Value(e, self, e, _op="exp")

    def log(self):
        return Value(math.log(self.data), self, 1.0 / self.data, _op="log")

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, self, 1.0 - t * t, _op="tanh")

    def relu(self):
        positive = self.data > 0
        return Value(self.data if positive else 0.0, self, 1.0 if positive else 0.0, _op="relu")

    def sigmoid(self):
        x = self.data
        s = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))  # no overflow
        return Value(s, self, s * (1.0 - s), _op="sigmoid")

    def __neg__(self):
        return self * -1.0

    def __radd__(self, other):  # other + self
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):  # other - self
        return other + (-self)

    def __rmul__(self, other):  # other * self
        return self * other

    def __truediv__(self, other):
        return self * other ** -1

    def __rtruediv__(self, other):  # other / self
        return other * self ** -1

    def backward(self):
        """Add d(self)/d(v) to v.grad for every Value v this one depends on (zero_grad() first to
        start afresh)."""
        _collect_rarely()
        self.grad = 1.0
        for node in topological_order(self):
            if node._a is not None:
                node._a.grad += node._da * node.grad
                if node._b is not None:
                    node._b.grad += node._db * node.grad

    def __repr__(self):
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"


def _collect_rarely():
    """Make Python's full garbage collections rarer, once per process.

    The cyclic collector scans every surviving object in a full collection, and runs one whenever
    the survivors have grown by a quarter: a scalar graph of 65,000 nodes is that growth, every
    step. On the moons demo the collector took half the time re-scanning graphs which, having no
    cycles, reference counting frees anyway. Young-generation collections, which catch everyday
    cyclic garbage, keep Python's defaults; only the third threshold goes from 10 to 1000.
    """
    young, middle, old = gc.get_threshold()
    if old < 1000:
        gc.set_threshold(young, middle, 1000)


def topological_order(root):
    """Every node root depends on, root first, each before its inputs. Found with an explicit
    stack, not recursion (a chain of 100,000 nodes would overflow Python's recursion limit), and
    ordered by creation number, which needs no per-node bookkeeping."""
    seen, stack = {root}, [root]
    while stack:
        node = stack.pop()
        a = node._a
        if a is not None:
            if a not in seen:
                seen.add(a)
                stack.append(a)
            b = node._b
            if b is not None and b not in seen:
                seen.add(b)
                stack.append(b)
    return sorted(seen, key=attrgetter("_order"), reverse=True)


class Module:
    def zero_grad(self):
        for p in self.parameters():
            p.grad = 0.0

    def parameters(self):
        return []


class Neuron(Module):
    def __init__(self, n_inputs, nonlin=True):
        self.w = [Value(random.uniform(-1, 1)) for _ in range(n_inputs)]
        self.b = Value(0.0)
        self.nonlin = nonlin

    def __call__(self, x):
        act = self.b
        for wi, xi in zip(self.w, x):  # b + w0*x0 + w1*x1 + ..., micrograd's order
            act = act + wi * xi
        return act.relu() if self.nonlin else act

    def parameters(self):
        return self.w + [self.b]


class Layer(Module):
    def __init__(self, n_inputs, n_outputs, **kwargs):
        self.neurons = [Neuron(n_inputs, **kwargs) for _ in range(n_outputs)]

    def __call__(self, x):
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self):
        return [p for n in self.neurons for p in n.parameters()]


class MLP(Module):
    """Fully connected layers with ReLU between them; the last layer is linear."""

    def __init__(self, n_inputs, layer_sizes):
        sizes = [n_inputs] + list(layer_sizes)
        self.layers = [Layer(sizes[i], sizes[i + 1], nonlin=i != len(layer_sizes) - 1)
                       for i in range(len(layer_sizes))]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]
