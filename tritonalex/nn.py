"""Drop-in modules: subclasses of the torch.nn ones (same constructor, parameters, state_dict).

Only the forward changes: it runs the Triton kernels through tritonalex.functional. Extra
keyword-only options (``activation="relu"``) name what the kernel fuses.
"""

import torch

from . import functional as F
from ._args import check_activation


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d on the Triton conv kernel; ``activation="relu"`` fuses the ReLU.

    padding_mode "zeros" is done by the kernel's masked loads; "reflect", "replicate" and
    "circular" pad with torch.nn.functional.pad first (a torch op), exactly as torch.nn.Conv2d does.
    """

    def __init__(self, *args, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.activation = check_activation(activation)

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice,
                                            mode=self.padding_mode)
            return F.conv2d(input, weight, bias, self.stride, 0, self.dilation, self.groups,
                            activation=self.activation)
        return F.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
                        activation=self.activation)

    def extra_repr(self):
        extra = super().extra_repr()
        return extra + (f", activation={self.activation!r}" if self.activation else "")
