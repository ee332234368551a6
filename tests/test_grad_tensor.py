"""Tensor (the numpy engine) against torch.autograd: values and gradients in float64, every op.

Each check runs one function on both engines from the same arrays, backpropagates the same random
upstream gradient through it, and compares the output and every input's gradient.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nanostack.grad import Tensor, concatenate, no_grad, stack, where
from nanostack.grad import functional as F

RTOL = 1e-7


def check(fn, *arrays, torch_fn=None, rtol=RTOL, atol=1e-12):
    """fn on Tensors equals (torch_fn or fn) on torch tensors, in value and in every input's gradient."""
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, expected = fn(*ours), (torch_fn or fn)(*theirs)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=rtol, atol=atol)
    upstream = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(upstream)
    expected.backward(torch.from_numpy(upstream))
    for o, t in zip(ours, theirs):
        expected_grad = t.grad.numpy() if t.grad is not None else np.zeros_like(o.data)
        np.testing.assert_allclose(o.grad, expected_grad, rtol=rtol, atol=atol)


def arrays(shape, low=-3.0, high=3.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, width=64))


small_dims = dict(min_dims=0, max_dims=4, min_side=1, max_side=4)


@st.composite
def broadcast_arrays(draw, low=-3.0, high=3.0):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, **small_dims)).input_shapes
    return draw(arrays(shapes[0], low, high)), draw(arrays(shapes[1], low, high))


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 0.5),
    "rsub_const": lambda a, b: 2.0 - a * b,
    "rdiv_const": lambda a, b: 1.0 / (a * a + 1) + b,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@settings(max_examples=40, deadline=None)
@given(pair=broadcast_arrays())
def test_broadcasting_binary_ops(name, pair):
    check(BINARY[name], *pair)


UNARY = {
    "exp": (lambda x: x.exp(), None),
    "log": (lambda x: (x * x + 0.1).log(), None),
    "tanh": (lambda x: x.tanh(), None),
    "relu": (lambda x: x.relu(), None),
    "sigmoid": (lambda x: x.sigmoid(), None),
    "neg": (lambda x: -x, None),
    "pow": (lambda x: (x * x + 0.5) ** 1.5, None),
    "pow_neg": (lambda x: (x * x + 0.5) ** -1, None),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"),
                  lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    "gelu_exact": (lambda x: F.gelu(x, approximate="none"), lambda x: torch.nn.functional.gelu(x)),
    "softmax_last": (lambda x: F.softmax(x, axis=-1), lambda x: torch.softmax(x, dim=-1)),
    "softmax_first": (lambda x: F.softmax(x, axis=0), lambda x: torch.softmax(x, dim=0)),
    "log_softmax": (lambda x: F.log_softmax(x, axis=-1), lambda x: torch.log_softmax(x, dim=-1)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@settings(max_examples=30, deadline=None)
@given(x=hnp.array_shapes(min_dims=1, max_dims=3, max_side=5).flatmap(lambda s: arrays(s, -6, 6)))
def test_elementwise_and_softmax_ops(name, x):
    ours, theirs = UNARY[name]
    check(ours, x, torch_fn=theirs)


REDUCTIONS = {
    "sum": (lambda x, axis, keep: x.sum(axis=axis, keepdims=keep),
            lambda x, axis, keep: x.sum(dim=axis, keepdim=keep) if axis is not None else x.sum()),
    "mean": (lambda x, axis, keep: x.mean(axis=axis, keepdims=keep),
             lambda x, axis, keep: x.mean(dim=axis, keepdim=keep) if axis is not None else x.mean()),
    "max": (lambda x, axis, keep: x.max(axis=axis, keepdims=keep),
            lambda x, axis, keep: x.amax(dim=axis, keepdim=keep) if axis is not None else x.amax()),
    "var": (lambda x, axis, keep: x.var(axis=axis, keepdims=keep),
            lambda x, axis, keep: x.var(dim=axis, keepdim=keep) if axis is not None else x.var()),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_reductions_over_axes(name, data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
    x = data.draw(arrays(shape))
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                               st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True)
                               .map(tuple)))
    keep = data.draw(st.booleans()) if axis is not None else False
    ours, theirs = REDUCTIONS[name]
    check(lambda t: ours(t, axis, keep), x, torch_fn=lambda t: theirs(t, axis, keep))


def test_max_shares_the_gradient_among_ties():
    check(lambda x: x.max(axis=1), np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]),
          torch_fn=lambda x: x.amax(dim=1))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_batched_matmul(data):
    batch = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
    n, k, m = (data.draw(st.integers(1, 4)) for _ in range(3))
    b_batch = data.draw(st.sampled_from([batch, batch[1:], ()]))  # broadcast the right side too
    a, b = data.draw(arrays(batch + (n, k))), data.draw(arrays(b_batch + (k, m)))
    check(lambda x, y: x @ y, a, b)


