"""draw_graph: DOT text always; SVG/PNG through graphviz's `dot`, with a clear error when it is missing."""
import os
import shutil

import numpy as np
import pytest

from nanostack.errors import UserError
from nanostack.grad import Tensor, Value, draw_graph
from nanostack.grad import functional as F


def test_dot_of_a_scalar_graph_names_every_value_and_op(tmp_path):
    a, b = Value(2.0), Value(-3.0)
    c = (a * b + a).tanh()
    c.backward()
    text = draw_graph(c, tmp_path / "g.dot").read_text()
    assert text.startswith("digraph")
    assert text.count("shape=record") == 5  # a, b, a*b, a*b+a, tanh
    for op in ('"*"', '"+"', '"tanh"'):
        assert f"label={op}" in text
    assert f"grad {a.grad:.4f}" in text
    assert text.count("->") == 2 * 3 + 2  # each op: one edge per input and one to its result


def test_dot_of_a_tensor_graph_names_ops_and_shapes(tmp_path):
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    w = Tensor(np.ones((4, 3)), requires_grad=True)
    loss = F.softmax(F.linear(x, w), axis=-1).sum()
    text = draw_graph(loss, tmp_path / "g.dot").read_text()
    for label in ('"linear"', '"softmax"', '"sum"', "2×3 float64", "4×3 float64", "scalar"):
        assert label in text


def test_svg_is_drawn_by_graphviz(tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("graphviz's dot program is not installed (apt-get install graphviz)")
    a = Value(1.5)
    path = draw_graph((a * a).exp(), tmp_path / "g.svg")
    assert "<svg" in path.read_text()


def test_a_fake_dot_receives_the_graph(tmp_path, monkeypatch):
    """The render path without graphviz: a stand-in `dot` copies its input to the output file."""
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n# called as: dot -Tpng -o PATH\ncat > "$3"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent) + os.pathsep + os.environ["PATH"])
    path = draw_graph(Value(1.0) + 2, tmp_path / "g.png")
    assert path.read_text().startswith("digraph")


def test_missing_graphviz_and_bad_suffix_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    with pytest.raises(UserError, match="install graphviz"):
        draw_graph(Value(1.0) * 2, tmp_path / "g.svg")
    with pytest.raises(UserError, match="ending in .dot"):
        draw_graph(Value(1.0), tmp_path / "g.jpg")
    with pytest.raises(TypeError, match="Value or a Tensor"):
        draw_graph(3.0, tmp_path / "g.dot")
