"""The compiler's IR: a chain of layer nodes, each knowing its tower split and output shape.

A node's output is `parts` tensors, one per tower (parts = towers) or one undivided (parts = 1);
`shape` is the per-image shape of one part: (C, H, W) for maps, (F,) for features.
"""

import dataclasses
import math

from .. import kinds

# Per layer, at most 2^31 parameters and 2^31 output elements per image (8 GiB each in fp32): far
# above any AlexNet-family network, and a clear error instead of an attempt to allocate terabytes.
MAX_LAYER_PARAMETERS = 1 << 31
MAX_IMAGE_ELEMENTS = 1 << 31


@dataclasses.dataclass
class Node:
    name: str  # the spec layer's name (a fused node keeps its first layer's name)
    kind: str  # a layer kind's name (tritonalex.kinds), e.g. conv, lrn_maxpool
    params: dict  # the spec keys (for lrn_maxpool: both layers' keys, see passes.py)
    index: int  # position of the first layer in the spec file
    fused: list = dataclasses.field(default_factory=list)  # names of layers folded into this one
    activation: str = None  # "relu" when a following ReLU was fused (conv, linear)
    dropout: float = 0.0  # p of a fused dropout (linear)
    folds: str = None  # the batchnorm node folded into this conv in evaluation (see passes.py)
    folded: bool = False  # a batchnorm folded into the conv before it in evaluation
    defer_relu_grad: bool = False  # a conv+relu whose next node applies the ReLU's derivative
    relu_input: bool = False  # applies the ReLU derivative of the conv+relu before it (see passes.py)
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
        return kinds.get(self.kind).kernel(self)

    def describe(self):
        parts = f"{self.parts}x" if self.parts > 1 else ""
        return (f"{self.label:22} {self.kind:11} -> {parts}{self.shape}"
                + (f"  folds {self.folds} (eval)" if self.folds else "")
                + ("  relu grad in next" if self.defer_relu_grad else "")
                + ("  relu grad of previous" if self.relu_input else "")
                + (f"  reads {self.params['reads']}" if "reads" in self.params else "")
                + (f"  on {', '.join(self.devices)}" if self.devices else ""))


def build_graph(spec):
    """One node per spec layer, in order."""
    return [Node(layer.name, layer.kind, dict(layer.params), layer.index) for layer in spec.layers]


def infer_shapes(graph, spec):
    """The graph with parts/shape of every node filled in (new nodes: the input graph is not
    changed); raise SpecError where a layer cannot run at this input. Each kind's record gives
    its shape rule (tritonalex.kinds); the tower split is the same for every kind."""
    layers = {layer.name: layer for layer in spec.layers}
    parts, shape = 1, (spec.channels, spec.size, spec.size)
    out = []
    for position, node in enumerate(graph):
        layer = layers[node.name]
        try:
            kind = kinds.get(node.kind)
        except KeyError as exc:
            raise spec.error(layer, "kind", exc.args[0]) from None
        node = dataclasses.replace(node, in_parts=parts, in_shape=shape)
        if kind.needs == "maps" and len(shape) != 3:
            raise spec.error(layer, None, f"a {kind.name} layer needs maps (C, H, W), not features "
                                          f"{shape}")
        if kind.needs == "features" and len(shape) != 1:
            raise spec.error(layer, None, f"a {kind.name} layer needs features; add a flatten "
                                          f"layer before it (input is {shape})")
        if kind.last and position != len(graph) - 1:
            raise spec.error(layer, None, f"{kind.name} must be the last layer")
        width = None
        if kind.channels:  # computes channels: split across the towers, or one undivided layer
            total = node.params[kind.channels]
            split = node.params["split"] and spec.towers > 1
            if split and total % spec.towers:
                raise spec.error(layer, kind.channels, f"{total} does not split across "
                                                       f"{spec.towers} towers")
            parts = spec.towers if split else 1
            width = total // parts
        node.parts = parts  # our own copy
        try:
            node.shape = shape = tuple(kind.output(node, width))
        except kinds.LayerError as exc:
            raise spec.error(layer, exc.key, exc.message) from None
        out.append(node)
        if parameter_count(node) > MAX_LAYER_PARAMETERS:
            raise spec.error(layer, kind.channels, f"the layer would hold {parameter_count(node):,} "
                                                   f"parameters; at most {MAX_LAYER_PARAMETERS:,}")
        if math.prod(shape) * parts > MAX_IMAGE_ELEMENTS:
            raise spec.error(layer, None, f"its output would have {math.prod(shape) * parts:,} "
                                          f"elements per image; at most {MAX_IMAGE_ELEMENTS:,}")
    return out


def parameter_count(node):
    """Parameters of a node (all towers)."""
    return kinds.get(node.kind).parameter_count(node)


def forward_flops(node):
    """Forward FLOPs per image (2 per multiply-add; elementwise layers count 0)."""
    return kinds.get(node.kind).flops(node)
