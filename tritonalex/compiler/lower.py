"""Lowering: the placed graph to an nn.Module, on the triton or the torch backend.

Both backends build the same module tree (so the same state_dict keys): one module per node,
keyed by the node's name; conv and linear nodes hold one torch.nn.Conv2d / Linear per tower
(`towers.0`, `towers.1`), subclassed by tritonalex.nn on the triton backend. The torch backend
runs stock torch ops (cuDNN/cuBLAS on a GPU) and applies fused activations as separate ops.

The triton backend runs channels_last end to end: the images are made channels_last on entry (a
no-op when they already are) and every conv keeps its input's layout, and conv weights are kept
OHWI in memory (channels_last, same shape and state_dict): the conv kernels' reduction is then
contiguous in both operands, so their loads vectorize and pipeline (see kernels/conv.py).
"""

import torch
import torch.nn.functional as TF

from .. import functional as XF
from .. import nn as tnn


def _gather(parts, tower, node, device):
    """The input of tower `tower`: its own part, or every part concatenated on its device."""
    if node.reads_all() or len(parts) == 1:
        return torch.cat([p.to(device) for p in parts], dim=1) if len(parts) > 1 else parts[0].to(device)
    return parts[tower].to(device)


class WeightedNode(torch.nn.Module):
    """A conv or linear node: one layer per output part (tower)."""

    def __init__(self, node, backend):
        super().__init__()
        self.node, self.backend = node, backend
        in_width = node.in_shape[0] * (node.in_parts if node.reads_all() else 1)
        layers = []
        for device in node.devices:
            p = node.params
            if node.kind == "conv":
                args = (in_width, node.shape[0], p["kernel"])
                kwargs = dict(stride=p["stride"], padding=p["padding"])
                layer = (tnn.Conv2d(*args, activation=node.activation, **kwargs) if backend == "triton"
                         else torch.nn.Conv2d(*args, **kwargs))
            else:
                layer = (tnn.Linear(in_width, node.shape[0], activation=node.activation,
                                    dropout=node.dropout) if backend == "triton"
                         else torch.nn.Linear(in_width, node.shape[0]))
            torch.nn.init.normal_(layer.weight, 0.0, p["weight_std"])
            torch.nn.init.constant_(layer.bias, p["bias_init"])
            if node.kind == "conv" and backend == "triton":
                # Kept in the layout the kernels read best, once: OHWI in memory (channels_last),
                # same shape and state_dict; load_state_dict copies into it.
                layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last)
            layers.append(layer.to(device))
        self.towers = torch.nn.ModuleList(layers)

    def forward(self, parts):
        outs = []
        for t, (layer, device) in enumerate(zip(self.towers, self.node.devices)):
            y = layer(_gather(parts, t, self.node, device))
            if self.backend == "torch":  # the triton modules fused these already
                if self.node.activation:
                    y = torch.relu(y)
                if self.node.dropout:
                    y = TF.dropout(y, self.node.dropout, self.training)
            outs.append(y)
        return outs


class ElementwiseNode(torch.nn.Module):
    """A parameter-free node applied to each part on its own (relu, lrn, pools, dropout, ...)."""

    def __init__(self, node, backend):
        super().__init__()
        self.node = node
        self.F = XF if backend == "triton" else TF

    def _one(self, x):
        F, p, kind = self.F, self.node.params, self.node.kind
        if kind == "relu":
            return F.relu(x)
        if kind == "dropout":
            return F.dropout(x, p["p"], self.training)
        if kind == "lrn":
            return F.local_response_norm(x, p["size"], p["alpha"], p["beta"], p["k"])
        if kind == "maxpool":
            return F.max_pool2d(x, p["kernel"], p["stride"], p["padding"])
        if kind == "lrn_maxpool":
            lrn, pool = p["lrn"], p["pool"]
            if F is XF:
                return XF.lrn_max_pool2d(x, lrn["size"], lrn["alpha"], lrn["beta"], lrn["k"],
                                         pool["kernel"], pool["stride"], pool["padding"])
            x = TF.local_response_norm(x, lrn["size"], lrn["alpha"], lrn["beta"], lrn["k"])
            return TF.max_pool2d(x, pool["kernel"], pool["stride"], pool["padding"])
        if kind == "flatten":
            return torch.flatten(x, 1)
        if kind == "softmax":
            return x  # the network returns logits; CompiledNet.probabilities applies the softmax
        raise AssertionError(kind)

    def forward(self, parts):
        return [self._one(x) for x in parts]


class CompiledNet(torch.nn.Module):
    """A compiled spec: forward(images) -> logits (softmax applied by `probabilities`)."""

    def __init__(self, spec, graph, backend):
        super().__init__()
        self.spec_name, self.backend, self.graph = spec.name, backend, graph
        self.nodes = torch.nn.ModuleDict({
            node.name: (WeightedNode if node.kind in ("conv", "linear") else ElementwiseNode)(node, backend)
            for node in graph})

    def forward(self, x):
        if self.backend == "triton" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        parts = [x]
        for module in self.nodes.values():
            parts = module(parts)
        return torch.cat([p.to(parts[0].device) for p in parts], dim=1) if len(parts) > 1 else parts[0]

    def probabilities(self, x):
        return torch.softmax(self(x), dim=1)


def lower(spec, graph, backend):
    if backend not in ("triton", "torch"):
        raise ValueError(f"backend must be 'triton' or 'torch', got {backend!r}")
    return CompiledNet(spec, graph, backend)
