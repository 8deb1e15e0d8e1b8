"""One torch.autograd.Function per fused op, with its host-side argument checks."""

from .conv import Conv2dFunction, conv2d
from .linear import LinearFunction, dropout, linear, relu
from .lrn import LocalResponseNormFunction, check_lrn_args, local_response_norm
from .pool import MaxPool2dFunction, max_pool2d

__all__ = ["Conv2dFunction", "LinearFunction", "LocalResponseNormFunction", "MaxPool2dFunction",
           "check_lrn_args", "conv2d", "dropout", "linear", "local_response_norm", "max_pool2d",
           "relu"]
