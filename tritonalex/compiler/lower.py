"""Lowering: the placed graph to an nn.Module, on the triton or the torch backend.

Both backends build the same module tree and the same state_dict keys: one module per node, keyed
by the node's name; a conv or linear node's parameters are `towers.<i>.weight` / `.bias`, one pair
per tower. The torch backend runs stock torch ops (cuDNN/cuBLAS on a GPU) and applies fused
activations as separate ops.

Towers on one device (`TowersInOneLayer`) run as one layer: their output maps are one tensor with
the towers' channels side by side, a conv that reads only its own tower is a grouped conv
(groups = towers), a layer that reads all towers is one conv or GEMM over the towers' weights
stacked, and an LRN's windows stop at the tower edge (`groups=`). One launch per layer and no cats
or gradient sums between towers; the parameters are held stacked, and the state_dict shows each
tower's slice under its own key. Towers on several devices (`TowerPerDevice`) are one module per
tower, as in the paper.

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


class TowerPerDevice(torch.nn.Module):
    """A conv or linear node with its towers on several devices: one layer per output part."""

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


class TowersInOneLayer(torch.nn.Module):
    """A conv or linear node with all its towers on one device, run as one layer (see the module
    docstring): `weight` and `bias` hold the towers' parameters stacked along the output axis."""

    def __init__(self, node, backend):
        super().__init__()
        self.node, self.backend = node, backend
        self.towers = node.parts
        p = node.params
        in_width = node.in_shape[0] * (node.in_parts if node.reads_all() else 1)  # per tower
        # Reading only its own tower: each output tower sees one input tower's channels.
        self.groups = node.in_parts if not node.reads_all() and node.in_parts > 1 else 1
        shape = (node.shape[0] * node.parts, in_width)
        if node.kind == "conv":
            shape += (p["kernel"], p["kernel"])
        device = node.devices[0]
        self.weight = torch.nn.Parameter(torch.empty(shape, device=device))
        self.bias = torch.nn.Parameter(torch.empty(shape[0], device=device))
        torch.nn.init.normal_(self.weight, 0.0, p["weight_std"])
        torch.nn.init.constant_(self.bias, p["bias_init"])
        if node.kind == "conv" and backend == "triton":
            # Kept in the layout the kernels read best, once: OHWI in memory (channels_last),
            # same shape and state_dict; load_state_dict copies into it.
            self.weight.data = self.weight.data.contiguous(memory_format=torch.channels_last)

    def forward(self, parts):
        (x,) = parts
        x = x.to(self.weight.device)
        node, p = self.node, self.node.params
        F = XF if self.backend == "triton" else TF
        fused = dict(activation=node.activation) if self.backend == "triton" else {}
        if node.kind == "conv":
            y = F.conv2d(x, self.weight, self.bias, p["stride"], p["padding"], groups=self.groups,
                         **fused)
        elif self.groups == 1:
            if self.backend == "triton":
                fused.update(dropout=node.dropout, training=self.training)
            y = F.linear(x, self.weight, self.bias, **fused)
        else:  # a linear layer reading only its own tower: one GEMM per tower (no grouped GEMM)
            y = torch.cat([F.linear(xi, wi, bi, **fused) for xi, wi, bi in zip(
                x.chunk(self.groups, 1), self.weight.chunk(self.groups), self.bias.chunk(self.groups))],
                dim=1)
            if self.backend == "triton" and node.dropout:
                y = XF.dropout(y, node.dropout, self.training)
        if self.backend == "torch":  # the triton kernels fused these already
            if node.activation:
                y = torch.relu(y)
            if node.dropout:
                y = TF.dropout(y, node.dropout, self.training)
        return [y]

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for i in range(self.towers):  # in the order one module per tower lists them
            for name in ("weight", "bias"):
                stacked = getattr(self, name)
                stacked = stacked if keep_vars else stacked.detach()
                destination[f"{prefix}towers.{i}.{name}"] = stacked.chunk(self.towers)[i]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        expected = {f"{prefix}towers.{i}.{name}": (name, i)
                    for i in range(self.towers) for name in ("weight", "bias")}
        for key, (name, i) in expected.items():
            if key not in state_dict:
                missing_keys.append(key)
                continue
            part = getattr(self, name).chunk(self.towers)[i]
            value = state_dict[key]
            if value.shape != part.shape:
                error_msgs.append(f"size mismatch for {key}: copying a param with shape "
                                  f"{tuple(value.shape)} from checkpoint, the shape in current model "
                                  f"is {tuple(part.shape)}.")
                continue
            with torch.no_grad():
                part.copy_(value)
        unexpected_keys.extend(key for key in state_dict
                               if key.startswith(prefix) and key not in expected)


