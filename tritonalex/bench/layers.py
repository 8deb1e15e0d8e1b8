"""Every layer of a spec (default `alexnet`) as a benchmark case: its inputs, the tritonalex and
torch implementations, and its cost per direction (FLOPs, and the minimum bytes the layer must
move through DRAM). The cases come from the spec's compiled graph and each kind's record
(tritonalex.kinds): the spec is the one source of the geometry.

Cases are the layers with a kernel of their own, as a training step on one device runs them
(the towers of a layer as one layer; conv and linear with their fused ReLU and dropout): for
`alexnet` at 227x227, conv1..conv5, lrn1, lrn2, pool1, pool2, pool5, the fused LRN -> pool nodes
(named `lrn1+pool1`, `lrn2+pool2`, the compiler's label) and fc6..fc8. Groups are the kind names
(conv, lrn, maxpool, lrn_maxpool, linear) and `all`. The torch path is the stock one: cuDNN conv
then in-place ReLU, cuBLAS linear, torch's LocalResponseNorm (a composite of pad, avg_pool3d, pow,
div) and max_pool2d.

Cost conventions, the ones the roofline floor uses:
- FLOPs count the matmul work only, 2 per multiply-add; LRN and pooling count 0 (their floor is
  bytes over bandwidth: their arithmetic is far below the card's FLOP rate).
- Bytes: forward reads its inputs and parameters and writes its output. A max-pool that is
  trained also writes int64 indices (8 bytes per output) in the forward, which its backward reads.
  Backward reads the output gradient and what the gradient needs (conv/fc: input, weight, the
  ReLU'd output for the mask; LRN: its input; pool: the indices; fused LRN -> pool: input and
  indices) and writes the gradients. The first layer's input (the image) needs no gradient.
  "forward+backward" is a training step's forward plus the backward.
"""

import functools

import torch

from .. import kinds
from ..compiler import stages
from ..spec import load_spec

DIRECTIONS = ("forward", "backward", "forward+backward")
UNFUSED = ["fuse_conv_relu", "fuse_linear_dropout"]  # the graph of the standalone LRN and pool cases


@functools.lru_cache(maxsize=8)
def cases(spec="alexnet"):
    """{case name: (node, Case)} in network order, for a shipped spec's name or a path: each node
    of the graph with conv/linear fusions, and after the last layer it folds, each node of a kind
    that only a fusion pass makes (the fused LRN -> pool, named by its label)."""
    spec = load_spec(spec)
    unfused = list(stages(spec, UNFUSED))[-1][1]
    fused_after = {node.fused[-1]: node for node in list(stages(spec))[-1][1]
                   if not kinds.get(node.kind).in_spec}
    out = {}
    for position, node in enumerate(unfused):
        for n in (node, fused_after.get(node.name)):
            if n is not None and kinds.get(n.kind).bench:
                out[node.name if n is node else n.label] = (n, kinds.get(n.kind).bench(n, position == 0))
    return out


def order(spec="alexnet"):
    return list(cases(spec))


def groups(spec="alexnet"):
    """{group: case names}: each kind with cases, and all."""
    out = {}
    for name, (node, _) in cases(spec).items():
        out.setdefault(node.kind, []).append(name)
    out["all"] = order(spec)
    return out


def select(names, spec="alexnet"):
    """Case names in network order from case and group names; ValueError for an unknown one."""
    chosen, by_group, everything = set(), groups(spec), order(spec)
    for name in names:
        if name in by_group:
            chosen.update(by_group[name])
        elif name in everything:
            chosen.add(name)
        else:
            raise ValueError(f"unknown layer {name!r}; layers: {', '.join(everything)}; "
                             f"groups: {', '.join(by_group)}")
    return [name for name in everything if name in chosen]


def label(name, spec="alexnet"):
    """A case's name in result rows: alexnet's plain, another spec's prefixed (`zfnet:conv1`)."""
    return name if spec == "alexnet" else f"{spec}:{name}"


def case(name, spec="alexnet"):
    return cases(spec)[name][1]


def cost(name, batch, element_size, direction, spec="alexnet"):
    """(FLOPs, minimum bytes) of case `name` at `batch` for one direction (see the docstring)."""
    c = case(name, spec).cost(batch, element_size)
    if direction in ("forward", "backward"):
        return c[direction]
    return (c["forward"][0] + c["backward"][0],
            c["forward"][1] + c["train_extra"] + c["backward"][1])


def inputs(name, batch, dtype, layout, device, seed=0, spec="alexnet"):
    """The tensors a case reads, in the given layout; those that get gradients require grad."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        drawn = torch.randn(*shape, generator=gen, device=gen.device, dtype=torch.float64)
        return (scale * drawn).to(device, dtype)

    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    return case(name, spec).inputs(batch, dtype, fmt, device, randn)


def implementations(name, training=True, spec="alexnet"):
    """{"tritonalex": fn, "torch": fn}: each maps the case's inputs to the layer's output
    (training=False: dropout off)."""
    return case(name, spec).implementations(training)


def takes_layout(name, spec="alexnet"):
    """Whether the case's activations have a memory layout (maps), or are row-major (features)."""
    return case(name, spec).maps


def step(fn, args, direction, grad_output):
    """A zero-argument callable running `fn(*args)` in one direction.

    forward runs under no_grad (inference); backward runs the forward once now and then only
    the backward (retain_graph), with torch.autograd.grad so nothing accumulates into .grad;
    forward+backward runs both, as a training step does.
    """
    wrt = [t for t in args if t.requires_grad]
    if direction == "forward":
        def forward():
            with torch.no_grad():
                return fn(*args)
        return forward
    if direction == "backward":
        out = fn(*args)
        return lambda: torch.autograd.grad(out, wrt, grad_output, retain_graph=True)
    return lambda: torch.autograd.grad(fn(*args), wrt, grad_output)
