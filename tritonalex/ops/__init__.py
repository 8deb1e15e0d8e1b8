"""The library ops (`torch.ops.tritonalex.*`, see _library.py) and the host-side argument checks
that turn torch.nn.functional's arguments into their schemas."""

from .conv import conv2d
from .linear import dropout, linear, relu
from .lrn import check_lrn_args, local_response_norm
from .pool import max_pool2d

__all__ = ["check_lrn_args", "conv2d", "dropout", "linear", "local_response_norm", "max_pool2d",
           "relu"]
