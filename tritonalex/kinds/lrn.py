"""lrn: cross-channel local response normalization, torch's convention (alpha divided by size).

Each tower is normalized alone, as in the paper: with the towers of a device in one tensor the
windows stop at the tower edge (`groups=`).
"""

import torch.nn.functional as TF

from .. import functional as XF
from . import MAX_WINDOW, REQUIRED, Kind, elementwise_cost, integer, maps_case, number


def per_tower(fn, x, towers, *args):
    """torch's fn on each tower's channels of x alone: viewed as towers x more images (a view for
    NCHW, the torch backend's layout), so no window crosses a tower's edge."""
    if towers == 1:
        return fn(x, *args)
    n, c = x.shape[:2]
    return fn(x.reshape(n * towers, c // towers, *x.shape[2:]), *args).reshape(x.shape)


def lrn_args(p):
    return p["size"], p["alpha"], p["beta"], p["k"]


def _forward(m, x):
    if m.backend == "triton":
        return XF.local_response_norm(x, *lrn_args(m.node.params), groups=m.groups,
                                      relu_input=m.node.relu_input)
    return per_tower(TF.local_response_norm, x, m.groups, *lrn_args(m.node.params))


def _bench(node, first):
    """Bytes: the forward reads x and writes y; the backward reads x and dy and writes dx."""
    args = lrn_args(node.params)
    return maps_case(node, {"tritonalex": lambda x: XF.local_response_norm(x, *args),
                            "torch": lambda x: TF.local_response_norm(x, *args)}, elementwise_cost)


KINDS = [Kind(
    "lrn",
    keys=dict(size=(REQUIRED, integer(1, MAX_WINDOW)), alpha=(1e-4, number(0)),
              beta=(0.75, number(0)), k=(1.0, number(0, low_open=True))),
    output=lambda node, width: node.in_shape, forward=_forward, bench=_bench,
    kernel=lambda node: "local_response_norm", masks_relu_input=True)]
