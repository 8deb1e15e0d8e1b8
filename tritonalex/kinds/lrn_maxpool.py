"""lrn_maxpool: an LRN followed by a max-pool, made by the fusion pass `fuse_lrn_maxpool` (never
written in a spec): one kernel reads the conv output once and never writes the LRN's output.
Its params are both layers' keys: {"lrn": {...}, "pool": {...}}."""

import torch.nn.functional as TF

from .. import functional as XF
from . import Kind, maps_case
from .lrn import lrn_args, per_tower
from .maxpool import pool_args, pool_cost, pool_output


def _forward(m, x):
    lrn, pool = lrn_args(m.node.params["lrn"]), pool_args(m.node.params["pool"])
    if m.backend == "triton":
        return XF.lrn_max_pool2d(x, *lrn, *pool, groups=m.groups, relu_input=m.node.relu_input)
    return TF.max_pool2d(per_tower(TF.local_response_norm, x, m.groups, *lrn), *pool)


def _bench(node, first):
    lrn, pool = lrn_args(node.params["lrn"]), pool_args(node.params["pool"])
    return maps_case(node, {"tritonalex": lambda x: XF.lrn_max_pool2d(x, *lrn, *pool),
                            "torch": lambda x: TF.max_pool2d(TF.local_response_norm(x, *lrn), *pool)},
                     lambda x, s: pool_cost(node, x, s, reads_input=True))


KINDS = [Kind(
    "lrn_maxpool", keys={}, in_spec=False,
    output=lambda node, width: pool_output(node.in_shape, node.params["pool"]),
    forward=_forward, bench=_bench, kernel=lambda node: "lrn_max_pool2d (fused)",
    masks_relu_input=True)]
