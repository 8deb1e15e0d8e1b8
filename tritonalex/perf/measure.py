"""Calibrate the static model on a GPU: one measured training step beside its estimate, per layer.

`python -m tritonalex.perf.measure [--spec alexnet] [--batch 128] --out FILE` (on a CUDA machine)
runs the step as `capture_step` describes it, with real tensors, warms it up (autotuning), then
profiles one step (torch.profiler, CUDA activity) and lists the GPU time of every Triton kernel it
ran, in order. A captured step launches the same kernels in the same order (tested against an
interpreter run), so the k-th measured kernel is the k-th captured launch: `match` pairs them by
position after checking the names agree, and totals measured and estimated time per layer. The
result (JSON) has, per layer, measured_us, estimate_us and their ratio: the model's calibration.
`bench/gpu_check.sh` runs it.
"""

import argparse
import json
import sys
from collections import OrderedDict


def match(kernel_times, report):
    """Pair measured (kernel name, us) in launch order with the static report's launches.

    Returns per-layer rows and the step totals; raises ValueError when the sequences differ."""
    rows = report["launches"]
    names = [n for n, _ in kernel_times]
    expected = [r["kernel"] for r in rows]
    if names != expected:
        raise ValueError(f"measured kernels differ from the captured launches: {len(names)} "
                         f"measured, {len(expected)} captured; first difference at "
                         f"{_first_difference(names, expected)}")
    layers = OrderedDict()
    for (name, us), row in zip(kernel_times, rows):
        t = layers.setdefault(row["layer"], dict(layer=row["layer"], launches=0, measured_us=0.0,
                                                 estimate_us=0.0, floor_us=0.0))
        t["launches"] += 1
        t["measured_us"] += us
        t["estimate_us"] += row["estimate_us"]
        t["floor_us"] += row["floor_us"]
    for t in layers.values():
        t["estimate_over_measured"] = t["estimate_us"] / t["measured_us"] if t["measured_us"] else None
    measured = sum(us for _, us in kernel_times)
    estimate = sum(r["estimate_us"] for r in rows)
    return dict(layers=list(layers.values()),
                step=dict(measured_us=measured, estimate_us=estimate,
                          estimate_over_measured=estimate / measured if measured else None))


def measure_step(spec, batch, warmup=3):
    """[(Triton kernel name, GPU us)] of one profiled bf16 training step of `spec` on cuda:0."""
    import torch
    import torch.nn.functional as TF

    import tritonalex

    torch.manual_seed(0)
    spec_obj = tritonalex.load_spec(spec)
    model = tritonalex.compile(spec_obj, backend="triton", devices=("cuda:0",)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(batch, spec_obj.channels, spec_obj.size, spec_obj.size, device="cuda")
    labels = torch.randint(0, 10, (batch,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(images)
        loss = TF.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    from ..kernels import launch

    names = set()

    def observe(kernel, **_):
        from .capture import kernel_name

        names.add(kernel_name(kernel))
        return False

    launch.capture_hook = observe
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
    finally:
        launch.capture_hook = None
    events = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                     and e.name in names), key=lambda e: e.time_range.start)
    return [(e.name, e.device_time) for e in events]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tritonalex.perf.measure",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="alexnet")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import torch

    from . import model
    from .capture import capture_step
    from .step import compile_all, estimate_step

    card = model.CARDS[model.CARD_FOR_ARCH[90 if torch.cuda.get_device_capability()[0] >= 9 else 80]]
    step = capture_step(args.spec, batch=args.batch, dtype="bf16", sms=card.sms, arch=card.arch)
    report = estimate_step(step, compile_all(step.launches, [card.arch]), card)
    result = match(measure_step(args.spec, args.batch), report)
    result.update(spec=args.spec, batch=args.batch, card=torch.cuda.get_device_name(),
                  model_card=card.name, torch=torch.__version__,
                  triton=__import__("triton").__version__)
    from .._output import atomic_open

    with atomic_open(args.out) as f:
        json.dump(result, f, indent=2)
    for t in result["layers"]:
        print(f"{t['layer']:8s} measured {t['measured_us']:9.1f} us  estimate {t['estimate_us']:9.1f}"
              f" us  estimate/measured {t['estimate_over_measured']:.2f}")
    s = result["step"]
    print(f"step: measured {s['measured_us']:.1f} us, estimate {s['estimate_us']:.1f} us, "
          f"estimate/measured {s['estimate_over_measured']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _first_difference(a, b):
    """The first position where two sequences differ (the shorter's length if one is a prefix)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