@pytest.mark.parametrize("shapes", [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 5, 3), (3,))])
def test_matmul_with_vectors(shapes):
    rng = np.random.default_rng(1)
    check(lambda x, y: x @ y, *(rng.standard_normal(s) for s in shapes))


def test_shape_ops():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4))
    check(lambda t: t.reshape(6, 4) * 2, x)
    check(lambda t: t.reshape((4, 6)).exp(), x)
    check(lambda t: t.transpose(0, 2) * t.transpose(0, 2), x)
    check(lambda t: t.permute(2, 0, 1).tanh(), x)
    check(lambda t: t.T @ t.T.transpose(-1, -2), rng.standard_normal((3, 4)))


INDICES = [
    (1,), (slice(1, 3),), (slice(None), 0), (Ellipsis, slice(0, 2)), (None, 1),
    (np.array([0, 2, 0, 0]),),  # fancy indexing with repeats: gradients add up
    (slice(None), np.array([[1, 1], [3, 0]])),
    (np.array([True, False, True, True]),),
]


@pytest.mark.parametrize("index", INDICES, ids=range(len(INDICES)))
def test_indexing(index):
    x = np.random.default_rng(3).standard_normal((4, 5))
    torch_index = tuple(torch.from_numpy(i) if isinstance(i, np.ndarray) else i for i in index)
    check(lambda t: t[index] * 3, x, torch_fn=lambda t: t[torch_index] * 3)


def test_embedding_lookup_with_a_tensor_index_scatter_adds():
    table = np.random.default_rng(4).standard_normal((5, 3))
    ids = np.array([[0, 1, 1], [4, 1, 0]])
    check(lambda t: t[Tensor(ids)], table, torch_fn=lambda t: t[torch.from_numpy(ids)])


@pytest.mark.parametrize("ids", [np.array([3, -1, 0, 3, 3]), np.array([[2], [2]]), np.array([], dtype=np.int64)])
def test_integer_array_picks_from_a_vector_and_a_table(ids):
    rng = np.random.default_rng(8)
    for table in (rng.standard_normal(5), rng.standard_normal((5, 2, 3))):
        check(lambda t: t[ids] * 2, table, torch_fn=lambda t: t[torch.from_numpy(ids)] * 2)


def test_concatenate_stack_split():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((4, 3))
    check(lambda x, y: concatenate([x, y], axis=0) * 2, a, b, torch_fn=lambda x, y: torch.cat([x, y], 0) * 2)
    c = rng.standard_normal((2, 3))
    check(lambda x, y: stack([x, y], axis=1).exp(), a, c, torch_fn=lambda x, y: torch.stack([x, y], 1).exp())
    x = rng.standard_normal((2, 7))
    for sizes in (3, [2, 5]):
        check(lambda t: concatenate([p * (i + 1) for i, p in enumerate(t.split(sizes, axis=1))], axis=1), x,
              torch_fn=lambda t: torch.cat([p * (i + 1) for i, p in enumerate(t.split(sizes, dim=1))], 1))
    with pytest.raises(ValueError, match="do not add up"):
        Tensor(x).split([2, 2], axis=1)


