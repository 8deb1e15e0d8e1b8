"""conv2d with fused bias and ReLU: the library ops and torch-compatible argument handling.

`torch.ops.tritonalex.conv2d` and its two backward ops (see _library.py). The forward saves the
input and weight for the weight and input gradients, and, when the ReLU is fused, its own output:
the backward kernels zero the output gradient where that output is <= 0, so the pre-activation
never needs to be stored. Double backward is not supported.

The ReLU's derivative may instead be applied by the op that consumes the output (a pair of
keyword options; the compiler's pass `defer_relu_grad` sets both): `defer_relu_grad=True` here
(the backward takes dy as already zeroed where the output is <= 0, and saves no output) and
`relu_input=True` on the consumer (conv2d, local_response_norm, max_pool2d, lrn_max_pool2d: the
input gradient it returns is zeroed where its input is <= 0). Zeroing twice changes nothing, so
only `defer_relu_grad` without a masking consumer is wrong; the gradient a hook on the ReLU
output sees is the masked one.
"""

from typing import List, Optional

import torch
from torch import Tensor

from ..kernels.conv import conv2d_forward, conv2d_input_grad, conv2d_weight_bias_grad, output_size
from ..kernels.space_to_depth import space_to_depth
from ..kernels.geometry import out_size
from ..kernels.launch import INTERPRETING, memory_format_of
from .._args import (
    check_activation,
    check_device,
    check_float_dtype,
    check_parameter_dtypes,
    expand_param,
)
from ._library import define, like


def _pairs(padding):
    """[top, bottom, left, right] (the ops' schema) as ((top, bottom), (left, right))."""
    return ((padding[0], padding[1]), (padding[2], padding[3]))


def _forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], rounded: Optional[Tensor],
             stride: List[int], padding: List[int], dilation: List[int], groups: int, relu: bool,
             allow_tf32: bool, defer_relu_grad: bool, relu_input: bool,
             space_to_depth: int = 0) -> Tensor:
    """`rounded`: the weight already rounded to x's dtype (under autocast), read instead of it.
    `defer_relu_grad` and `relu_input` only change the backward (see the module docstring).
    `space_to_depth` = s: x is a space-to-depth input and `rounded` the stride-1 conv's weight
    made from `weight` (see `_to_space_to_depth`); the weight gradient comes back as weight's."""
    return conv2d_forward(x, weight if rounded is None else rounded, bias, tuple(stride),
                          _pairs(padding), tuple(dilation), groups, relu, allow_tf32)


def _forward_fake(x, weight, bias, rounded, stride, padding, dilation, groups, relu, allow_tf32,
                  defer_relu_grad, relu_input, space_to_depth=0):
    kernel = rounded.shape[2:] if space_to_depth else weight.shape[2:]
    oh, ow = output_size(*x.shape[2:], kernel, stride, _pairs(padding), dilation)
    return like(x, (x.shape[0], weight.shape[0], oh, ow))


def _input_grad(dy: Tensor, y: Optional[Tensor], weight: Tensor, x: Tensor, stride: List[int],
                padding: List[int], dilation: List[int], groups: int, relu: bool,
                allow_tf32: bool, mask_input: bool) -> Tensor:
    """`mask_input`: x is a ReLU's output; dx is zeroed where it is <= 0."""
    return conv2d_input_grad(dy, y, weight, x, tuple(stride), _pairs(padding), tuple(dilation),
                             groups, relu, allow_tf32, mask_input)


def _input_grad_fake(dy, y, weight, x, *geometry):
    return like(x, dtype=dy.dtype)


def _weight_bias_grad(dy: Tensor, y: Optional[Tensor], x: Tensor, weight: Tensor,
                      stride: List[int], padding: List[int], dilation: List[int], groups: int,
                      relu: bool, need_weight: bool, need_bias: bool,
                      allow_tf32: bool, space_to_depth: int = 0) -> List[Tensor]:
    """[dw] + [db], each only when needed (a schema has no optional outputs)."""
    dw, db = conv2d_weight_bias_grad(dy, y, x, weight.shape, tuple(stride), _pairs(padding),
                                     tuple(dilation), groups, relu, need_weight, need_bias,
                                     allow_tf32, param_dtype=weight.dtype,
                                     weight_format=memory_format_of(weight),
                                     space_to_depth=space_to_depth)
    return [t for t in (dw, db) if t is not None]


def _weight_bias_grad_fake(dy, y, x, weight, stride, padding, dilation, groups, relu, need_weight,
                           need_bias, allow_tf32, space_to_depth=0):
    return ([like(weight)] if need_weight else []) + \
        ([dy.new_empty(weight.shape[:1], dtype=weight.dtype)] if need_bias else [])