class ElementwiseNode(torch.nn.Module):
    """A parameter-free node applied to each part on its own (relu, lrn, pools, dropout, ...).

    `groups`: how many towers each part holds side by side (an LRN's windows stop at their edges).
    """

    def __init__(self, node, backend, groups=1):
        super().__init__()
        self.node, self.groups = node, groups
        self.F = XF if backend == "triton" else TF

    def _one(self, x):
        F, p, kind = self.F, self.node.params, self.node.kind
        if kind == "relu":
            return F.relu(x)
        if kind == "dropout":
            return F.dropout(x, p["p"], self.training)
        if kind == "lrn":
            if F is XF:
                return XF.local_response_norm(x, p["size"], p["alpha"], p["beta"], p["k"],
                                              groups=self.groups)
            return _per_tower(TF.local_response_norm, x, self.groups, p["size"], p["alpha"],
                              p["beta"], p["k"])
        if kind == "maxpool":
            return F.max_pool2d(x, p["kernel"], p["stride"], p["padding"])
        if kind == "lrn_maxpool":
            lrn, pool = p["lrn"], p["pool"]
            if F is XF:
                return XF.lrn_max_pool2d(x, lrn["size"], lrn["alpha"], lrn["beta"], lrn["k"],
                                         pool["kernel"], pool["stride"], pool["padding"],
                                         groups=self.groups)
            x = _per_tower(TF.local_response_norm, x, self.groups, lrn["size"], lrn["alpha"],
                           lrn["beta"], lrn["k"])
            return TF.max_pool2d(x, pool["kernel"], pool["stride"], pool["padding"])
        if kind == "flatten":
            # Channel-major: the towers' flattened maps side by side, as a cat of each would be.
            return torch.flatten(x, 1)
        if kind == "softmax":
            return x  # the network returns logits; CompiledNet.probabilities applies the softmax
        raise AssertionError(kind)

    def forward(self, parts):
        return [self._one(x) for x in parts]


def _per_tower(fn, x, towers, *args):
    """torch's fn on each tower's channels of x alone: viewed as towers x more images (a view for
    NCHW, the torch backend's layout), so no window crosses a tower's edge."""
    if towers == 1:
        return fn(x, *args)
    n, c = x.shape[:2]
    return fn(x.reshape(n * towers, c // towers, *x.shape[2:]), *args).reshape(x.shape)


class CompiledNet(torch.nn.Module):
    """A compiled spec: forward(images) -> logits (softmax applied by `probabilities`)."""

    def __init__(self, spec, graph, backend, merge_towers=None):
        super().__init__()
        self.spec_name, self.backend, self.graph = spec.name, backend, graph
        one_device = len({device for node in graph for device in node.devices}) == 1
        one_device = one_device if merge_towers is None else merge_towers
        modules = {}
        for node in graph:
            if node.kind in ("conv", "linear"):
                modules[node.name] = (TowersInOneLayer if one_device else TowerPerDevice)(node,
                                                                                         backend)
            else:
                modules[node.name] = ElementwiseNode(node, backend,
                                                     node.parts if one_device else 1)
        self.nodes = torch.nn.ModuleDict(modules)

    def forward(self, x):
        if self.backend == "triton" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        parts = [x]
        for module in self.nodes.values():
            parts = module(parts)
        return torch.cat([p.to(parts[0].device) for p in parts], dim=1) if len(parts) > 1 else parts[0]

    def probabilities(self, x):
        return torch.softmax(self(x), dim=1)


def lower(spec, graph, backend, merge_towers=None):
    """The module for a placed graph. merge_towers: None (towers that share one device run as one
    layer), or False to keep one module per tower anyway (the tests' reference)."""
    if backend not in ("triton", "torch"):
        raise ValueError(f"backend must be 'triton' or 'torch', got {backend!r}")
    return CompiledNet(spec, graph, backend, merge_towers)
