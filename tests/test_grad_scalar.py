"""Value (the scalar engine) against torch.autograd in float64, on hypothesis-generated expressions."""
import gc
import math
import random

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nanostack.grad import Value
from nanostack.grad.scalar import MLP, Layer, Neuron

# Each op is written once, for both engines; domain guards (x*x + 1 under a log, ...) keep every
# generated expression defined, so a difference can only be the engine's.
UNARY = {
    "neg": lambda x: -x,
    "exp": lambda x: x.tanh().exp(),
    "log": lambda x: (x * x + 1).log(),
    "tanh": lambda x: x.tanh(),
    "relu": lambda x: x.relu(),
    "sigmoid": lambda x: x.sigmoid(),
    "pow": lambda x: (x * x + 0.5) ** 1.5,
    "inv_pow": lambda x: (x * x + 0.5) ** -2,
    "square": lambda x: x ** 2,
    "radd": lambda x: 2.5 + x,
    "rsub": lambda x: 1.0 - x,
    "rmul": lambda x: 3.0 * x,
    "rdiv": lambda x: 1.0 / (x * x + 1),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 1),
}


programs = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(sorted(UNARY)), st.integers(0, 100), st.just(0)),
        st.tuples(st.sampled_from(sorted(BINARY)), st.integers(0, 100), st.integers(0, 100)),
    ),
    min_size=1, max_size=25,
)
leaves = st.lists(st.floats(-2, 2, allow_nan=False).filter(lambda v: abs(v) > 1e-3), min_size=1, max_size=4)


def run_program(program, inputs):
    """Apply the ops in turn; each reads earlier results (indices wrap). Returns the sum of all."""
    pool = list(inputs)
    for name, i, j in program:
        a, b = pool[i % len(pool)], pool[j % len(pool)]
        pool.append(UNARY[name](a) if name in UNARY else BINARY[name](a, b))
    out = pool[len(inputs)]
    for v in pool[len(inputs) + 1:]:
        out = out + v
    return out


@settings(max_examples=300, deadline=None)
@given(programs, leaves)
def test_random_expressions_match_torch(program, values):
    ours = [Value(v) for v in values]
    out = run_program(program, ours)
    assume(math.isfinite(out.data) and abs(out.data) < 1e8)
    out.backward()

    theirs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
    expected = run_program(program, theirs)
    expected.backward()
    assert out.data == pytest.approx(expected.item(), rel=1e-7, abs=1e-12)
    for v, t in zip(ours, theirs):
        expected_grad = t.grad.item() if t.grad is not None else 0.0  # torch leaves unused inputs at None
        assert v.grad == pytest.approx(expected_grad, rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("x", [-1.3, -0.2, 0.4, 1.7])
def test_every_unary_op_gradient(name, x):
    v = Value(x)
    UNARY[name](v).backward()
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    UNARY[name](t).backward()
    assert v.grad == pytest.approx(t.grad.item(), rel=1e-9)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_every_binary_op_gradient(name):
    a, b = Value(0.7), Value(-1.9)
    BINARY[name](a, b).backward()
    ta, tb = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.7, -1.9))
    BINARY[name](ta, tb).backward()
    assert (a.grad, b.grad) == (pytest.approx(ta.grad.item(), rel=1e-12), pytest.approx(tb.grad.item(), rel=1e-12))


def test_a_value_used_twice_gets_both_contributions():
    a = Value(-4.0)
    b = a + a  # db/da = 2
    c = b * b  # dc/db = 2b = -16
    c.backward()
    assert (b.grad, a.grad) == (-16.0, -32.0)


def test_gradients_accumulate_across_backward_calls():
    a = Value(3.0)
    (a * a).backward()
    (a * 2).backward()
    assert a.grad == 6.0 + 2.0


def test_a_100000_node_chain_backpropagates():
    x = Value(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0  # each step adds two nodes (plus constants)
    y.backward()
    assert x.grad == 1.0


def test_graph_has_no_reference_cycles():
    """The whole graph is freed by reference counting: the cycle collector finds no Value. (Only Values
    count: other threads of the test process, a server's for instance, may leave cycles of their own.)"""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector would free goes to gc.garbage, to be looked at
    try:
        x = Value(0.5)
        for _ in range(3):
            y = (x * x).tanh() + x.exp() / (x + 1) - x.sigmoid().relu()
            y.backward()
        del x, y
        gc.collect()
        assert [obj for obj in gc.garbage if isinstance(obj, Value)] == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_sigmoid_does_not_overflow():
    assert Value(-1000.0).sigmoid().data == 0.0
    assert Value(1000.0).sigmoid().data == 1.0


def test_value_power_value_is_refused():
    with pytest.raises(TypeError, match="constant"):
        Value(2.0) ** Value(3.0)


def test_mlp_parameters_and_zero_grad():
    random.seed(0)
    model = MLP(3, [4, 4, 1])
    assert len(model.parameters()) == (3 * 4 + 4) + (4 * 4 + 4) + (4 + 1)
    out = model([Value(1.0), Value(-2.0), Value(0.5)])
    assert isinstance(out, Value)  # a one-neuron last layer returns the Value itself
    out.backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0 for p in model.parameters())
    assert not model.layers[-1].neurons[0].nonlin and model.layers[0].neurons[0].nonlin
    assert len(Layer(2, 3)([1.0, 2.0])) == 3 and len(Neuron(5).parameters()) == 6


def test_mlp_learns_xor():
    """A tiny MLP fits XOR with plain SGD: the engine trains, not just differentiates."""
    random.seed(1)
    model = MLP(2, [8, 1])
    data = [([0.0, 0.0], -1.0), ([0.0, 1.0], 1.0), ([1.0, 0.0], 1.0), ([1.0, 1.0], -1.0)]
    for _ in range(300):
        loss = sum(((model(x) - y) ** 2 for x, y in data), Value(0.0))
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= 0.05 * p.grad
    assert loss.data < 0.05
