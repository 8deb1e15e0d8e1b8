"""relu and dropout: elementwise, on each tower's maps or features as they are."""

import torch.nn.functional as TF

from .. import functional as XF
from . import Kind, number


def _backend(m):
    return XF if m.backend == "triton" else TF


def _dropout(m, x, seed=None):
    if m.backend == "triton":
        return XF.dropout(x, m.node.params["p"], m.training, seed=seed)
    return TF.dropout(x, m.node.params["p"], m.training)


KINDS = [
    Kind("relu", keys={}, needs="any", output=lambda node, width: node.in_shape,
         forward=lambda m, x: _backend(m).relu(x), kernel=lambda node: "relu"),
    Kind("dropout", keys=dict(p=(0.5, number(0, 1))), needs="any",
         output=lambda node, width: node.in_shape, forward=_dropout,
         dropout=lambda node: node.params["p"], kernel=lambda node: "dropout"),
]
