"""max_pool2d and the fused LRN -> max_pool2d: `torch.ops.tritonalex.max_pool2d_with_indices`,
`lrn_max_pool2d_with_indices`, their backward ops, and torch's argument rules.

`relu_input` (the last argument of every op here) only changes the backward: the input is a
ReLU's output, and the input gradient is zeroed where it is <= 0 (the ReLU's derivative, which
its conv then skips: ops/conv.py)."""

from typing import List, Tuple

import torch
from torch import Tensor

from ..kernels.geometry import out_size
from ..kernels.launch import accumulator_dtype
from ..kernels.lrn import lrn_backward
from ..kernels.pool import (
    lrn_max_pool2d_backward,
    max_pool2d_backward,
    max_pool2d_forward,
    tap_code_dtype,
)
from .._args import check_device, check_float_dtype
from ._library import define, like
from .lrn import as_ncs, empty_like


def _pool_param(value, name, default=None):
    """torch's max_pool2d reading of an int / 1-tuple / 2-tuple argument."""
    if value is None or (default is not None and isinstance(value, (tuple, list)) and len(value) == 0):
        return default
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) == 1 and isinstance(value[0], int):
        return value * 2
    if len(value) == 2 and all(isinstance(v, int) for v in value):
        return value
    article = "be omitted, " if name == "stride" else ""
    raise RuntimeError(f"max_pool2d: {name} must either {article}a single int, or a tuple of two ints")


def pool_geometry(input, kernel_size, stride, padding, dilation, ceil_mode):
    """Normalized (kernel, stride, padding, dilation, (OH, OW)), with torch's checks and messages."""
    kernel = _pool_param(kernel_size, "kernel_size")
    stride = _pool_param(stride, "stride", default=kernel)
    padding = _pool_param(padding, "padding")
    dilation = _pool_param(dilation, "dilation")
    if input.dim() not in (3, 4) or any(s == 0 for s in input.shape[-3:]):
        raise RuntimeError("non-empty 3D or 4D (batch mode) tensor expected for input")
    if any(k <= 0 for k in kernel):
        raise RuntimeError(f"kernel size should be greater than zero, but got kH: {kernel[0]} "
                           f"kW: {kernel[1]}")
    if any(s <= 0 for s in stride):
        raise RuntimeError("stride should not be zero")
    if any(d <= 0 for d in dilation):
        raise RuntimeError(f"dilation should be greater than zero, but got dilationH: {dilation[0]} "
                           f"dilationW: {dilation[1]}")
    for k, p, d in zip(kernel, padding, dilation):
        if p < 0:
            raise RuntimeError(f"pad must be non-negative, but got pad: {p}")
        if p > (d * (k - 1) + 1) // 2:
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got "
                               f"pad={p}, kernel_size={k} and dilation={d}")
    h, w = input.shape[-2:]
    out = tuple(out_size(size, k, s, p, d, ceil_mode)
                for size, k, p, s, d in zip((h, w), kernel, padding, stride, dilation))
    if out[0] < 1 or out[1] < 1:
        c = input.shape[-3]
        raise RuntimeError(f"Given input size: ({c}x{h}x{w}). Calculated output size: "
                           f"({c}x{out[0]}x{out[1]}). Output size is too small")
    return kernel, stride, padding, dilation, out


def _forward(x: Tensor, kernel: List[int], stride: List[int], padding: List[int],
             dilation: List[int], out_hw: List[int], relu_input: bool,
             flat_indices: bool = True) -> Tuple[Tensor, Tensor]:
    """`flat_indices`: torch's int64 indices ih*W + iw; else tap codes kh*KW + kw (the backward's,
    see kernels/pool.py's tap_code_dtype)."""
    return max_pool2d_forward(x, kernel, stride, padding, dilation, out_hw,
                              flat_indices=flat_indices)


def _lrn_forward(x: Tensor, kernel: List[int], stride: List[int], padding: List[int],
                 dilation: List[int], out_hw: List[int], size: int, alpha: float, beta: float,
                 k: float, groups: int, relu_input: bool,
                 flat_indices: bool = True) -> Tuple[Tensor, Tensor]:
    return max_pool2d_forward(x, kernel, stride, padding, dilation, out_hw,
                              (size, alpha, beta, k, groups), flat_indices)


def _forward_fake(x, kernel, stride, padding, dilation, out_hw, relu_input, flat_indices=True):
    shape = (*x.shape[:2], *out_hw)
    return like(x, shape), like(x, shape, torch.int64 if flat_indices else tap_code_dtype(x.dtype))


