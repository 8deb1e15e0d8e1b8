"""linear: a fully connected layer with bias (and the ReLU and dropout the compiler fuses).

Towers: `out_features` is the total over all towers; `reads = "all"` (AlexNet's) is one GEMM
over the towers' weights stacked, `"own"` one GEMM per tower on its slice (there is no grouped
GEMM); `split = false` makes it one undivided layer (fc8).
"""

import torch
import torch.nn.functional as TF

from .. import functional as XF
from . import MAX_FEATURES, REQUIRED, Case, Kind, Param, choice, in_width, integer, number


def _parameters(node):
    return {"weight": Param((node.shape[0], in_width(node)),
                            lambda t, p: torch.nn.init.normal_(t, 0.0, p["weight_std"])),
            "bias": Param((node.shape[0],), lambda t, p: torch.nn.init.constant_(t, p["bias_init"]))}


def _per_tower(linear, m, x, **fused):
    """linear over all of x, or (a layer reading its own tower) one GEMM per tower's slice."""
    if m.groups == 1:
        return linear(x, m.weight, m.bias, **fused)
    return torch.cat([linear(xi, wi, bi, **fused) for xi, wi, bi in zip(
        x.chunk(m.groups, 1), m.weight.chunk(m.groups), m.bias.chunk(m.groups))], dim=1)


def _forward(m, x, seed=None, out_dtype=None):
    node = m.node
    if m.backend == "triton":
        if m.groups == 1:  # ReLU and dropout in the GEMM's epilogue
            return XF.linear(x, m.weight, m.bias, activation=node.activation, dropout=node.dropout,
                             training=m.training, seed=seed, out_dtype=out_dtype)
        y = _per_tower(XF.linear, m, x, activation=node.activation, out_dtype=out_dtype)
        return XF.dropout(y, node.dropout, m.training, seed=seed) if node.dropout else y
    y = _per_tower(TF.linear, m, x)
    if node.activation:
        y = torch.relu(y)
    return TF.dropout(y, node.dropout, m.training) if node.dropout else y


def _bench(node, first):
    """One GEMM over all towers (a layer reading its own tower: one tower's GEMM). Bytes: the
    forward reads x, w, b and writes y; the backward reads dy, x, w (and y for the ReLU/dropout
    mask) and writes dx, dw, db."""
    fan_in = in_width(node)
    fan_out = node.shape[0] * (node.parts if node.reads_all() or node.in_parts == 1 else 1)
    relu = node.activation == "relu"

    def inputs(batch, dtype, layout, device, randn):
        return (randn(batch, fan_in).requires_grad_(),
                randn(fan_out, fan_in, scale=fan_in ** -0.5).requires_grad_(),
                randn(fan_out, scale=0.1).requires_grad_())

    def implementations(training=True):
        p = node.dropout if training else 0.0

        def stock(x, w, b):
            y = TF.linear(x, w, b)
            y = TF.relu(y, inplace=True) if relu else y
            return TF.dropout(y, p) if p else y

        def ours(x, w, b):
            return XF.linear(x, w, b, activation=node.activation, dropout=p)

        return {"tritonalex": ours, "torch": stock}

    def cost(batch, s):
        x, wt, b, y = batch * fan_in, fan_out * fan_in, fan_out, batch * fan_out
        gemm = 2 * batch * fan_in * fan_out
        return dict(forward=(gemm, (x + wt + b + y) * s),
                    backward=(2 * gemm, (y + (y if relu or node.dropout else 0) + 2 * x + 2 * wt + b) * s),
                    train_extra=0)

    return Case(inputs, implementations, cost, maps=False)


KINDS = [Kind(
    "linear",
    keys=dict(out_features=(REQUIRED, integer(1, MAX_FEATURES)), reads=("all", choice("own", "all")),
              split=(True, choice(True, False)), weight_std=(0.01, number(0)),
              bias_init=(0.0, number())),
    output=lambda node, width: (width,), forward=_forward, needs="features",
    dropout=lambda node: node.dropout, writes_logits=True,
    channels="out_features", parameters=_parameters, bench=_bench,
    flops=lambda node: 2 * node.shape[0] * in_width(node) * node.parts,
    kernel=lambda node: ("linear+bias" + ("+relu" if node.activation else "")
                         + (f"+dropout({node.dropout})" if node.dropout else "")))]
