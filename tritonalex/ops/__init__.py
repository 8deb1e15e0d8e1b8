"""One torch.autograd.Function per fused op, with its host-side argument checks."""

from .conv import Conv2dFunction, conv2d

__all__ = ["Conv2dFunction", "conv2d"]
