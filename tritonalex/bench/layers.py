"""Every AlexNet layer as a benchmark case: its inputs, the tritonalex and torch implementations,
and its cost per direction (FLOPs, and the minimum bytes the layer must move through DRAM).

Layers are the one-tower (groups=2) form of ../shared/ALEXNET.md at 227x227 input:
conv1..conv5 (conv + bias + ReLU), lrn1/lrn2 (after conv1/conv2's ReLU), pool1/pool2/pool5
(3x3, stride 2), lrn_pool1/lrn_pool2 (the fused LRN -> pool) and fc6..fc8 (fc6/fc7 with ReLU and
dropout 0.5). The torch path is the stock one: cuDNN conv then in-place ReLU, cuBLAS linear,
torch's LocalResponseNorm (a composite of pad, avg_pool3d, pow, div) and max_pool2d.

Cost conventions, the ones the roofline floor uses:
- FLOPs count the matmul work only, 2 per multiply-add; LRN and pooling count 0 (their floor is
  bytes over bandwidth: their arithmetic is far below the card's FLOP rate).
- Bytes: forward reads its inputs and parameters and writes its output. A max-pool that is
  trained also writes int64 indices (8 bytes per output) in the forward, which its backward reads.
  Backward reads the output gradient and what the gradient needs (conv/fc: input, weight, the
  ReLU'd output for the mask; LRN: its input; pool: the indices; fused LRN -> pool: input and
  indices) and writes the gradients. conv1's input (the image) needs no gradient.
  "forward+backward" is a training step's forward plus the backward.
"""

import torch
import torch.nn.functional as TF

from .. import functional as F
from ..shapes import ALEXNET_CONVS, conv_shapes

PAPER_LRN = (5, 5e-4, 0.75, 2.0)  # size, alpha, beta, k: the paper's LRN in torch's convention
POOL = dict(kernel_size=3, stride=2)
MAPS = {  # input of each LRN / pool layer: (channels, height = width)
    "lrn1": (96, 55), "lrn2": (256, 27), "pool1": (96, 55), "pool2": (256, 27), "pool5": (256, 13),
    "lrn_pool1": (96, 55), "lrn_pool2": (256, 27),
}
FC_LAYERS = {"fc6": (9216, 4096, True), "fc7": (4096, 4096, True), "fc8": (4096, 1000, False)}
ORDER = ["conv1", "lrn1", "pool1", "lrn_pool1", "conv2", "lrn2", "pool2", "lrn_pool2", "conv3",
         "conv4", "conv5", "pool5", "fc6", "fc7", "fc8"]
GROUPS = {
    "conv": list(ALEXNET_CONVS),
    "lrn": ["lrn1", "lrn2", "lrn_pool1", "lrn_pool2"],  # the fused kernels are the LRN's real path
    "pool": ["pool1", "pool2", "pool5"],
    "fc": list(FC_LAYERS),
    "all": ORDER,
}
DIRECTIONS = ("forward", "backward", "forward+backward")
INDEX_BYTES = 8  # int64 pooling indices


def kind(layer):
    """conv, lrn, pool, lrn_pool or fc."""
    return ("lrn_pool" if layer.startswith("lrn_pool") else
            "fc" if layer in FC_LAYERS else layer.rstrip("0123456789"))


def select(names):
    """Layer names in network order from layer and group names; ValueError for an unknown one."""
    chosen = set()
    for name in names:
        if name in GROUPS:
            chosen.update(GROUPS[name])
        elif name in ORDER:
            chosen.add(name)
        else:
            raise ValueError(f"unknown layer {name!r}; layers: {', '.join(ORDER)}; "
                             f"groups: {', '.join(GROUPS)}")
    return [layer for layer in ORDER if layer in chosen]


def _pooled(hw):
    return (hw - POOL["kernel_size"]) // POOL["stride"] + 1


