"""Per-layer summary of a compiled spec: shapes, parameters, FLOPs, memory, kernels, devices."""

from .. import kinds
from .graph import forward_flops, parameter_count


def summarize(spec, graph, batch=128, bytes_per_element=4):
    """(rows, totals): one row per node of a placed graph, and the network's totals.

    Activation memory is the node's output at `batch`; crossing bytes count, per training step,
    the parts a node reads from other devices (forward) and the gradients sent back (backward),
    for a placement with one device per tower.
    """
    rows, crossing = [], 0
    for node in graph:
        out_elems = node.parts
        for s in node.shape:
            out_elems *= s
        in_part = 1
        for s in node.in_shape:
            in_part *= s
        if node.reads_all() and node.in_parts > 1:
            # each output part's tower reads every other tower's part, forward and backward
            crossing += 2 * node.parts * (node.in_parts - 1) * in_part * batch * bytes_per_element
        shape = (node.parts * node.shape[0],) + tuple(node.shape[1:])
        rows.append(dict(
            layer=node.label, kind=node.kind,
            towers=(("all" if node.reads_all() else "own") + f" -> {node.parts}"
                    if kinds.get(node.kind).channels else str(node.parts)),
            output="x".join(str(s) for s in shape[1:] + shape[:1]) if len(shape) == 3 else str(shape[0]),
            parameters=parameter_count(node), forward_flops=forward_flops(node),
            activation_bytes=out_elems * batch * bytes_per_element, kernel=node.kernel(),
            devices=",".join(dict.fromkeys(node.devices))))
    totals = dict(parameters=sum(r["parameters"] for r in rows),
                  forward_flops=sum(r["forward_flops"] for r in rows),
                  activation_bytes=sum(r["activation_bytes"] for r in rows),
                  crossing_bytes_per_step=crossing, batch=batch, spec=spec.name)
    return rows, totals
