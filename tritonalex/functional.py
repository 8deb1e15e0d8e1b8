"""torch.nn.functional twins: the same signatures and semantics, running the Triton kernels.

Each function also takes keyword-only options that fuse what usually follows it
(``activation="relu"``).
"""

from . import ops


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None):
    """torch.nn.functional.conv2d; ``activation="relu"`` fuses the ReLU into the kernel.

    Takes everything torch does: int or tuple stride/padding/dilation, padding "same"/"valid",
    groups, unbatched (C, H, W) input, any strides (NCHW and channels_last; channels_last is the
    layout whose reduction loads are coalesced). fp16/bf16 accumulate in fp32; fp32 uses TF32 on a
    GPU when ``torch.backends.cudnn.allow_tf32`` is set (torch's default), IEEE otherwise.
    """
    return ops.conv2d(input, weight, bias, stride, padding, dilation, groups, activation)


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """torch.nn.functional.local_response_norm: torch's convention (alpha is divided by size).

    The paper's constants (alpha times the plain sum, k=2, n=5, alpha=1e-4, beta=0.75) are
    size=5, alpha=5e-4, beta=0.75, k=2.0 here; ``tritonalex.nn.LocalResponseNorm.paper()``
    builds exactly that.
    """
    return ops.local_response_norm(input, size, alpha, beta, k)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """torch.nn.functional.max_pool2d: same arguments, output, indices and NaN behaviour."""
    return ops.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def lrn_max_pool2d(input, size, alpha=1e-4, beta=0.75, k=1.0, kernel_size=3, stride=2, padding=0,
                   dilation=1, ceil_mode=False, return_indices=False):
    """max_pool2d(local_response_norm(input, size, alpha, beta, k), kernel_size, ...) in one kernel.

    Reads the (ReLU'd) conv output once and never writes the full-size LRN output; the backward
    recomputes the LRN from the input. AlexNet's LRN -> 3x3/2 pool, for the compiler's fusion pass.
    """
    ops.check_lrn_args(input, size, "lrn_max_pool2d")
    return ops.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                          lrn=(size, float(alpha), float(beta), float(k)), op="lrn_max_pool2d")
