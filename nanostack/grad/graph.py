"""draw_graph: a picture of the computation behind a Value or a Tensor.

Each value is a box (its data and gradient, or its shape for a Tensor) and each op an oval
between its inputs and its result, as in micrograd's trace_graph. The graph is written in
graphviz's DOT language; `.dot` paths get that text, `.svg` and `.png` are drawn by graphviz's
`dot` program, which must be installed (apt-get install graphviz, brew install graphviz).
"""
import shutil
import subprocess
from pathlib import Path

from nanostack.errors import UserError
from nanostack.grad.scalar import Value
from nanostack.grad.tensor import Tensor

FORMATS = (".dot", ".svg", ".png")
# Tensor ops are named after the function that made their backward closure
_SYMBOLS = {"__add__": "+", "__mul__": "*", "__truediv__": "/", "__pow__": "**", "__neg__": "neg",
            "__matmul__": "@", "__getitem__": "[]", "_matmul_backward": "@"}


def draw_graph(root, path) -> Path:
    """Write the graph that computed `root` (a Value or Tensor) to path (.dot, .svg or .png)."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise UserError(f"cannot draw a graph to {path.name}", f"give a path ending in {', '.join(FORMATS)}")
    dot = to_dot(root)
    if path.suffix == ".dot":
        path.write_text(dot, encoding="utf-8")
        return path
    program = shutil.which("dot")
    if program is None:
        raise UserError("drawing a graph needs graphviz's `dot` program, which is not installed",
                        "install graphviz (apt-get install graphviz, brew install graphviz), or write a .dot file")
    done = subprocess.run([program, f"-T{path.suffix[1:]}", "-o", str(path)], input=dot, text=True,
                          capture_output=True)
    if done.returncode != 0:
        raise UserError(f"graphviz could not draw {path}: {done.stderr.strip()}", "check the path is writable")
    return path


def to_dot(root) -> str:
    """The graph as DOT text: left to right, inputs before the ops that use them."""
    lines = ["digraph G {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];']
    for node in _nodes(root):
        name = f"n{id(node)}"
        lines.append(f'  {name} [shape=record, label="{{ {_describe(node)} }}"];')
        inputs, op = _inputs_and_op(node)
        if inputs:
            lines.append(f'  {name}_op [shape=oval, label="{op}"];')
            lines.append(f"  {name}_op -> {name};")
            lines.extend(f"  n{id(i)} -> {name}_op;" for i in inputs)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _nodes(root):
    if not isinstance(root, (Value, Tensor)):
        raise TypeError(f"draw_graph needs a Value or a Tensor, not {type(root).__name__}")
    seen, stack = {id(root): root}, [root]
    while stack:
        for i in _inputs_and_op(stack.pop())[0]:
            if id(i) not in seen:
                seen[id(i)] = i
                stack.append(i)
    return list(seen.values())


def _inputs_and_op(node):
    if isinstance(node, Value):
        return [i for i in (node._a, node._b) if i is not None], node._op
    if not node._parents:
        return [], ""
    qualname = node._backward.__qualname__.split(".<locals>")[0].split(".")[-1]
    return list(node._parents), _SYMBOLS.get(qualname, qualname.strip("_"))


def _describe(node) -> str:
    if isinstance(node, Value):
        return f"data {node.data:.4f} | grad {node.grad:.4f}"
    shape = "×".join(map(str, node.shape)) or "scalar"
    grad = " | has grad" if node.grad is not None else ""
    return f"{shape} {node.dtype}{grad}"
