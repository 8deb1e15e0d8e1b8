"""The spec compiler: parse -> graph -> shapes -> fusion passes -> placement -> lowering.

    model = tritonalex.compile(tritonalex.load_spec("alexnet"), backend="triton")

Each stage is a plain function over a list of `graph.Node`; `explain` returns the graph as text
after every stage, which `tritonalex compile SPEC --explain` prints.
"""

from .graph import build_graph, forward_flops, infer_shapes, parameter_count
from .lower import CompiledNet, lower
from .passes import FUSION_PASSES, place

__all__ = ["CompiledNet", "FUSION_PASSES", "compile", "explain", "forward_flops", "parameter_count",
           "parse_devices", "stages"]


def stages(spec, passes=None, devices=("cpu",)):
    """Yield (stage name, graph) after each compiler stage. `passes`: fusion pass names to run
    (default: all of FUSION_PASSES, in order)."""
    passes = list(FUSION_PASSES) if passes is None else list(passes)
    unknown = [p for p in passes if p not in FUSION_PASSES]
    if unknown:
        raise ValueError(f"unknown passes {unknown}; available: {', '.join(FUSION_PASSES)}")
    graph = build_graph(spec)
    yield "build graph", graph
    graph = infer_shapes(graph, spec)
    yield "infer shapes", graph
    for name in passes:
        graph = FUSION_PASSES[name](graph)
        yield name, graph
    graph = place(graph, spec.towers, devices)
    yield "place", graph


def parse_devices(text=None):
    """Devices from a comma-separated list ("cuda:0,cuda:1"), or the default when none is given:
    cuda:0 when CUDA is present, the CPU otherwise."""
    import torch

    if not text:
        return ("cuda:0",) if torch.cuda.is_available() else ("cpu",)
    devices = tuple(d.strip() for d in text.split(",") if d.strip())
    for d in devices:
        try:
            device = torch.device(d)
        except RuntimeError:
            raise ValueError(f"--devices: {d!r} is not a device (e.g. cpu, cuda:0)") from None
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise ValueError(f"--devices: {d} needs CUDA, and this machine has no CUDA device")
            if device.index is not None and device.index >= count:
                raise ValueError(f"--devices: {d} does not exist ({count} CUDA device(s))")
        elif device.type not in ("cpu", "meta"):
            raise ValueError(f"--devices: {d}: tritonalex runs on cpu or cuda devices")
    if not devices:
        raise ValueError("--devices: no device given")
    return devices


def compile(spec, backend="triton", devices=None, passes=None):
    """Compile a Spec (see tritonalex.load_spec) to an nn.Module.

    devices: None (CPU, or cuda:0 when CUDA is present), one device, or one per tower.
    passes: fusion passes to run (default all); the torch backend runs the same graph.
    """
    import torch

    if devices is None:
        devices = parse_devices()
    elif isinstance(devices, (str, torch.device)):
        devices = (devices,)
    graph = None
    for _, graph in stages(spec, passes, devices):
        pass
    return lower(spec, graph, backend)


def explain(spec, passes=None, devices=("cpu",)):
    """The graph after every stage, as text."""
    lines = []
    for stage, graph in stages(spec, passes, devices):
        lines.append(f"== after {stage}: {len(graph)} nodes")
        lines += ["  " + node.describe() for node in graph]
    return "\n".join(lines)
