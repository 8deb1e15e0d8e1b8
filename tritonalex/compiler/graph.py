"""The compiler's IR: a chain of layer nodes, each knowing its tower split and output shape.

A node's output is `parts` tensors, one per tower (parts = towers) or one undivided (parts = 1);
`shape` is the per-image shape of one part: (C, H, W) for maps, (F,) for features.
"""

import dataclasses
import math

# Per layer, at most 2^31 parameters and 2^31 output elements per image (8 GiB each in fp32): far
# above any AlexNet-family network, and a clear error instead of an attempt to allocate terabytes.
MAX_LAYER_PARAMETERS = 1 << 31
MAX_IMAGE_ELEMENTS = 1 << 31


@dataclasses.dataclass
class Node:
    name: str  # the spec layer's name (a fused node keeps its first layer's name)
    kind: str  # conv, linear, relu, lrn, maxpool, lrn_maxpool, dropout, flatten, softmax
    params: dict  # the spec keys (for lrn_maxpool: both layers' keys, see passes.py)
    index: int  # position of the first layer in the spec file
    fused: list = dataclasses.field(default_factory=list)  # names of layers folded into this one
    activation: str = None  # "relu" when a following ReLU was fused (conv, linear)
    dropout: float = 0.0  # p of a fused dropout (linear)
    parts: int = 1  # output tensors: one per tower, or 1 undivided
    shape: tuple = ()  # per-image shape of one output part
    in_parts: int = 1  # how many parts the input had
    in_shape: tuple = ()  # per-image shape of one input part
    devices: tuple = ()  # device of each output part, set by placement

    @property
    def label(self):
        return "+".join([self.name] + self.fused)

    def reads_all(self):
        return self.params.get("reads") == "all" or not self.params.get("split", True)

    def kernel(self):
        """Which tritonalex kernel runs this node on the triton backend."""
        if self.kind == "conv":
            return "conv2d+bias" + ("+relu" if self.activation else "")
        if self.kind == "linear":
            return ("linear+bias" + ("+relu" if self.activation else "")
                    + (f"+dropout({self.dropout})" if self.dropout else ""))
        return {"relu": "relu", "lrn": "local_response_norm", "maxpool": "max_pool2d",
                "lrn_maxpool": "lrn_max_pool2d (fused)", "dropout": "dropout",
                "flatten": "view (no kernel)", "softmax": "softmax (torch, on probabilities only)"}[self.kind]

    def describe(self):
        parts = f"{self.parts}x" if self.parts > 1 else ""
        return (f"{self.label:22} {self.kind:11} -> {parts}{self.shape}"
                + (f"  reads {self.params['reads']}" if "reads" in self.params else "")
                + (f"  on {', '.join(self.devices)}" if self.devices else ""))


def build_graph(spec):
    """One node per spec layer, in order."""
    return [Node(layer.name, layer.kind, dict(layer.params), layer.index) for layer in spec.layers]


def _out_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def infer_shapes(graph, spec):
    """The graph with parts/shape of every node filled in (new nodes: the input graph is not
    changed); raise SpecError where a layer cannot run at this input."""
    layers = {layer.name: layer for layer in spec.layers}
    towers = spec.towers
    parts, shape = 1, (spec.channels, spec.size, spec.size)
    out = []
    for node in graph:
        layer = layers[node.name]
        node = dataclasses.replace(node, in_parts=parts, in_shape=shape)
        p = node.params
        if node.kind in ("conv", "linear"):
            width_key = "out_channels" if node.kind == "conv" else "out_features"
            total = p[width_key]
            if node.kind == "conv" and len(shape) != 3:
                raise spec.error(layer, None, "a conv layer needs maps (C, H, W), not features")
            if node.kind == "linear" and len(shape) != 1:
                raise spec.error(layer, None, f"a linear layer needs features; add a flatten "
                                              f"layer before it (input is {shape})")
            split = p["split"] and towers > 1
            if split and total % towers:
                raise spec.error(layer, width_key, f"{total} does not split across {towers} towers")
            if node.kind == "conv":
                oh = _out_size(shape[1], p["kernel"], p["stride"], p["padding"])
                ow = _out_size(shape[2], p["kernel"], p["stride"], p["padding"])
                if oh < 1 or ow < 1:
                    raise spec.error(layer, "kernel", f"output would be empty ({oh}x{ow}) at input "
                                                      f"{shape[1]}x{shape[2]}")
            parts = towers if split else 1
            width = total // parts
            shape = (width, oh, ow) if node.kind == "conv" else (width,)
        elif node.kind == "maxpool":
            if len(shape) != 3:
                raise spec.error(layer, None, "a maxpool layer needs maps (C, H, W)")
            stride = p["stride"] or p["kernel"]  # (padding <= kernel / 2: checked by the spec loader)
            oh = _out_size(shape[1], p["kernel"], stride, p["padding"])
            ow = _out_size(shape[2], p["kernel"], stride, p["padding"])
            if oh < 1 or ow < 1:
                raise spec.error(layer, "kernel", f"output would be empty ({oh}x{ow}) at input "
                                                  f"{shape[1]}x{shape[2]}")
            shape = (shape[0], oh, ow)
        elif node.kind == "lrn":
            if len(shape) != 3:
                raise spec.error(layer, None, "an lrn layer needs maps (C, H, W)")
        elif node.kind == "flatten":
            size = 1
            for s in shape:
                size *= s
            shape = (size,)
        elif node.kind == "softmax":
            if node.name != graph[-1].name:
                raise spec.error(layer, None, "softmax must be the last layer")
            if parts != 1:
                raise spec.error(layer, None, "softmax needs one undivided input (give the last "
                                              "linear layer split = false)")
        node.parts, node.shape = parts, shape  # our own copy
        out.append(node)
        if parameter_count(node) > MAX_LAYER_PARAMETERS:
            key = "out_channels" if node.kind == "conv" else "out_features"
            raise spec.error(layer, key, f"the layer would hold {parameter_count(node):,} "
                                         f"parameters; at most {MAX_LAYER_PARAMETERS:,}")
        if math.prod(shape) * parts > MAX_IMAGE_ELEMENTS:
            raise spec.error(layer, None, f"its output would have {math.prod(shape) * parts:,} "
                                          f"elements per image; at most {MAX_IMAGE_ELEMENTS:,}")
    return out


def parameter_count(node):
    """Weights and biases of a node (all towers)."""
    if node.kind not in ("conv", "linear"):
        return 0
    fan_in = node.in_shape[0] * (node.in_parts if node.reads_all() else 1)
    if node.kind == "conv":
        fan_in *= node.params["kernel"] ** 2
    return (fan_in + 1) * node.shape[0] * node.parts


def forward_flops(node):
    """Forward FLOPs per image (2 per multiply-add; elementwise layers count 0)."""
    if node.kind not in ("conv", "linear"):
        return 0
    weights = parameter_count(node) - node.shape[0] * node.parts
    positions = node.shape[1] * node.shape[2] if node.kind == "conv" else 1
    return 2 * weights * positions
