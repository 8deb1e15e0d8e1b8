"""Graph passes: fusion (each can be switched off by name) and device placement."""

import dataclasses

from .. import kinds


def _fold(graph, matches, merge):
    """Walk the chain; where matches(node, next) holds, merge the next node into this one."""
    out = []
    for node in graph:
        if out and matches(out[-1], node):
            merged = merge(dataclasses.replace(out[-1], fused=list(out[-1].fused)), node)
            merged.fused.append(node.name)
            merged.parts, merged.shape = node.parts, node.shape
            out[-1] = merged
        else:
            out.append(node)
    return out


def fuse_conv_relu(graph):
    """conv -> relu and linear -> relu become one node with activation="relu"."""
    def merge(node, relu):
        node.activation = "relu"
        return node
    return _fold(graph, lambda a, b: a.kind in ("conv", "linear") and a.activation is None
                 and not a.fused and b.kind == "relu", merge)


def fuse_linear_dropout(graph):
    """linear(+relu) -> dropout becomes one node: dropout in the GEMM epilogue."""
    def merge(node, drop):
        node.dropout = drop.params["p"]
        return node
    return _fold(graph, lambda a, b: a.kind == "linear" and not a.dropout and b.kind == "dropout",
                 merge)


def fuse_lrn_maxpool(graph):
    """lrn -> maxpool becomes one lrn_maxpool node (the fused LRN -> max-pool kernel)."""
    def merge(node, pool):
        node.kind = "lrn_maxpool"
        node.params = {"lrn": node.params, "pool": pool.params}
        return node
    return _fold(graph, lambda a, b: a.kind == "lrn" and b.kind == "maxpool", merge)


def fold_batchnorm(graph):
    """conv -> batchnorm: in evaluation the norm is an affine map per output channel, folded into
    the conv's weights and bias (one conv launch, no batch-norm launch); in training both run (the
    norm needs the batch's statistics). Both nodes stay, so parameters and state_dict do not
    change: the conv records the norm it folds (`folds`), the norm that it is folded (`folded`)."""
    out = []
    for node in graph:
        prev = out[-1] if out else None
        if prev is not None and prev.kind == "conv" and prev.activation is None \
                and prev.folds is None and node.kind == "batchnorm":
            out[-1] = dataclasses.replace(prev, folds=node.name)
            node = dataclasses.replace(node, folded=True)
        out.append(node)
    return out


def defer_relu_grad(graph):
    """conv+relu -> a node whose kind can mask its input gradient (`Kind.masks_relu_input`: conv,
    LRN, max-pool, fused LRN -> max-pool): the ReLU's derivative moves out of the conv's two
    backward kernels (no mask on dy, no saved output: see kernels/conv.py) into the next node's
    backward, which zeroes the gradient it returns where its input is <= 0. In the chain a conv's
    output has that one consumer, so the pair always meets. Run after the fusions it reads."""
    out = []
    for node in graph:
        prev = out[-1] if out else None
        if prev is not None and prev.kind == "conv" and prev.activation == "relu" \
                and kinds.get(node.kind).masks_relu_input:
            out[-1] = dataclasses.replace(prev, defer_relu_grad=True)
            node = dataclasses.replace(node, relu_input=True)
        out.append(node)
    return out


FUSION_PASSES = {  # run in this order by default
    "fold_batchnorm": fold_batchnorm,
    "fuse_conv_relu": fuse_conv_relu,
    "fuse_linear_dropout": fuse_linear_dropout,
    "fuse_lrn_maxpool": fuse_lrn_maxpool,
    "defer_relu_grad": defer_relu_grad,
}


def place(graph, towers, devices):
    """The graph with each node's output devices set (new nodes): tower i on devices[i];
    undivided outputs on devices[0].

    `devices` is one device for everything, or one per tower.
    """
    devices = tuple(str(d) for d in devices)
    if len(devices) not in (1, towers):
        raise ValueError(f"devices: give one device, or one per tower ({towers}); got {devices}")
    return [dataclasses.replace(node, devices=tuple(devices[i % len(devices)]
                                                   for i in range(node.parts)))
            for node in graph]
