"""linear with fused bias, ReLU and dropout; standalone relu and dropout: autograd Functions.

Dropout masks are drawn from a seed taken from torch's default generator, so
`torch.manual_seed` makes them reproducible; backward passes redraw them from the same seed.
"""

import math

import torch
from torch.autograd.function import once_differentiable

from ..kernels import activation
from ..kernels.launch import memory_format_of
from ..kernels.gemm import linear_forward, linear_input_grad, linear_weight_bias_grad
from .._args import check_activation, check_device, check_float_dtype, check_same_dtype


def draw_seed():
    """A Philox seed from torch's default CPU generator (no device sync)."""
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


def check_p(p):
    if p != p:  # NaN: torch's C++ check raises a RuntimeError, its Python range check a ValueError
        raise RuntimeError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return float(p)


class LinearFunction(torch.autograd.Function):
    """y = dropout(relu?(x @ w^T + b)) for 2-D x. Saves x, w and, with a ReLU, y."""

    @staticmethod
    def forward(ctx, x, weight, bias, relu, p, seed):
        allow_tf32 = torch.backends.cuda.matmul.allow_tf32
        y = linear_forward(x, weight, bias, relu, p, seed, allow_tf32)
        ctx.save_for_backward(x, weight, y if relu else None)
        ctx.config = (relu, p, seed, allow_tf32)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight, y = ctx.saved_tensors
        relu, p, seed, allow_tf32 = ctx.config
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = linear_input_grad(dy, y, weight, relu, p, seed, allow_tf32)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            dw, db = linear_weight_bias_grad(dy, y, x, relu, p, seed, ctx.needs_input_grad[1],
                                             ctx.needs_input_grad[2], allow_tf32)
        return dx, dw, db, None, None, None


def linear(input, weight, bias=None, activation=None, dropout=0.0, training=True):
    relu = check_activation(activation) == "relu"
    p = check_p(dropout) if training else 0.0
    check_device("linear", input, weight, bias)
    check_float_dtype(input, "linear")
    check_same_dtype(input, "Input", weight, "weight")
    check_same_dtype(input, "Input", bias, "bias")
    if weight.dim() != 2:
        raise RuntimeError(f"tritonalex linear: expected a 2-D weight, got {list(weight.shape)}")
    if input.dim() == 0:
        raise RuntimeError(f"both arguments to linear need to be at least 1D, but they are 0D "
                           f"and {weight.dim()}D")
    if input.shape[-1] != weight.shape[1]:
        shape = "x".join(str(s) for s in input.shape)
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({shape} and "
                           f"{weight.shape[1]}x{weight.shape[0]})")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise RuntimeError(f"tritonalex linear: expected bias of size [{weight.shape[0]}], "
                           f"got {list(bias.shape)}")
    x = input.reshape(math.prod(input.shape[:-1]), input.shape[-1])  # -1 is ambiguous when K == 0
    seed = draw_seed() if p > 0 else 0
    # The kernels read the bias as a contiguous vector: a strided or expanded one is copied first
    # (a differentiable copy: its gradient reaches the original).
    bias = bias.contiguous() if bias is not None else None
    y = LinearFunction.apply(x, weight, bias, relu, p, seed)
    return y.reshape(*input.shape[:-1], weight.shape[0])


def _dense(t, fmt=None):
    """t as dense memory in `fmt` (default: its own, channels_last or contiguous): the elementwise
    kernels run over flat storage, so a channels_last tensor stays channels_last (a copy only when
    t is neither: strided, expanded)."""
    return t.contiguous(memory_format=fmt or memory_format_of(t))


def _in_place(x, compute):
    """Write compute(dense x) back into x; the kernels work on dense memory."""
    if x.is_contiguous(memory_format=memory_format_of(x)):
        return compute(x, x)
    return x.copy_(compute(_dense(x), None))


class ReLUFunction(torch.autograd.Function):
    """relu; in place it overwrites (and marks dirty) the input, as torch's relu_ does."""

    @staticmethod
    def forward(ctx, x, inplace):
        if inplace:
            y = _in_place(x, activation.relu_forward)
            ctx.mark_dirty(x)
        else:
            y = activation.relu_forward(_dense(x))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        return activation.relu_backward(y, _dense(dy, memory_format_of(y))), None


class DropoutFunction(torch.autograd.Function):
    """dropout with its mask drawn from `seed`; the backward redraws it (linear in the input)."""

    @staticmethod
    def forward(ctx, x, p, seed, inplace):
        # The mask is drawn per storage offset: the backward reads dy in the same layout.
        ctx.config = (p, seed, memory_format_of(x))
        if inplace:
            ctx.mark_dirty(x)
            return _in_place(x, lambda t, out: activation.dropout(t, p, seed, out=out))
        return activation.dropout(_dense(x), p, seed)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        p, seed, fmt = ctx.config
        return activation.dropout(_dense(dy, fmt), p, seed), None, None, None


def relu(input, inplace=False):
    check_device("relu", input)
    check_float_dtype(input, "relu")
    return ReLUFunction.apply(input, inplace)


def dropout(input, p=0.5, training=True, inplace=False):
    p = check_p(p)
    check_device("dropout", input)
    check_float_dtype(input, "dropout")
    if not training or p == 0.0:
        return input
    return DropoutFunction.apply(input, p, draw_seed(), inplace)
