"""One record per layer kind: everything the rest of tritonalex knows about a kind, in one place.

A `Kind` holds a kind's spec keys (default and check), its shape rule, its parameters and buffers
(shape and initialization per tower), its FLOPs, what runs it on each backend, and its benchmark
case. The spec loader, the compiler (shapes, lowering), `summary`, `bench` and the static model
read the records; none of them names a kind. Each file of this package defines the records of one
kind (and of the fused kinds built from it) in a module-level `KINDS` list; the package finds them
on import, so adding a kind is adding a file here (see "Adding a layer kind" in the README).
An unknown kind is an error everywhere: `get` raises.

Conventions the records share:
- A node's input is `in_parts` tensors of per-image shape `in_shape`, its output `parts` tensors
  of per-image shape `shape` (see compiler/graph.py). A kind with `channels` (conv, linear)
  computes that many channels in total, split across the towers unless `split = false`; other
  kinds act on each tower's part alone and keep the tower split.
- `forward(m, x)` runs the node on one tensor `x` holding `m.towers` towers side by side (the
  towers of one device run as one layer: see compiler/lower.py); `m.backend` is "triton" or
  "torch", `m.groups` how many input towers `x` holds that the layer must keep apart, and the
  record's parameters and buffers are attributes of `m`, the towers' stacked along dim 0. A kind
  with `rounds_weight`, a `dropout` or `writes_logits` also takes `rounded_weight=`, `seed=` or
  `out_dtype=`: what the compiled net makes once per forward for all such layers (one cast, one
  random draw; fp32 logits under autocast: lower.py).
- FLOPs count 2 per multiply-add of the matmul work only; bytes are the minimum a layer moves
  through DRAM (see bench/layers.py for the conventions).
"""

import dataclasses
import importlib
import math
import pkgutil
from typing import Callable

from ..kernels.geometry import out_size  # noqa: F401  (the records' output-size rule)

REQUIRED = object()  # a spec key without a default


class LayerError(ValueError):
    """A layer that cannot run at its input: (key or None, message); the spec names file and layer."""

    def __init__(self, key, message):
        super().__init__(message)
        self.key, self.message = key, message


@dataclasses.dataclass(frozen=True)
class Param:
    """A parameter or buffer of one tower: its shape (from the node) and its initialization."""

    shape: tuple
    init: Callable  # (tensor, params) -> None, in place
    dtype: object = None  # None: the default float dtype
    channels_last: bool = False  # kept OHWI in memory on the triton backend (conv weights)


@dataclasses.dataclass(frozen=True)
class Case:
    """A layer as a benchmark case (bench/layers.py): its inputs, its two implementations, its cost.

    inputs(batch, dtype, layout, device, randn) -> tensors (those that get gradients require grad);
    implementations(training=True) -> {"tritonalex": fn, "torch": fn}, each mapping the inputs to
    the output (training=False: dropout off, for a deterministic comparison);
    cost(batch, element_size) -> {direction: (FLOPs, minimum bytes)} for "forward", "backward"
    and the extra bytes a trained forward writes ("train_extra", e.g. pooling indices).
    """

    inputs: Callable
    implementations: Callable
    cost: Callable
    maps: bool = True  # takes a memory layout (conv, LRN, pool); False: row-major (linear)


def maps_case(node, implementations, cost):
    """A case reading one ReLU'd map tensor shaped as the node's input (all towers): LRN, pooling
    and batch norm read a ReLU's output. `cost(x, element_size)` for x input elements."""
    c, (h, w) = node.in_shape[0] * node.in_parts, node.in_shape[1:]

    def inputs(batch, dtype, layout, device, randn):
        x = randn(batch, c, h, w).relu()
        return (x.contiguous(memory_format=layout).requires_grad_(),)

    return Case(inputs, lambda training=True: dict(implementations),
                lambda batch, s: cost(batch * c * h * w, s))


def elementwise_cost(x, s):
    """Bytes of a layer that maps x elements to as many (LRN, batch norm): the forward reads x and
    writes y; the backward reads x and dy and writes dx."""
    return dict(forward=(0, 2 * x * s), backward=(0, 3 * x * s), train_extra=0)


def _no_parameters(node):
    return {}


