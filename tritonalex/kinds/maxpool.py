"""maxpool: 2-D max pooling, square window; `stride` defaults to the kernel (AlexNet's are 3x3
with stride 2, overlapping)."""

import torch.nn.functional as TF

from .. import functional as XF
from . import MAX_WINDOW, REQUIRED, Kind, LayerError, integer, maps_case, out_size

INDEX_BYTES = 8  # int64 pooling indices, written by a trained forward and read by the backward


def pool_args(p):
    """(kernel, stride, padding) of a maxpool layer's keys."""
    return p["kernel"], p["stride"] or p["kernel"], p["padding"]


def pool_output(in_shape, p):
    c, h, w = in_shape
    oh, ow = (out_size(size, *pool_args(p)) for size in (h, w))
    if oh < 1 or ow < 1:
        raise LayerError("kernel", f"output would be empty ({oh}x{ow}) at input {h}x{w}")
    return (c, oh, ow)


def pool_cost(node, x, s, reads_input):
    """Bytes of a max-pool over x input elements: the forward reads x, writes y and (trained)
    the indices; the backward reads dy and the indices and writes dx (`reads_input`: and reads x
    again, as the fused LRN -> pool backward does to recompute the LRN)."""
    y = x // (node.in_shape[1] * node.in_shape[2]) * node.shape[1] * node.shape[2]
    idx = y * INDEX_BYTES
    return dict(forward=(0, (x + y) * s), backward=(0, (y + x + (x if reads_input else 0)) * s + idx),
                train_extra=idx)


def _bench(node, first):
    args = pool_args(node.params)
    return maps_case(node, {"tritonalex": lambda x: XF.max_pool2d(x, *args),
                            "torch": lambda x: TF.max_pool2d(x, *args)},
                     lambda x, s: pool_cost(node, x, s, reads_input=False))


def _forward(m, x):
    if m.backend == "triton":
        return XF.max_pool2d(x, *pool_args(m.node.params), relu_input=m.node.relu_input)
    return TF.max_pool2d(x, *pool_args(m.node.params))


def _check(p):
    if p["padding"] > p["kernel"] // 2:
        return "padding", f"must be at most half the kernel ({p['kernel'] // 2}), got {p['padding']}"
    return None


KINDS = [Kind(
    "maxpool",
    keys=dict(kernel=(REQUIRED, integer(1, MAX_WINDOW)), stride=(None, integer(1, MAX_WINDOW)),
              padding=(0, integer(0, MAX_WINDOW))),
    output=lambda node, width: pool_output(node.in_shape, node.params), check=_check,
    forward=_forward, bench=_bench, kernel=lambda node: "max_pool2d", masks_relu_input=True)]
