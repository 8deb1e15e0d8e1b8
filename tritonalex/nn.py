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


class LocalResponseNorm(torch.nn.LocalResponseNorm):
    """torch.nn.LocalResponseNorm on the Triton LRN kernel (torch's convention: alpha / size).

    How the conventions write the paper's LRN (k=2, n=5, alpha=1e-4, beta=0.75, alpha times the
    plain sum of squares):

    | framework                           | alpha enters as        | the paper's constants          |
    | ----------------------------------- | ---------------------- | ------------------------------ |
    | paper (Krizhevsky et al. 2012)      | alpha * sum            | k=2, n=5, alpha=1e-4, beta=.75 |
    | torch / tritonalex                  | alpha / size * sum     | size=5, alpha=5e-4, k=2        |
    | Caffe LRN                           | alpha / local_size*sum | local_size=5, alpha=5e-4, k=2  |
    | TensorFlow tf.nn.lrn                | alpha * sum            | depth_radius=2, alpha=1e-4, bias=2 |
    | cuda-convnet2 cmrnorm               | scale / size * sum     | size=5, scale=5e-4, minDiv=2   |

    ``LocalResponseNorm.paper()`` builds the paper's layer without any of that arithmetic.
    """

    @classmethod
    def paper(cls):
        """The paper's LRN: n=5, alpha=1e-4 on the plain sum (5e-4 / 5 here), beta=0.75, k=2."""
        return cls(5, alpha=5e-4, beta=0.75, k=2.0)

    def forward(self, input):
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d on the Triton max-pool kernel (same arguments, indices and NaN rules)."""

    def forward(self, input):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class Linear(torch.nn.Linear):
    """torch.nn.Linear on the Triton GEMM; ``activation="relu"`` and ``dropout=p`` fuse into it.

    The fused dropout follows the module's training flag, like torch.nn.Dropout.
    """

    def __init__(self, *args, activation=None, dropout=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.activation = check_activation(activation)
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {dropout}")
        self.dropout = float(dropout)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias, activation=self.activation,
                        dropout=self.dropout, training=self.training)

    def extra_repr(self):
        extra = super().extra_repr()
        if self.activation:
            extra += f", activation={self.activation!r}"
        return extra + (f", dropout={self.dropout}" if self.dropout else "")


class ReLU(torch.nn.ReLU):
    """torch.nn.ReLU on the Triton elementwise kernel."""

    def forward(self, input):
        return F.relu(input, inplace=self.inplace)


class Dropout(torch.nn.Dropout):
    """torch.nn.Dropout on the Triton kernel (mask seeded from the input device's generator)."""

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)


def batch_norm_forward(m, input, momentum, eps, batch_norm=F.batch_norm):
    """torch's _BatchNorm.forward on the buffers and parameters of `m` (running_mean, running_var,
    num_batches_tracked, weight, bias; any may be None), with `batch_norm` doing the work:
    counts the batch, turns momentum=None into the cumulative average 1/batches, and uses the
    batch's statistics in training or when no running ones are tracked."""
    factor = 0.0 if momentum is None else momentum
    if m.training and m.running_mean is not None and m.num_batches_tracked is not None:
        m.num_batches_tracked.add_(1)
        factor = 1.0 / float(m.num_batches_tracked) if momentum is None else momentum
    use_batch = m.training or m.running_mean is None and m.running_var is None
    return batch_norm(input, m.running_mean, m.running_var, m.weight, m.bias, use_batch, factor, eps)


class BatchNorm2d(torch.nn.BatchNorm2d):
    """torch.nn.BatchNorm2d on the Triton batch-norm kernels: the same arguments (affine,
    track_running_stats, momentum=None for a cumulative average), buffers and state_dict."""

    def forward(self, input):
        self._check_input_dim(input)
        # track_running_stats=False leaves the running buffers None: batch statistics always.
        return batch_norm_forward(self, input, self.momentum, self.eps)
