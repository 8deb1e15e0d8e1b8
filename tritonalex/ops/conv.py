"""conv2d with fused bias and ReLU: the autograd Function and torch-compatible argument handling.

The forward saves the input and weight for the weight and input gradients, and, when the ReLU is
fused, its own output: the backward kernels zero the output gradient where that output is <= 0,
so the pre-activation never needs to be stored. Double backward is not supported.
"""

import torch
from torch.autograd.function import once_differentiable

from ..kernels.conv import conv2d_forward, conv2d_input_grad, conv2d_weight_bias_grad
from .._args import (
    check_activation,
    check_device,
    check_float_dtype,
    check_same_dtype,
    expand_param,
)


class Conv2dFunction(torch.autograd.Function):
    """y = relu?(conv2d(x, weight) + bias) on 4-D x; padding as ((top, bottom), (left, right))."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, relu):
        allow_tf32 = torch.backends.cudnn.allow_tf32
        y = conv2d_forward(x, weight, bias, stride, padding, dilation, groups, relu, allow_tf32)
        ctx.save_for_backward(x, weight, y if relu else None)
        ctx.geometry = (stride, padding, dilation, groups, relu)
        ctx.allow_tf32 = allow_tf32
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight, y = ctx.saved_tensors
        stride, padding, dilation, groups, relu = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx = dw = db = None
        if need_x:
            dx = conv2d_input_grad(dy, y, weight, x, stride, padding, dilation, groups, relu,
                                   ctx.allow_tf32)
        if need_w or need_b:
            dw, db = conv2d_weight_bias_grad(dy, y, x, weight.shape, stride, padding, dilation,
                                             groups, relu, need_w, need_b, ctx.allow_tf32)
        return dx, dw, db, None, None, None, None, None


def _padding(padding, kernel, dilation, stride):
    """torch's padding argument as ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding != "same":
            raise RuntimeError(f"Invalid padding string: '{padding}'")
        if any(s != 1 for s in stride):
            raise RuntimeError("padding='same' is not supported for strided convolutions")
        # torch puts the odd element of the total padding after (bottom / right).
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return tuple((t // 2, t - t // 2) for t in totals)
    pad = expand_param(padding, "padding")
    if any(p < 0 for p in pad):
        raise RuntimeError("negative padding is not supported")
    return tuple((p, p) for p in pad)


def _check_shapes(x, weight, bias, groups, padding, dilation):
    if weight.dim() != 4:
        raise RuntimeError(f"weight should have at least three dimensions; expected 4-D weight "
                           f"for conv2d, but got weight of size {list(weight.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise TypeError(f"conv2d(): argument 'groups' (position 7) must be int, not "
                        f"{type(groups).__name__}")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    oc, c_per_group = weight.shape[:2]
    if oc == 0:
        raise RuntimeError(f"Given groups={groups}, expected weight to be at least {groups} at "
                           f"dimension 0, but got weight of size {list(weight.shape)} instead")
    if oc % groups != 0:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at "
                           f"dimension 0, but got weight of size {list(weight.shape)} instead")
    if x.shape[1] != c_per_group * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {list(weight.shape)}, expected "
                           f"input{list(x.shape)} to have {c_per_group * groups} channels, but got "
                           f"{x.shape[1]} channels instead")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != oc):
        raise RuntimeError(f"Given weight of size {list(weight.shape)}, expected bias to be "
                           f"1-dimensional with {oc} elements, but got bias of size "
                           f"{list(bias.shape)} instead")
    padded = [x.shape[2 + i] + sum(padding[i]) for i in range(2)]
    extent = [dilation[i] * (weight.shape[2 + i] - 1) + 1 for i in range(2)]
    if padded[0] < extent[0] or padded[1] < extent[1]:
        raise RuntimeError(f"Calculated padded input size per channel: ({padded[0]} x {padded[1]}). "
                           f"Kernel size: ({extent[0]} x {extent[1]}). Kernel size can't be greater "
                           f"than actual input size")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """torch.nn.functional.conv2d on the Triton kernels, with an optional fused ReLU."""
    relu = check_activation(activation) == "relu"
    if input.dim() not in (3, 4):
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to conv2d, but got "
                           f"input of size: {list(input.shape)}")
    check_device("conv2d", input, weight, bias)
    check_float_dtype(input, "conv2d")
    check_same_dtype(input, "Input", weight, "weight")
    check_same_dtype(input, "Input", bias, "bias")
    stride = expand_param(stride, "stride")
    dilation = expand_param(dilation, "dilation")
    if any(s <= 0 for s in stride):
        raise RuntimeError("non-positive stride is not supported")
    if any(d <= 0 for d in dilation):
        raise RuntimeError(f"dilation should be greater than zero, but got {list(dilation)}")
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    if weight.dim() == 4:
        padding = _padding(padding, weight.shape[2:], dilation, stride)
    _check_shapes(x, weight, bias, groups, padding, dilation)
    # The kernels read the bias as a contiguous vector: a strided or expanded one is copied first
    # (a differentiable copy: its gradient reaches the original).
    bias = bias.contiguous() if bias is not None else None
    y = Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups, relu)
    return y.squeeze(0) if unbatched else y