def cost(layer, batch, element_size, direction):
    """(FLOPs, minimum bytes) of `layer` at `batch` for one direction (see the module docstring)."""
    s, k = element_size, kind(layer)
    if k == "conv":
        (n, c, h, w), (oc, cg, kh, kw), args = conv_shapes(layer, batch)
        oh = (h + 2 * args["padding"] - kh) // args["stride"] + 1
        x, wt, b, y = n * c * h * w, oc * cg * kh * kw, oc, n * oc * oh * oh
        gemm = 2 * n * oh * oh * oc * cg * kh * kw
        input_grad = layer != "conv1"
        forward = (gemm, (x + wt + b + y) * s)
        # read dy, y (ReLU mask), x; write dw, db; input grad also reads w and writes dx
        backward = (gemm * (2 if input_grad else 1),
                    (2 * y + x + wt + b + ((wt + x) if input_grad else 0)) * s)
        train_extra = 0
    elif k == "fc":
        fan_in, fan_out, relu = FC_LAYERS[layer]
        x, wt, b, y = batch * fan_in, fan_out * fan_in, fan_out, batch * fan_out
        gemm = 2 * batch * fan_in * fan_out
        forward = (gemm, (x + wt + b + y) * s)
        # read dy, x, w (and y for the ReLU/dropout mask); write dx, dw, db
        backward = (2 * gemm, (y + (y if relu else 0) + 2 * x + 2 * wt + b) * s)
        train_extra = 0
    else:
        channels, hw = MAPS[layer]
        x = batch * channels * hw * hw
        if k == "lrn":
            forward, backward, train_extra = (0, 2 * x * s), (0, 3 * x * s), 0
        else:
            y = batch * channels * _pooled(hw) ** 2
            idx = y * INDEX_BYTES
            forward = (0, (x + y) * s)
            # pool: read dy, indices; write dx.  fused: also re-reads x to recompute the LRN
            backward = (0, (y + x + (x if k == "lrn_pool" else 0)) * s + idx)
            train_extra = idx  # a trained forward also writes the indices
    if direction == "forward":
        return forward
    if direction == "backward":
        return backward
    return forward[0] + backward[0], forward[1] + train_extra + backward[1]


def inputs(layer, batch, dtype, layout, device, seed=0):
    """The tensors a case reads, in the given layout; those that get gradients require grad."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).to(device, dtype)

    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    k = kind(layer)
    if k == "conv":
        x_shape, w_shape, _ = conv_shapes(layer, batch)
        x = randn(*x_shape).contiguous(memory_format=fmt).requires_grad_(layer != "conv1")
        fan_in = w_shape[1] * w_shape[2] * w_shape[3]
        return (x, randn(*w_shape, scale=fan_in ** -0.5).requires_grad_(),
                randn(w_shape[0], scale=0.1).requires_grad_())
    if k == "fc":
        fan_in, fan_out, _ = FC_LAYERS[layer]
        return (randn(batch, fan_in).requires_grad_(),
                randn(fan_out, fan_in, scale=fan_in ** -0.5).requires_grad_(),
                randn(fan_out, scale=0.1).requires_grad_())
    channels, hw = MAPS[layer]
    x = torch.relu(randn(batch, channels, hw, hw))  # LRN and pool read a ReLU's output
    return (x.contiguous(memory_format=fmt).requires_grad_(),)


def implementations(layer, dropout=0.5):
    """{"tritonalex": fn, "torch": fn}: each maps the case's inputs to the layer's output."""
    k = kind(layer)
    if k == "conv":
        args = conv_shapes(layer, 1)[2]
        return {"tritonalex": lambda x, w, b: F.conv2d(x, w, b, activation="relu", **args),
                "torch": lambda x, w, b: TF.relu(TF.conv2d(x, w, b, **args), inplace=True)}
    if k == "fc":
        if not FC_LAYERS[layer][2]:
            return {"tritonalex": F.linear, "torch": TF.linear}
        return {"tritonalex": lambda x, w, b: F.linear(x, w, b, activation="relu", dropout=dropout),
                "torch": lambda x, w, b: TF.dropout(TF.relu(TF.linear(x, w, b), inplace=True),
                                                    dropout)}
    if k == "lrn":
        return {"tritonalex": lambda x: F.local_response_norm(x, *PAPER_LRN),
                "torch": lambda x: TF.local_response_norm(x, *PAPER_LRN)}
    if k == "pool":
        return {"tritonalex": lambda x: F.max_pool2d(x, **POOL),
                "torch": lambda x: TF.max_pool2d(x, **POOL)}
    return {"tritonalex": lambda x: F.lrn_max_pool2d(x, *PAPER_LRN, **POOL),
            "torch": lambda x: TF.max_pool2d(TF.local_response_norm(x, *PAPER_LRN), **POOL)}


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
