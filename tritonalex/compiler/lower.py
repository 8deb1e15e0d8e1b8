"""Lowering: the placed graph to an nn.Module, on the triton or the torch backend.

Every node becomes one module, keyed by the node's name, that runs its kind's record
(tritonalex.kinds): `forward(m, x)` with the record's parameters and buffers on `m`. Both
backends build the same module tree and the same state_dict keys: a node with parameters keeps
each tower's under `towers.<i>.<name>`, one set per tower. The torch backend runs stock torch ops
(cuDNN/cuBLAS on a GPU) and applies fused activations as separate ops.

Towers on one device (`Layer` with towers > 1) run as one layer: their output maps are one tensor
with the towers' channels side by side, a conv that reads only its own tower is a grouped conv
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

from .. import kinds
from .._args import autocast_dtype
from ..ops.linear import draw_seeds


class Layer(torch.nn.Module):
    """One node on one device, holding `towers` towers side by side in one tensor: the record's
    parameters and buffers of every tower stacked along dim 0.

    `tower_keys`: the state_dict names each tower's slice `towers.<i>.<name>` (the towers of a
    device in one layer), instead of plain `<name>` (one tower's layer inside `TowerPerDevice`).
    """

    def __init__(self, node, backend, towers, device, tower_keys):
        super().__init__()
        self.node, self.backend, self.towers, self.tower_keys = node, backend, towers, tower_keys
        self.kind = kinds.get(node.kind)
        # The input towers x holds that the layer keeps apart (a grouped conv, an LRN's windows).
        self.groups = kinds.tower_groups(node) if towers > 1 else 1
        for table, register in ((self.kind.parameters(node), self._add_parameter),
                                (self.kind.buffers(node), self.register_buffer)):
            for name, param in table.items():
                shape = (param.shape[0] * towers, *param.shape[1:]) if param.shape else ()
                t = torch.empty(shape, dtype=param.dtype, device=device)
                param.init(t, node.params)
                if param.channels_last and backend == "triton":
                    # Kept in the layout the kernels read best, once: same shape and state_dict;
                    # load_state_dict copies into it.
                    t = t.contiguous(memory_format=torch.channels_last)
                register(name, t)

    def _add_parameter(self, name, t):
        self.register_parameter(name, torch.nn.Parameter(t))

    def forward(self, x, **step_inputs):
        return self.kind.forward(self, x, **step_inputs)

    def _tensors(self):
        return [(name, t) for name, t in list(self._parameters.items()) + list(self._buffers.items())
                if t is not None and name not in self._non_persistent_buffers_set]

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        if not self.tower_keys:
            return super()._save_to_state_dict(destination, prefix, keep_vars)
        for i in range(self.towers):  # in the order one module per tower lists them
            for name, t in self._tensors():
                t = t if keep_vars else t.detach()
                destination[f"{prefix}towers.{i}.{name}"] = t.chunk(self.towers)[i] if t.dim() else t

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if not self.tower_keys:
            return super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                                 missing_keys, unexpected_keys, error_msgs)
        expected = {f"{prefix}towers.{i}.{name}": (t, i)
                    for i in range(self.towers) for name, t in self._tensors()}
        for key, (t, i) in expected.items():
            if key not in state_dict:
                missing_keys.append(key)
                continue
            part = t.chunk(self.towers)[i] if t.dim() else t
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


class OnEachPart(torch.nn.Module):
    """A node on each part as it is (towers on several devices, or one undivided part)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, parts):
        return [self.layer(x) for x in parts]


def _joined(parts, device):
    """The parts as one tensor on `device`: the towers' channels side by side."""
    if len(parts) == 1:
        return parts[0].to(device)
    return torch.cat([p.to(device) for p in parts], dim=1)


class TowersInOneLayer(Layer):
    """All the towers of a node on one device, as one `Layer` (see the module docstring)."""

    def __init__(self, node, backend):
        super().__init__(node, backend, node.parts, node.devices[0], tower_keys=True)

    def forward(self, parts, **step_inputs):
        return [self.kind.forward(self, _joined(parts, self.node.devices[0]), **step_inputs)]


