"""linear with fused bias, ReLU and dropout; standalone relu and dropout: library ops
(`torch.ops.tritonalex.linear`, `relu`, `relu_`, `dropout`, `dropout_` and the backward ops).

Dropout masks come from a seed tensor drawn from the input device's generator (see `draw_seed`),
so `torch.manual_seed` makes them reproducible; the backward redraws them from the same seed.
In place under autograd (relu_/dropout_ on a tensor that requires grad) is computed out of place
and copied back, which autograd records as torch's in-place ops are; otherwise truly in place.
"""

import math

from typing import List, Optional

import torch
from torch import Tensor

from ..kernels import activation
from ..kernels.launch import memory_format_of
from ..kernels.gemm import linear_forward, linear_input_grad, linear_weight_bias_grad
from .._args import check_activation, check_device, check_float_dtype, check_parameter_dtypes
from ._library import define, like


def draw_seeds(count, device):
    """`count` Philox seeds drawn from `device`'s generator in one kernel, as a tensor the kernels
    read (one element each: pass `seeds[i:i + 1]`): no host sync, traced by torch.compile as a
    random op (new masks per call) and, on CUDA, safe in a CUDA graph (each replay draws anew).
    `torch.manual_seed` reproduces them. The compiled net draws all its dropout seeds so."""
    return torch.randint(0, 2**31 - 1, (count,), device=device)


def draw_seed(device):
    """One seed (see `draw_seeds`)."""
    return draw_seeds(1, device)


def check_seed(seed, device, fn):
    """A seed passed in: a one-element int64 tensor on the input's device."""
    if not isinstance(seed, torch.Tensor) or seed.dtype != torch.int64 or seed.numel() != 1:
        raise TypeError(f"{fn}: seed must be a one-element int64 tensor (see draw_seeds), got "
                        f"{seed if not isinstance(seed, torch.Tensor) else seed.dtype}")
    if seed.device != device:
        raise RuntimeError(f"{fn}: seed is on {seed.device}, the input on {device}")
    return seed


def check_p(p):
    if p != p:  # NaN: torch's C++ check raises a RuntimeError, its Python range check a ValueError
        raise RuntimeError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return float(p)


def _forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], relu: bool, p: float,
             seed: Optional[Tensor], allow_tf32: bool,
             out_dtype: Optional[torch.dtype] = None) -> Tensor:
    return linear_forward(x, weight, bias, relu, p, seed, allow_tf32, out_dtype)


def _input_grad(dy: Tensor, y: Optional[Tensor], weight: Tensor, relu: bool, p: float,
                seed: Optional[Tensor], allow_tf32: bool,
                dtype: Optional[torch.dtype] = None) -> Tensor:
    """dx in `dtype`, the forward input's (default dy's: they differ after an fp32 output)."""
    return linear_input_grad(dy, y, weight, relu, p, seed, allow_tf32, dtype)


def _weight_bias_grad(dy: Tensor, y: Optional[Tensor], x: Tensor, weight: Tensor, relu: bool,
                      p: float, seed: Optional[Tensor], need_weight: bool, need_bias: bool,
                      allow_tf32: bool) -> List[Tensor]:
    """[dw] + [db] in the weight's dtype, each only when needed (a schema has no optional
    outputs)."""
    dw, db = linear_weight_bias_grad(dy, y, x, relu, p, seed, need_weight, need_bias, allow_tf32,
                                     param_dtype=weight.dtype)
    return [t for t in (dw, db) if t is not None]


def _weight_bias_grad_fake(dy, y, x, weight, relu, p, seed, need_weight, need_bias, allow_tf32):
    return ([weight.new_empty(weight.shape)] if need_weight else []) + \
        ([weight.new_empty(weight.shape[:1])] if need_bias else [])


linear_op = define("linear", _forward,
                   lambda x, weight, bias, relu, p, seed, allow_tf32, out_dtype=None: x.new_empty(
                       (x.shape[0], weight.shape[0]), dtype=out_dtype or x.dtype))
linear_input_grad_op = define("linear_input_grad", _input_grad,
                              lambda dy, y, weight, relu, p, seed, allow_tf32, dtype=None:
                              dy.new_empty((dy.shape[0], weight.shape[1]), dtype=dtype or dy.dtype))
linear_weight_bias_grad_op = define("linear_weight_bias_grad", _weight_bias_grad,
                                    _weight_bias_grad_fake)


def _setup_linear(ctx, inputs, output):
    x, weight, bias, relu, p, seed, allow_tf32, _ = inputs
    # With the ReLU fused the saved output gives the whole mask (see kernels/gemm.py).
    ctx.save_for_backward(x, weight, output if relu else None, seed)
    ctx.config = (relu, p, allow_tf32)


def _linear_backward(ctx, dy):
    x, weight, y, seed = ctx.saved_tensors
    relu, p, allow_tf32 = ctx.config
    dx = dw = db = None
    if ctx.needs_input_grad[0]:
        dx = linear_input_grad_op(dy, y, weight, relu, p, seed, allow_tf32,
                                  x.dtype if dy.dtype != x.dtype else None)
    need_w, need_b = ctx.needs_input_grad[1:3]
    if need_w or need_b:
        grads = linear_weight_bias_grad_op(dy, y, x, weight, relu, p, seed, need_w, need_b,
                                           allow_tf32)
        dw = grads.pop(0) if need_w else None
        db = grads.pop(0) if need_b else None
    return dx, dw, db, None, None, None, None, None


