"""max_pool2d and the fused LRN -> max_pool2d: autograd Functions and torch's argument rules."""

import torch
from torch.autograd.function import once_differentiable

from ..kernels.launch import accumulator_dtype
from ..kernels.lrn import lrn_backward
from ..kernels.pool import max_pool2d_backward, max_pool2d_forward
from .._args import check_device, check_float_dtype
from .lrn import _as_ncs, _empty_like


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


def _out_size(size, k, pad, stride, dil, ceil_mode):
    """torch's pooling_output_shape."""
    out = (size + 2 * pad - dil * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


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
    out = tuple(_out_size(size, k, p, s, d, ceil_mode)
                for size, k, p, s, d in zip((h, w), kernel, padding, stride, dilation))
    if out[0] < 1 or out[1] < 1:
        c = input.shape[-3]
        raise RuntimeError(f"Given input size: ({c}x{h}x{w}). Calculated output size: "
                           f"({c}x{out[0]}x{out[1]}). Output size is too small")
    return kernel, stride, padding, dilation, out


class MaxPool2dFunction(torch.autograd.Function):
    """Max-pool of 4-D x, optionally after a fused LRN (`lrn` = (size, alpha, beta, k) or None).

    Saves the input and the int64 argmax indices; the backward gathers through them. Fused, the
    backward is two kernels: the pool's gather writes the LRN output's gradient once (fp32, full
    size), then the LRN backward reads it with the input. One kernel would have to recompute that
    gather for each of the `size` channels whose window holds a channel (5x the gathers, and the
    static model put it at 2x the two kernels' time); the extra full-size fp32 write and read cost
    far less.
    """

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation, out_hw, lrn):
        y, idx = max_pool2d_forward(x, kernel, stride, padding, dilation, out_hw, lrn)
        ctx.save_for_backward(x, idx)
        ctx.geometry = (kernel, stride, padding, dilation, lrn)
        ctx.mark_non_differentiable(idx)
        return y, idx

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, _didx):
        x, idx = ctx.saved_tensors
        kernel, stride, padding, dilation, lrn = ctx.geometry
        if lrn is None:
            dx = max_pool2d_backward(dy, idx, x, kernel, stride, padding, dilation)
        else:
            g = max_pool2d_backward(dy, idx, x, kernel, stride, padding, dilation,
                                    out_dtype=accumulator_dtype(x.dtype))
            dx = _empty_like(x)
            lrn_backward(_as_ncs(x), _as_ncs(g), _as_ncs(dx), *lrn)
        return dx, None, None, None, None, None, None


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, lrn=None, op="max_pool2d"):
    geometry = pool_geometry(input, kernel_size, stride, padding, dilation, ceil_mode)
    check_device(op, input)
    check_float_dtype(input, op)
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    y, idx = MaxPool2dFunction.apply(x, *geometry, lrn)
    if unbatched:
        y, idx = y.squeeze(0), idx.squeeze(0)
    return (y, idx) if return_indices else y