@dataclasses.dataclass(frozen=True)
class Kind:
    """A layer kind's record (see the module docstring). `output` gets `width`, the channels one
    output part holds, for a kind with `channels` (None for the others)."""

    name: str
    keys: dict  # spec key -> (default or REQUIRED, check: value -> error message or None)
    output: Callable  # (node, width) -> per-part output shape; raises LayerError
    forward: Callable  # (module, x) -> y, see the module docstring
    kernel: Callable  # node -> what runs it on the triton backend (summary, explain)
    needs: str = "maps"  # the input it takes: "maps" (C, H, W), "features" (F,) or "any"
    channels: str = None  # the spec key of the channels it computes (split across towers)
    parameters: Callable = _no_parameters  # node -> {name: Param} of one tower
    buffers: Callable = _no_parameters  # node -> {name: Param} of one tower
    flops: Callable = lambda node: 0  # forward FLOPs per image
    bench: Callable = None  # (node, first) -> Case; first: the network's input layer
    check: Callable = None  # params -> (key, message) or None: rules across keys
    in_spec: bool = True  # False: made only by a fusion pass
    masks_relu_input: bool = False  # its triton forward takes relu_input=True (pass defer_relu_grad)
    # Per-forward inputs the compiled net makes for all such layers at once (compiler/lower.py):
    rounds_weight: bool = False  # its triton forward takes rounded_weight= (one cast under autocast)
    dropout: Callable = lambda node: 0.0  # p of the dropout it applies in training: takes seed=
    writes_logits: bool = False  # as the net's last layer takes out_dtype= (fp32 under autocast)
    last: bool = False  # must be the network's last layer

    def parameter_count(self, node):
        """Parameters of all towers of `node` (buffers not counted)."""
        per_tower = sum(math.prod(p.shape) for p in self.parameters(node).values())
        return per_tower * node.parts


def tower_groups(node):
    """The input towers a layer holding all of `node`'s towers in one tensor keeps apart: each
    output tower reads only its own (a grouped conv, an LRN's windows), or 1 when it reads all."""
    return node.in_parts if node.parts > 1 and not node.reads_all() else 1


def in_width(node):
    """Input channels (or features) one tower of `node` reads: its own part, or all parts."""
    return node.in_shape[0] * (node.in_parts if node.reads_all() else 1)


# ---------------------------------------------------------------------- spec key checks


def integer(low, high):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {show(value)}"
        if not low <= value <= high:
            return f"must be between {low} and {high}, got {value}"
        return None
    return check


def number(low=-math.inf, high=math.inf, low_open=False):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {show(value)}"
        if not math.isfinite(value):
            return f"must be finite, got {value}"
        if value < low or value > high or (low_open and value == low):
            bound = f"> {low}" if low_open else f">= {low}"
            return (f"must be {bound}" + (f" and <= {high}" if high != math.inf else "")
                    + f", got {value}")
        return None
    return check


def choice(*allowed):
    def check(value):
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            return f"must be one of {', '.join(repr(a) for a in allowed)}, got {show(value)}"
        return None
    return check


def show(value):
    return f"{type(value).__name__} {value!r}"


# Largest sizes a spec may ask for: far above any AlexNet-family network, far below what would
# try to allocate terabytes.
MAX_CHANNELS = 1 << 16
MAX_FEATURES = 1 << 20
MAX_WINDOW = 64  # kernel, stride and padding of convs and pools; LRN size
MAX_INPUT = 4096


# ---------------------------------------------------------------------- the registry


def _discover():
    kinds = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for kind in getattr(module, "KINDS", ()):
            if kind.name in kinds:
                raise RuntimeError(f"layer kind {kind.name!r} is defined twice")
            kinds[kind.name] = kind
    return kinds


_KINDS = None


def all_kinds():
    """{name: Kind} of every kind, those made by fusion passes included."""
    global _KINDS
    if _KINDS is None:
        _KINDS = _discover()
    return _KINDS


def spec_kinds():
    """{name: Kind} of the kinds a spec file may name."""
    return {name: kind for name, kind in all_kinds().items() if kind.in_spec}


def get(name):
    """The record of kind `name`; KeyError naming the known kinds for any other."""
    kinds = all_kinds()
    if name not in kinds:
        raise KeyError(f"unknown layer kind {name!r} (known: {', '.join(kinds)})")
    return kinds[name]
