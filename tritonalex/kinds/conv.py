"""conv: a 2-D convolution with bias (and a ReLU the compiler fuses), square kernel, zero padding.

Towers: `out_channels` is the total over all towers; `reads = "own"` makes it a grouped conv
(groups = towers) when the towers share a device, `"all"` one conv over every tower's maps.
On the triton backend its weights are kept OHWI in memory (channels_last), the layout the conv
kernels read (see compiler/lower.py).
"""

import torch
import torch.nn.functional as TF

from .. import functional as XF
from . import (
    MAX_CHANNELS,
    MAX_WINDOW,
    REQUIRED,
    Case,
    Kind,
    LayerError,
    Param,
    choice,
    in_width,
    integer,
    number,
    out_size,
    tower_groups,
)


def _output(node, width):
    p, (_, h, w) = node.params, node.in_shape
    oh, ow = (out_size(size, p["kernel"], p["stride"], p["padding"]) for size in (h, w))
    if oh < 1 or ow < 1:
        raise LayerError("kernel", f"output would be empty ({oh}x{ow}) at input {h}x{w}")
    return (width, oh, ow)


def _parameters(node):
    k = node.params["kernel"]
    return {"weight": Param((node.shape[0], in_width(node), k, k),
                            lambda t, p: torch.nn.init.normal_(t, 0.0, p["weight_std"]),
                            channels_last=True),
            "bias": Param((node.shape[0],), lambda t, p: torch.nn.init.constant_(t, p["bias_init"]))}


def _with_folded_norm(m):
    """(weight, bias) of the conv followed by its batch norm in evaluation (compiler pass
    `fold_batchnorm`): with s = gamma / sqrt(running_var + eps), w' = w s and
    b' = (b - running_mean) s + beta, per output channel. Cached while no tensor changes (their
    storage and version counters) and no gradient is wanted."""
    (norm,) = m.folded_norm
    tensors = (m.weight, m.bias, norm.weight, norm.bias, norm.running_mean, norm.running_var)
    key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)  # .to() / .data swaps too
    cached = m.__dict__.get("_folded")
    if cached is not None and cached[0] == key and not torch.is_grad_enabled():
        return cached[1]
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.node.params["eps"])
    folded = (m.weight * scale.view(-1, 1, 1, 1), (m.bias - norm.running_mean) * scale + norm.bias)
    m.__dict__["_folded"] = (key, folded) if not torch.is_grad_enabled() else None
    return folded


def _forward(m, x, rounded_weight=None):
    p, relu = m.node.params, m.node.activation == "relu"
    weight, bias = m.weight, m.bias
    if m.node.folds and not m.training:
        (weight, bias), rounded_weight = _with_folded_norm(m), None
    if m.backend == "triton":
        return XF.conv2d(x, weight, bias, p["stride"], p["padding"], groups=m.groups,
                         activation=m.node.activation, defer_relu_grad=m.node.defer_relu_grad,
                         relu_input=m.node.relu_input, rounded_weight=rounded_weight)
    y = TF.conv2d(x, weight, bias, p["stride"], p["padding"], groups=m.groups)
    return torch.relu(y) if relu else y


def _flops(node):
    weights = node.shape[0] * in_width(node) * node.params["kernel"] ** 2 * node.parts
    return 2 * weights * node.shape[1] * node.shape[2]


def geometry(node, batch):
    """(input shape, weight shape, conv keyword arguments) of the node as one conv over all its
    towers (grouped when it reads its own tower), at `batch`."""
    p, k = node.params, node.params["kernel"]
    groups = tower_groups(node)
    c = node.in_shape[0] * node.in_parts
    return ((batch, c, *node.in_shape[1:]), (node.shape[0] * node.parts, c // groups, k, k),
            dict(stride=p["stride"], padding=p["padding"], groups=groups))


def _bench(node, first):
    """Bytes: the forward reads x, w, b and writes y; the backward reads dy, y (the ReLU mask),
    x and writes dw, db, and (unless it is the first layer: the image needs no gradient) reads
    w, writes dx."""
    (_, c, h, w), (oc, cg, k, _), args = geometry(node, 1)
    oh, ow = node.shape[1:]
    relu = node.activation == "relu"

    def inputs(batch, dtype, layout, device, randn):
        x = randn(batch, c, h, w).contiguous(memory_format=layout).requires_grad_(not first)
        return (x, randn(oc, cg, k, k, scale=(cg * k * k) ** -0.5).requires_grad_(),
                randn(oc, scale=0.1).requires_grad_())

    def stock(x, w, b):
        y = TF.conv2d(x, w, b, **args)
        return TF.relu(y, inplace=True) if relu else y

    def cost(batch, s):
        x, wt, b, y = batch * c * h * w, oc * cg * k * k, oc, batch * oc * oh * ow
        gemm = 2 * batch * oh * ow * oc * cg * k * k
        return dict(forward=(gemm, (x + wt + b + y) * s),
                    backward=(gemm * (1 if first else 2),
                              (y + (y if relu else 0) + x + wt + b + (0 if first else wt + x)) * s),
                    train_extra=0)

    def ours(x, w, b):
        return XF.conv2d(x, w, b, activation=node.activation, **args)

    return Case(inputs, lambda training=True: {"tritonalex": ours, "torch": stock}, cost)


KINDS = [Kind(
    "conv",
    keys=dict(out_channels=(REQUIRED, integer(1, MAX_CHANNELS)), kernel=(REQUIRED, integer(1, MAX_WINDOW)),
              stride=(1, integer(1, MAX_WINDOW)), padding=(0, integer(0, MAX_WINDOW)),
              reads=("own", choice("own", "all")), split=(True, choice(True, False)),
              weight_std=(0.01, number(0)), bias_init=(0.0, number())),
    output=_output, forward=_forward, channels="out_channels", parameters=_parameters,
    flops=_flops, bench=_bench,
    kernel=lambda node: "conv2d+bias" + ("+relu" if node.activation else ""),
    masks_relu_input=True, rounds_weight=True)]
