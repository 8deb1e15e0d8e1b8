"""flatten and softmax: the reshape between the maps and the classifier, and the network's end."""

import math

import torch

from . import Kind, LayerError


def _softmax_output(node, width):
    if node.in_parts != 1:
        raise LayerError(None, "softmax needs one undivided input (give the last linear layer "
                               "split = false)")
    return node.in_shape


KINDS = [
    # Channel-major: the towers' flattened maps side by side, as a cat of each would be.
    Kind("flatten", keys={}, needs="any", output=lambda node, width: (math.prod(node.in_shape),),
         forward=lambda m, x: torch.flatten(x, 1), kernel=lambda node: "view (no kernel)"),
    # The network returns logits; CompiledNet.probabilities applies the softmax.
    Kind("softmax", keys={}, needs="any", last=True, output=_softmax_output,
         forward=lambda m, x: x, kernel=lambda node: "softmax (torch, on probabilities only)"),
]
