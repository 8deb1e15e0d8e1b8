"""batchnorm: BatchNorm2d over each tower's channels (batch statistics in training, running ones
in evaluation; `momentum` as torch's, `eps` added to the variance).

Per channel, so the towers of a device held side by side are one batch norm over all their
channels; each tower's weight, bias and running statistics show under its own state_dict key.
"""

import torch
import torch.nn.functional as TF

from .. import functional as XF
from ..nn import batch_norm_forward
from . import Kind, Param, elementwise_cost, maps_case, number


def _channels(node):
    return (node.in_shape[0],)


def _parameters(node):
    return {"weight": Param(_channels(node), lambda t, p: torch.nn.init.ones_(t)),
            "bias": Param(_channels(node), lambda t, p: torch.nn.init.zeros_(t))}


def _buffers(node):
    return {"running_mean": Param(_channels(node), lambda t, p: torch.nn.init.zeros_(t)),
            "running_var": Param(_channels(node), lambda t, p: torch.nn.init.ones_(t)),
            "num_batches_tracked": Param((), lambda t, p: t.zero_(), dtype=torch.long)}


def _forward(m, x):
    if m.node.folded and not m.training:  # the conv before it applied it (see kinds/conv.py)
        return x
    p = m.node.params
    return batch_norm_forward(m, x, p["momentum"], p["eps"],
                              XF.batch_norm if m.backend == "triton" else TF.batch_norm)


def _bench(node, first):
    """Training mode (batch statistics), no running statistics. Bytes: the forward reads x and
    writes y; the backward reads x and dy and writes dx."""
    eps = node.params["eps"]
    return maps_case(node, {"tritonalex": lambda x: XF.batch_norm(x, None, None, training=True, eps=eps),
                            "torch": lambda x: TF.batch_norm(x, None, None, training=True, eps=eps)},
                     elementwise_cost)


KINDS = [Kind(
    "batchnorm",
    keys=dict(eps=(1e-5, number(0, low_open=True)), momentum=(0.1, number(0, 1))),
    output=lambda node, width: node.in_shape, forward=_forward, parameters=_parameters,
    buffers=_buffers, bench=_bench, kernel=lambda node: "batch_norm")]