conv2d_op = define("conv2d", _forward, _forward_fake)
conv2d_input_grad_op = define("conv2d_input_grad", _input_grad, _input_grad_fake)
conv2d_weight_bias_grad_op = define("conv2d_weight_bias_grad", _weight_bias_grad,
                                    _weight_bias_grad_fake)


def _setup_context(ctx, inputs, output):
    (x, weight, bias, rounded, stride, padding, dilation, groups, relu, allow_tf32,
     defer_relu_grad, relu_input, space_to_depth) = inputs
    # With the ReLU fused, the backward kernels zero dy where the saved output is <= 0, unless the
    # consumer already did (defer_relu_grad). The input gradient reads the weight the forward
    # read; the weight gradient comes in the weight's dtype.
    relu = relu and not defer_relu_grad
    ctx.save_for_backward(x, weight, weight if rounded is None else rounded,
                          output if relu else None)
    ctx.geometry = (stride, padding, dilation, groups, relu, allow_tf32)
    ctx.relu_input, ctx.space_to_depth = relu_input, space_to_depth


def _backward(ctx, dy):
    x, weight, read, y = ctx.saved_tensors
    stride, padding, dilation, groups, relu, allow_tf32 = ctx.geometry
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    dx = dw = db = None
    if need_x:
        dx = conv2d_input_grad_op(dy, y, read, x, stride, padding, dilation, groups, relu,
                                  allow_tf32, ctx.relu_input)
    if need_w or need_b:
        grads = conv2d_weight_bias_grad_op(dy, y, x, weight, stride, padding, dilation, groups,
                                           relu, need_w, need_b, allow_tf32, ctx.space_to_depth)
        dw = grads.pop(0) if need_w else None
        db = grads.pop(0) if need_b else None
    return dx, dw, db, None, None, None, None, None, None, None, None, None, None


conv2d_op.register_autograd(_backward, setup_context=_setup_context)


def _space_to_depth(x: Tensor, s: int, pad_h: int, pad_w: int, u: int, v: int) -> Tensor:
    """x rearranged in s x s blocks (kernels/space_to_depth.py)."""
    return space_to_depth(x, s, pad_h, pad_w, u, v)


def _space_to_depth_fake(x, s, pad_h, pad_w, u, v):
    return torch.empty((x.shape[0], s * s * x.shape[1], u, v), dtype=x.dtype, device=x.device,
                       memory_format=torch.channels_last)


space_to_depth_op = define("space_to_depth", _space_to_depth, _space_to_depth_fake)


def _space_to_depth_setup(ctx, inputs, output):
    x, ctx.s, ctx.pad_h, ctx.pad_w, _, _ = inputs
    ctx.x_shape = x.shape


def _space_to_depth_backward(ctx, dy):
    """dx: each input element went to one output element (or none: the crop), so the gradient
    is dy rearranged back (torch views, one copy where they cannot stay views), cropped to x's
    rows and columns and zero where the crop dropped them. Training never needs it (conv1's
    input is the images)."""
    n, c, h, w = ctx.x_shape
    s, u, v = ctx.s, dy.shape[2], dy.shape[3]
    full = (dy.permute(0, 2, 3, 1).reshape(n, u, v, s, s, c).permute(0, 5, 1, 3, 2, 4)
            .reshape(n, c, s * u, s * v))
    # Rows of the padded image are pad_h + ih: keep those of x, pad those the crop dropped.
    dx = torch.nn.functional.pad(full, (-ctx.pad_w, w + ctx.pad_w - s * v,
                                        -ctx.pad_h, h + ctx.pad_h - s * u))
    return dx, None, None, None, None, None


