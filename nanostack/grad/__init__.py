"""grad: backpropagation you can read, on numpy alone.

Value (scalar.py) is a single number with reverse-mode autodiff; Tensor (tensor.py) does the same
for numpy arrays; functional.py holds fused composite ops (softmax, cross_entropy, layer_norm ...);
nn.py and optim.py build layers and optimizers on Tensor (models/gpt_numpy.py builds the GPT from
them); graph.py draws a computation graph.
"""
from nanostack.grad import functional
from nanostack.grad.graph import draw_graph
from nanostack.grad.scalar import Value
from nanostack.grad.tensor import Tensor, concatenate, no_grad, stack, where

__all__ = ["Value", "Tensor", "no_grad", "functional", "concatenate", "stack", "where", "draw_graph"]
