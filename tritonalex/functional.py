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