def test_masked_fill_and_where():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    mask = rng.random((3, 4)) > 0.5
    tmask = torch.from_numpy(mask)
    check(lambda t: t.masked_fill(mask, -1.5) * t, x, torch_fn=lambda t: t.masked_fill(tmask, -1.5) * t)
    check(lambda a, b: where(mask, a, b * 2), x, y, torch_fn=lambda a, b: torch.where(tmask, a, b * 2))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_cross_entropy_with_ignore_index(data):
    n, classes = data.draw(st.integers(1, 6)), data.draw(st.integers(2, 7))
    logits = data.draw(arrays((2, n, classes), -20, 20))
    targets = data.draw(hnp.arrays(np.int64, (2, n), elements=st.integers(-1, classes - 1)))
    if (targets == -1).all():
        targets[0, 0] = 0  # torch's mean over no targets is nan; checked separately below
    t = torch.from_numpy(targets)
    check(lambda z: F.cross_entropy(z, targets, ignore_index=-1), logits,
          torch_fn=lambda z: torch.nn.functional.cross_entropy(z.reshape(-1, classes), t.reshape(-1), ignore_index=-1))


def test_cross_entropy_is_stable_for_huge_logits_and_nan_without_targets():
    z = np.array([[1000.0, -1000.0, 0.0]])
    loss = F.cross_entropy(Tensor(z), np.array([0]))
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(F.cross_entropy(Tensor(z), np.array([-1])).item())


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_layer_norm(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=6))
    x, w, b = data.draw(arrays(shape)), data.draw(arrays(shape[-1:])), data.draw(arrays(shape[-1:]))
    check(lambda t, wt, bt: F.layer_norm(t, wt, bt), x, w, b,
          torch_fn=lambda t, wt, bt: torch.nn.functional.layer_norm(t, shape[-1:], wt, bt), rtol=1e-6, atol=1e-9)
    check(lambda t: F.layer_norm(t), x, torch_fn=lambda t: torch.nn.functional.layer_norm(t, shape[-1:]),
          rtol=1e-6, atol=1e-9)


def test_linear_equals_torch():
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    check(F.linear, x, w, b, torch_fn=torch.nn.functional.linear)
    check(F.linear, x, w, torch_fn=torch.nn.functional.linear)


def test_dropout_zeroes_scales_and_routes_the_gradient():
    x = Tensor(np.ones((200, 100)), requires_grad=True)
    y = F.dropout(x, 0.3, training=True, generator=np.random.default_rng(0))
    kept = y.data != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y.data[kept], 1 / 0.7)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, kept / 0.7)
    assert F.dropout(x, 0.3, training=False) is x
    assert (F.dropout(x, 1.0).data == 0).all()


def test_float32_stays_float32():
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    y = F.gelu(x * 2.0 + 1, approximate="none").sum() / 3
    assert y.dtype == np.float32 and Tensor([1.0, 2.0]).dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32
    assert F.gelu(Tensor(np.linspace(-8, 8, 101, dtype=np.float32)), approximate="none").dtype == np.float32


def test_exact_gelu_erf_is_accurate_in_both_precisions():
    z = np.linspace(-7, 7, 2001)
    expected = torch.special.erf(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(F.erf(z), expected, rtol=0, atol=2e-14)
    np.testing.assert_allclose(F.erf(z.astype(np.float32)), expected, rtol=0, atol=5e-7)


def test_no_grad_records_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = (x * 2).sum()
    assert not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    z = (x * 2).sum()
    assert z.requires_grad


def test_backward_needs_a_scalar_or_a_gradient():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="single number"):
        (x * 2).backward()


def test_a_tensor_used_twice_accumulates_and_leaf_grads_accumulate_across_calls():
    a = Tensor(np.array([-4.0, 1.0]), requires_grad=True)
    b = a + a
    (b * b).sum().backward()
    np.testing.assert_array_equal(a.grad, 8 * a.data)
    (a * 1.0).sum().backward()
    np.testing.assert_array_equal(a.grad, 8 * a.data + 1)


def test_only_floating_tensors_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.arange(3), requires_grad=True)


def test_a_100000_op_chain_backpropagates():
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.backward()
    assert x.grad == 1.0