class TowerPerDevice(torch.nn.Module):
    """A node with parameters and its towers on several devices: one layer per output part, each
    reading its own part or (reads = "all") every part gathered onto its device."""

    def __init__(self, node, backend):
        super().__init__()
        self.node = node
        self.towers = torch.nn.ModuleList(Layer(node, backend, 1, device, tower_keys=False)
                                          for device in node.devices)

    def forward(self, parts):
        own = not self.node.reads_all() and len(parts) > 1
        return [layer(parts[t].to(device) if own else _joined(parts, device))
                for t, (layer, device) in enumerate(zip(self.towers, self.node.devices))]


class CompiledNet(torch.nn.Module):
    """A compiled spec: forward(images) -> logits (softmax applied by `probabilities`)."""

    def __init__(self, spec, graph, backend, merge_towers=None):
        super().__init__()
        self.spec_name, self.backend, self.graph = spec.name, backend, graph
        one_device = len({device for node in graph for device in node.devices}) == 1
        one_device = one_device if merge_towers is None else merge_towers
        modules = {}
        for node in graph:
            kind = kinds.get(node.kind)
            if one_device:
                modules[node.name] = TowersInOneLayer(node, backend)
            elif kind.parameters(node) or kind.buffers(node):
                modules[node.name] = TowerPerDevice(node, backend)
            else:
                modules[node.name] = OnEachPart(Layer(node, backend, 1, None, tower_keys=False))
        self.nodes = torch.nn.ModuleDict(modules)
        # The logits' layer: the last but a pass-through softmax (see _step_inputs).
        self.logits_node = next(n.name for n in reversed(list(graph)) if not kinds.get(n.kind).last)
        for node in graph:
            if node.folds:  # the conv reads its batch norm's tensors (a plain reference, not a child)
                conv, norm = modules[node.name], modules[node.folds]
                pairs = zip(conv.towers, norm.towers) if isinstance(conv, TowerPerDevice) else [(conv, norm)]
                for conv_layer, norm_layer in pairs:
                    conv_layer.folded_norm = (norm_layer,)

    def forward(self, x):
        if self.backend == "triton" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        inputs = self._step_inputs(x) if self.backend == "triton" else {}
        parts = [x]
        for name, module in self.nodes.items():
            parts = module(parts, **inputs.get(name, {}))
        return _joined(parts, parts[0].device)

    def _step_inputs(self, x):
        """{node: keyword arguments} that the layers of one device (`TowersInOneLayer`) would
        each make for themselves, made here for all of them at once: under autocast the conv
        weights rounded to its dtype (one foreach copy, not a cast kernel per layer; fresh tensors
        every forward, so a saved one is never overwritten), in training the dropout seeds (one
        random draw, a view per layer), and under autocast fp32 logits (see below)."""
        inputs = {}
        layers = [(name, m) for name, m in self.nodes.items() if isinstance(m, TowersInOneLayer)]
        dtype = autocast_dtype(x)
        rounding = [(name, m.weight.detach()) for name, m in layers
                    if dtype is not None and m.kind.rounds_weight
                    and not (m.node.folds and not m.training)
                    and m.weight.dtype != dtype and m.weight.is_floating_point()]
        if rounding:
            rounded = [torch.empty_like(w, dtype=dtype) for _, w in rounding]
            torch._foreach_copy_(rounded, [w for _, w in rounding])
            for (name, _), r in zip(rounding, rounded):
                inputs[name] = dict(rounded_weight=r)
        drawing = [name for name, m in layers if m.training and m.kind.dropout(m.node) > 0]
        if drawing:
            seeds = draw_seeds(len(drawing), x.device)
            for i, name in enumerate(drawing):
                inputs.setdefault(name, {})["seed"] = seeds[i:i + 1]
        # The logits' layer (the last but a pass-through softmax) writes them in fp32 under
        # autocast, as the loss wants them: no cast kernel each way around it.
        last = self.nodes[self.logits_node]
        if dtype is not None and isinstance(last, TowersInOneLayer) and last.kind.writes_logits:
            inputs.setdefault(self.logits_node, {})["out_dtype"] = torch.float32
        return inputs

    def probabilities(self, x):
        return torch.softmax(self(x), dim=1)


def lower(spec, graph, backend, merge_towers=None):
    """The module for a placed graph. merge_towers: None (towers that share one device run as one
    layer), or False to keep one module per tower anyway (the tests' reference)."""
    if backend not in ("triton", "torch"):
        raise ValueError(f"backend must be 'triton' or 'torch', got {backend!r}")
    return CompiledNet(spec, graph, backend, merge_towers)
