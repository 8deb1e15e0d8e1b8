"""torch.nn.functional twins: the same signatures and semantics, running the Triton kernels.

Each function also takes keyword-only options that fuse what usually follows it
(``activation="relu"``), and a pair that moves a fused ReLU's derivative out of the conv's
backward into its consumer's: ``conv2d(..., activation="relu", defer_relu_grad=True)`` followed
by ``conv2d``, ``local_response_norm``, ``max_pool2d`` or ``lrn_max_pool2d`` with
``relu_input=True`` (which zeroes the input gradient it returns where its input is <= 0). The
pair gives the same gradients as neither, faster (the conv's backward kernels lose the mask);
``defer_relu_grad`` without such a consumer gives wrong ones. The compiler sets both where it can.
"""

from . import ops
from ._args import autocast_input
from .ops.batchnorm import batch_norm as batch_norm_op


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None,
           defer_relu_grad=False, relu_input=False, rounded_weight=None):
    """torch.nn.functional.conv2d; ``activation="relu"`` fuses the ReLU into the kernel.

    Takes everything torch does: int or tuple stride/padding/dilation, padding "same"/"valid",
    groups, unbatched (C, H, W) input, any strides (NCHW and channels_last; channels_last is the
    layout whose reduction loads are coalesced). fp16/bf16 accumulate in fp32; fp32 uses TF32 on a
    GPU when ``torch.backends.cudnn.allow_tf32`` is set (torch's default), IEEE otherwise.
    Inside torch.autocast only the input is cast (see `_args.autocast_dtype`), and the weight is
    rounded to its dtype beside the kernel; ``rounded_weight`` passes that rounding in instead
    (the compiled net rounds all its conv weights in one cast per forward; ignored outside
    autocast). The gradient still comes back in the weight's dtype.
    """
    input, mixed = autocast_input(input)
    return ops.conv2d(input, weight, bias, stride, padding, dilation, groups, activation,
                      mixed=mixed, defer_relu_grad=defer_relu_grad, relu_input=relu_input,
                      rounded_weight=rounded_weight if mixed else None)


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0, *, groups=1, relu_input=False):
    """torch.nn.functional.local_response_norm: torch's convention (alpha is divided by size).

    The paper's constants (alpha times the plain sum, k=2, n=5, alpha=1e-4, beta=0.75) are
    size=5, alpha=5e-4, beta=0.75, k=2.0 here; ``tritonalex.nn.LocalResponseNorm.paper()``
    builds exactly that. ``groups=g`` splits the channels into g equal groups that no window
    crosses (the paper's towers held in one tensor), as g separate calls would.
    """
    return ops.local_response_norm(input, size, alpha, beta, k, groups, relu_input)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, relu_input=False):
    """torch.nn.functional.max_pool2d: same arguments, output, indices and NaN behaviour."""
    return ops.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                          relu_input=relu_input)


def lrn_max_pool2d(input, size, alpha=1e-4, beta=0.75, k=1.0, kernel_size=3, stride=2, padding=0,
                   dilation=1, ceil_mode=False, return_indices=False, *, groups=1, relu_input=False):
    """max_pool2d(local_response_norm(input, size, alpha, beta, k), kernel_size, ...) in one kernel.

    Reads the (ReLU'd) conv output once and never writes the full-size LRN output; the backward
    recomputes the LRN from the input. AlexNet's LRN -> 3x3/2 pool, for the compiler's fusion pass.
    """
    ops.check_lrn_args(input, size, groups, "lrn_max_pool2d")
    return ops.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                          lrn=(size, float(alpha), float(beta), float(k), groups),
                          op="lrn_max_pool2d", relu_input=relu_input)


def linear(input, weight, bias=None, *, activation=None, dropout=0.0, training=True, seed=None,
           out_dtype=None):
    """torch.nn.functional.linear as a Triton GEMM, with ReLU and dropout fusable into it.

    ``activation="relu"`` and ``dropout=p`` (applied only when ``training``) run in the GEMM's
    epilogue; the backward re-derives both masks (the dropout one from its seed) instead of
    storing them. With neither, this is exactly torch's linear, for any leading dims.
    fp32 uses TF32 on a GPU when ``torch.backends.cuda.matmul.allow_tf32`` is set (off by default).
    Inside torch.autocast only the input is cast (see `_args.autocast_dtype`). ``seed``: the
    dropout mask's Philox seed, a one-element int64 tensor on the input's device, instead of one
    drawn per call (`ops.linear.draw_seeds` draws several in one kernel, as the compiled net does).
    ``out_dtype``: the output's dtype, default the (autocast) input's; ``torch.float32`` under
    autocast writes fp32 straight from the fp32 accumulator (the compiled net's logits: no cast
    before the loss, and the fp32 gradient coming back is rounded inside the backward's loads).
    """
    input, mixed = autocast_input(input)
    return ops.linear(input, weight, bias, activation, dropout, training, mixed=mixed, seed=seed,
                      out_dtype=out_dtype)


def relu(input, inplace=False):
    """torch.nn.functional.relu (NaN stays NaN)."""
    return ops.relu(input, inplace)


def dropout(input, p=0.5, training=True, inplace=False, *, seed=None):
    """torch.nn.functional.dropout; the mask comes from a seed drawn from the input device's
    generator, so ``torch.manual_seed`` reproduces it (the stream itself differs from torch's).
    ``seed``: that seed passed in instead, as in `linear`."""
    return ops.dropout(input, p, training, inplace, seed=seed)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """torch.nn.functional.batch_norm: batch statistics in training (the running ones updated in
    place: running = (1 - momentum) running + momentum batch, the variance unbiased), the running
    statistics otherwise. Any input of shape (N, C, ...), any strides; reductions deterministic."""
    return batch_norm_op(input, running_mean, running_var, weight, bias, training, momentum, eps)