def _lrn_forward_fake(x, kernel, stride, padding, dilation, out_hw, size, alpha, beta, k, groups,
                      relu_input, flat_indices=True):
    return _forward_fake(x, kernel, stride, padding, dilation, out_hw, relu_input, flat_indices)


def _backward_impl(dy: Tensor, idx: Tensor, x: Tensor, kernel: List[int], stride: List[int],
                   padding: List[int], dilation: List[int], relu_input: bool) -> Tensor:
    return max_pool2d_backward(dy, idx, x, kernel, stride, padding, dilation,
                               mask_input=relu_input)


def _lrn_backward_impl(dy: Tensor, idx: Tensor, x: Tensor, kernel: List[int], stride: List[int],
                       padding: List[int], dilation: List[int], size: int, alpha: float,
                       beta: float, k: float, groups: int, relu_input: bool) -> Tensor:
    """One kernel where the LRN window fits a walk along the channels (kernels/tiles.py's walks,
    AlexNet's 5): the gather of the pooled gradient happens once per element, the LRN backward
    takes it from registers. Wider windows, two kernels: the pool's gather writes the LRN output's
    gradient once (fp32, full size), then the sliding-window LRN backward reads it with the input
    (one sliding kernel would redo the gather for each of the `size` channels whose window holds
    a channel)."""
    lrn = (size, alpha, beta, k, groups)
    dx = lrn_max_pool2d_backward(dy, idx, x, kernel, stride, padding, dilation, lrn, relu_input)
    if dx is not None:  # one kernel
        return dx
    g = max_pool2d_backward(dy, idx, x, kernel, stride, padding, dilation,
                            out_dtype=accumulator_dtype(x.dtype))
    dx = empty_like(x)
    lrn_backward(as_ncs(x), as_ncs(g), as_ncs(dx), size, alpha, beta, k, groups, relu_input)
    return dx


max_pool2d_op = define("max_pool2d_with_indices", _forward, _forward_fake)
lrn_max_pool2d_op = define("lrn_max_pool2d_with_indices", _lrn_forward, _lrn_forward_fake)
max_pool2d_backward_op = define("max_pool2d_backward", _backward_impl,
                                lambda dy, idx, x, *geometry: like(x, dtype=dy.dtype))
lrn_max_pool2d_backward_op = define("lrn_max_pool2d_backward", _lrn_backward_impl,
                                    lambda dy, idx, x, *geometry: like(x))


def _setup_context(ctx, inputs, output):
    """Saves the input and the argmax indices (either format: the backward reads their dtype);
    the backward gathers through them."""
    ctx.save_for_backward(inputs[0], output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)  # the indices' gradient: never filled with zeros
    # kernel, stride, padding, dilation (+ LRN), relu_input
    ctx.geometry = inputs[1:5] + inputs[6:-1]
    ctx.inputs = len(inputs)


def _backward(ctx, dy, _didx):
    x, idx = ctx.saved_tensors
    if dy is None:
        dx = None
    elif len(ctx.geometry) == 5:
        dx = max_pool2d_backward_op(dy, idx, x, *ctx.geometry)
    else:
        dx = lrn_max_pool2d_backward_op(dy, idx, x, *ctx.geometry)
    return (dx,) + (None,) * (ctx.inputs - 1)


max_pool2d_op.register_autograd(_backward, setup_context=_setup_context)
lrn_max_pool2d_op.register_autograd(_backward, setup_context=_setup_context)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, lrn=None, op="max_pool2d", relu_input=False):
    geometry = pool_geometry(input, kernel_size, stride, padding, dilation, ceil_mode)
    check_device(op, input)
    check_float_dtype(input, op)
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    kernel, stride, padding, dilation, out_hw = (list(g) for g in geometry)
    # torch's int64 indices only when asked for; else the tap code (2 bytes per 16-bit output).
    flat = bool(return_indices) or kernel[0] * kernel[1] > 32768
    if lrn is None:
        y, idx = max_pool2d_op(x, kernel, stride, padding, dilation, out_hw, bool(relu_input),
                               flat)
    else:
        y, idx = lrn_max_pool2d_op(x, kernel, stride, padding, dilation, out_hw, *lrn,
                                   bool(relu_input), flat)
    if unbatched:
        y, idx = y.squeeze(0), idx.squeeze(0)
    return (y, idx) if return_indices else y