space_to_depth_op.register_autograd(_space_to_depth_backward, setup_context=_space_to_depth_setup)


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


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None,
           mixed=False, defer_relu_grad=False, relu_input=False, rounded_weight=None):
    """torch.nn.functional.conv2d on the Triton kernels, with an optional fused ReLU. `mixed`
    (inside autocast): weight and bias may be wider than the input (see _args.autocast_dtype);
    `rounded_weight`: the weight already rounded to the input's dtype, read instead of rounding
    it here (the compiled net rounds all its conv weights in one cast per forward).
    `defer_relu_grad`, `relu_input`: the ReLU derivative's move (see the module docstring)."""
    relu = check_activation(activation) == "relu"
    if defer_relu_grad and not relu:
        raise ValueError("conv2d: defer_relu_grad=True needs activation='relu'")
    if input.dim() not in (3, 4):
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to conv2d, but got "
                           f"input of size: {list(input.shape)}")
    check_device("conv2d", input, weight, bias)
    check_float_dtype(input, "conv2d")
    check_parameter_dtypes(input, weight, bias, mixed)
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
    if rounded_weight is not None and (
            rounded_weight.shape != weight.shape or rounded_weight.dtype != x.dtype
            or rounded_weight.device != x.device):
        raise RuntimeError(f"conv2d: rounded_weight must be the weight ({list(weight.shape)}) in "
                           f"the input's dtype {x.dtype} on {x.device}, got "
                           f"{list(rounded_weight.shape)} {rounded_weight.dtype}")
    # Under autocast a wider weight is rounded once here (a conv re-reads its weight tile in every
    # output tile, so rounding it in the main loop would cost more than one small cast), outside
    # autograd: its gradient is computed straight into the weight's dtype.
    rounded, s2d = None, 0
    if _space_to_depth_pays(x, weight, stride, dilation, groups):
        # The kernels read the rearranged (and rounded) weight; the weight gradient is written
        # as the weight's own by the kernel (its epilogue maps the taps back).
        s2d = stride[0]
        x, rounded, padding, stride = _to_space_to_depth(x, weight.detach(), padding, stride)
    elif mixed and weight.dtype != x.dtype:
        rounded = rounded_weight if rounded_weight is not None else weight.detach().to(x.dtype)
    (pt, pb), (pl, pr) = padding
    y = conv2d_op(x, weight, bias, rounded, list(stride), [pt, pb, pl, pr], list(dilation), groups,
                  relu, torch.backends.cudnn.allow_tf32, defer_relu_grad, relu_input, s2d)
    return y.squeeze(0) if unbatched else y


def _space_to_depth_pays(x, weight, stride, dilation, groups):
    """A strided conv on few channels (AlexNet's conv1: 3 channels, 11x11, stride 4) wastes most
    of the tensor cores' work on padding its reduction; rewritten as a stride-1 conv on s*s times
    the channels (space-to-depth) it runs the fast channel-chunk loop with 84% of the work useful
    for conv1 (11x11 taps padded to 12x12). Not for fp64 on a GPU: it has no tensor cores to
    fill, and its FMA weight-gradient tile spills with the space-to-depth epilogue (Triton 3.6,
    sm_80); the interpreter still takes fp64 through it, so the float64 tests check its algebra
    (the direct (kw, c) loop fp64 runs on a GPU is tested by the other few-channel cases)."""
    sh, sw = stride
    kh, kw = weight.shape[2:]
    return (groups == 1 and dilation == (1, 1) and sh == sw and sh > 1 and x.shape[1] < 16
            and x.shape[1] * sh * sw >= 16 and kh >= sh and kw >= sw
            and (x.dtype != torch.float64 or INTERPRETING))


def _to_space_to_depth(x, weight, padding, stride):
    """(x2, w2, padding, stride) with conv2d(x, w, stride=s, padding) == conv2d(x2, w2, stride=1),
    w2 in x's dtype (rounded, under autocast) and outside autograd (the conv's weight gradient
    is computed as `weight`'s: see conv2d_weight_bias_grad's space_to_depth).

    y[oh, ow] = sum over (kh, kw, c) of xp[s*oh + kh, s*ow + kw, c] * w[kh, kw, c], xp the padded
    input. With kh = s*a + i and kw = s*b + j: xp[s*(oh + a) + i, s*(ow + b) + j, c]; so
    x2[u, v, (i, j, c)] = xp[s*u + i, s*v + j, c] and w2[a, b, (i, j, c)] = w[s*a + i, s*b + j, c],
    the kernel zero-padded to a multiple of s. x2 is one Triton kernel (padding, crop and
    rearrangement in one pass, kernels/space_to_depth.py; its gradient flows back through it);
    w2 a pad and one copy (rearranged, rounded and channels_last at once)."""
    s = stride[0]
    n, c, h, w = x.shape
    oc, _, kh, kw = weight.shape
    (pt, pb), (pl, pr) = padding
    oh, ow = out_size(h, kh, s, pt, padding_after=pb), out_size(w, kw, s, pl, padding_after=pr)
    a, b = -(-kh // s), -(-kw // s)  # kernel in blocks of s
    u, v = oh + a - 1, ow + b - 1  # input blocks the output reads
    # The padded (or cropped) input is exactly s*u x s*v; extra zeros meet zero weights only.
    x2 = space_to_depth_op(x, s, pt, pl, u, v)
    wp = torch.nn.functional.pad(weight, (0, s * b - kw, 0, s * a - kh))
    w2 = torch.empty((oc, a, b, s * s * c), dtype=x.dtype, device=x.device)
    w2.view(oc, a, b, s, s, c).copy_(wp.reshape(oc, c, a, s, b, s).permute(0, 2, 4, 3, 5, 1))
    return x2, w2.permute(0, 3, 1, 2), ((0, 0), (0, 0)), (1, 1)