linear_op.register_autograd(_linear_backward, setup_context=_setup_linear)


def linear(input, weight, bias=None, activation=None, dropout=0.0, training=True, mixed=False,
           seed=None, out_dtype=None):
    """`mixed` (inside autocast): weight and bias may be wider than the input. `seed`: the
    dropout mask's seed (a one-element int64 tensor), instead of one drawn here. `out_dtype`:
    the output's floating dtype (default the input's)."""
    if out_dtype is not None and out_dtype not in (torch.float16, torch.bfloat16, torch.float32,
                                                   torch.float64):
        raise TypeError(f"linear: out_dtype must be a floating dtype, got {out_dtype}")
    relu = check_activation(activation) == "relu"
    p = check_p(dropout) if training else 0.0
    check_device("linear", input, weight, bias)
    check_float_dtype(input, "linear")
    check_parameter_dtypes(input, weight, bias, mixed)
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
    if p > 0:
        seed = draw_seed(x.device) if seed is None else check_seed(seed, x.device, "linear")
    else:
        seed = None
    # The kernels read the bias as a contiguous vector: a strided or expanded one is copied first
    # (a differentiable copy: its gradient reaches the original).
    bias = bias.contiguous() if bias is not None else None
    y = linear_op(x, weight, bias, relu, p, seed, torch.backends.cuda.matmul.allow_tf32,
                  out_dtype if out_dtype != x.dtype else None)
    return y.reshape(*input.shape[:-1], weight.shape[0])


def _dense(t, fmt=None):
    """t as dense memory in `fmt` (default: its own, channels_last or contiguous): the elementwise
    kernels run over flat storage, so a channels_last tensor stays channels_last (a copy only when
    t is neither: strided, expanded)."""
    return t.contiguous(memory_format=fmt or memory_format_of(t))


def _relu(x: Tensor) -> Tensor:
    return activation.relu_forward(_dense(x))


def _relu_(x: Tensor) -> None:
    _in_place(x, activation.relu_forward)


def _relu_backward(y: Tensor, dy: Tensor) -> Tensor:
    return activation.relu_backward(y, _dense(dy, memory_format_of(y)))


def _dropout(x: Tensor, p: float, seed: Tensor) -> Tensor:
    """The mask is drawn per storage offset: the backward passes dy in the forward's layout."""
    return activation.dropout(_dense(x), p, seed)


def _dropout_(x: Tensor, p: float, seed: Tensor) -> None:
    _in_place(x, lambda t, out: activation.dropout(t, p, seed, out=out))


def _in_place(x, compute):
    """Write compute(dense x, out) into x; the kernels work on dense memory."""
    if x.is_contiguous(memory_format=memory_format_of(x)):
        compute(x, x)
    else:
        x.copy_(compute(_dense(x), None))


relu_op = define("relu", _relu, lambda x: like(x))
relu_inplace_op = define("relu_", _relu_, lambda x: None, mutates_args=("x",))
relu_backward_op = define("relu_backward", _relu_backward, lambda y, dy: like(y, dtype=dy.dtype))
dropout_op = define("dropout", _dropout, lambda x, p, seed: like(x))
dropout_inplace_op = define("dropout_", _dropout_, lambda x, p, seed: None, mutates_args=("x",))

relu_op.register_autograd(lambda ctx, dy: relu_backward_op(ctx.saved_tensors[0], dy),
                          setup_context=lambda ctx, inputs, output: ctx.save_for_backward(output))


def _setup_dropout(ctx, inputs, output):
    ctx.save_for_backward(inputs[2])
    ctx.p, ctx.format = inputs[1], memory_format_of(output)


def _dropout_backward(ctx, dy):
    """dropout is linear in its input: its backward is the same mask applied to dy."""
    (seed,) = ctx.saved_tensors
    return dropout_op(dy.contiguous(memory_format=ctx.format), ctx.p, seed), None, None


dropout_op.register_autograd(_dropout_backward, setup_context=_setup_dropout)


def _needs_autograd(x):
    return torch.is_grad_enabled() and x.requires_grad


def relu(input, inplace=False):
    check_device("relu", input)
    check_float_dtype(input, "relu")
    if not inplace:
        return relu_op(input)
    if _needs_autograd(input):  # torch's relu_ under autograd: computed, then copied in
        return input.copy_(relu_op(input))
    relu_inplace_op(input)
    return input


def dropout(input, p=0.5, training=True, inplace=False, seed=None):
    p = check_p(p)
    check_device("dropout", input)
    check_float_dtype(input, "dropout")
    if not training or p == 0.0:
        return input
    seed = draw_seed(input.device) if seed is None else check_seed(seed, input.device, "dropout")
    if not inplace:
        return dropout_op(input, p, seed)
    if _needs_autograd(input):
        return input.copy_(dropout_op(input, p, seed))
    dropout_inplace_op(input, p, seed)
    return input
