"""`tritonalex kernels`: the compile check, and with --step the static model of a training step.

* `tritonalex kernels`: every config of every kernel, compiled as the launches of an `alexnet`
  training step at batch 128 really bind it (bf16 and tf32 steps for the tensor-core configs,
  IEEE fp32 and fp64 steps for the FMA ones, the unfused graph for the standalone ReLU, LRN,
  max-pool and dropout kernels, a bf16 step of every other shipped spec for the kernels and
  shapes only they have, e.g. batch norm, the LRN backward of a window wider than 5, and the
  augmentation kernel), for sm_80 and sm_90.
  Every `*_kernel` of the kernels package (found by import) must be among them: one that no
  step launches is a failed row. A table of
  registers, spills, shared memory, asynchronous loads and stages per (kernel, dtype, config,
  arch), the worst over the layers' specializations.
* `tritonalex kernels --step [SPEC]`: one training step's launches, each estimated by the static
  model (`tritonalex.perf.model`), per launch, per layer and per step.
Both exit 1 if any compile fails, spills, or needs more shared memory than the card has.

Runs in its own process with TRITON_INTERPRET=0 (`tritonalex.cli` starts it so): the kernels must
be Triton's compiled functions, not the interpreter's, and nothing is launched.
"""

import json
import math
import os
import sys
import tempfile
from collections import OrderedDict

from .._cli_types import Parser, positive
from . import model
from .capture import DTYPES, capture_calls, capture_step
from .step import compile_all, config_variants, estimate_step, job_key

ARCHS = {"sm_90": 90, "sm_80": 80}
# The compile check's steps: (dtype, fusion passes; [] is the unfused graph).
CHECK_STEPS = (("bf16", None), ("bf16", []), ("tf32", None), ("fp32", None), ("fp64", None))


def build_parser():
    parser = Parser(prog="tritonalex kernels", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return parser


def add_arguments(parser):
    parser.add_argument("--step", nargs="?", const="alexnet", default=None, metavar="SPEC",
                        help="estimate one training step of SPEC (default alexnet) with the static "
                             "performance model instead of running the config check")
    parser.add_argument("--batch", type=positive, default=128, help="batch size (default 128)")
    parser.add_argument("--dtype", choices=DTYPES, default="bf16",
                        help="training precision of the step (default bf16, autocast)")
    parser.add_argument("--layout", choices=("nchw", "channels_last"), default="channels_last",
                        help="memory layout of the input images (default channels_last, what "
                             "`tritonalex train` feeds the triton backend)")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="sm_90",
                        help="target: sm_90 (H100 SXM) or sm_80 (A100 SXM); default sm_90")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON to FILE (atomically)")
    parser.add_argument("--launches-only", action="store_true",
                        help="with --step: list the captured launches without compiling")
    parser.add_argument("--overhead", action="store_true",
                        help="with --step: measure the host (CPU) time per launch of the step, "
                             "the GPU calls stubbed out (see tritonalex.perf.overhead)")


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton 3.9's default, said explicitly
    if args.step:
        return run_step(args)
    return run_check(args)


def run_step(args):
    from ..spec import SpecError

    card = model.CARDS[model.CARD_FOR_ARCH[ARCHS[args.arch]]]
    if args.overhead:
        return run_overhead(args, card)
    try:
        step = capture_step(args.step, batch=args.batch, dtype=args.dtype, layout=args.layout,
                            sms=card.sms, arch=card.arch)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.launches_only:
        out = dict(spec=step.spec, launches=[dict(layer=l.layer, direction=l.direction,
                                                  kernel=l.name) for l in step.launches],
                   step=dict(triton_launches=len(step.launches),
                             torch_kernels=sum(step.torch_kernels.values()),
                             torch_kernel_kinds=dict(step.torch_kernels),
                             optimizer_kernels=sum(step.optimizer_kernels.values()),
                             op_calls=dict(step.op_calls)))
        _emit(out, args, lambda: print(json.dumps(out, indent=2)))
        return 0
    report = estimate_step(step, compile_all(step.launches, [card.arch]), card)
    import datetime

    import torch
    import triton

    report.update(triton=triton.__version__, torch=torch.__version__,
                  date=datetime.date.today().isoformat())
    _emit(report, args, lambda: print_step(report))
    return 0 if report["step"]["failed"] == 0 else 1


def run_overhead(args, card):
    """`--step --overhead`: host time per launch, measured here with the GPU calls stubbed."""
    from .overhead import measure

    out = measure(args.step, batch=args.batch, dtype=args.dtype, arch=card.arch, sms=card.sms)
    _emit(out, args, lambda: print(
        f"{out['spec']} training step (batch {out['batch']}, {out['dtype']}), forward + backward, "
        f"measured on this machine's CPU with the GPU calls stubbed:\n"
        f"  {out['launches']} Triton launches, host time per launch: {out['per_launch_us']:.1f} us\n"
        f"    launch path (config lookup to the GPU call): {out['launch_path_us']:.1f} us "
        f"(Triton's own launch path instead: {out['triton_path_us']:.1f} us)\n"
        f"    launcher (argument checks, outputs, cost record): {out['launcher_us']:.1f} us\n"
        f"  whole step on meta tensors (an upper bound: torch's meta ops are slower than its "
        f"CUDA host side): {out['step_us']:,.0f} us"))
    return 0


def _emit(obj, args, show):
    if args.out:
        from .._output import atomic_open

        with atomic_open(args.out) as f:
            f.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    if args.json:
        print(json.dumps(obj, indent=2, default=_json_default))
    else:
        show()


def _json_default(value):
    if isinstance(value, float) and math.isinf(value):
        return None
    raise TypeError(type(value).__name__)


def _us(v):
    return "-" if v is None or (isinstance(v, float) and math.isinf(v)) else f"{v:,.1f}"


def print_step(report):
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    title = (f"{report['spec']} training step, batch {report['batch']}, {report['dtype']}, "
             f"{report['layout']}, {report['card']} ({report['arch']}): STATIC ESTIMATE from the "
             f"compiled SASS, not a measurement")
    table = Table(title=title)
    for col in ("layer", "dir", "kernel", "config", "grid", "regs", "spill", "smem KB", "CTA/SM",
                "waves", "async", "stages", "instr/it*", "mma/it", "bound", "est us", "floor us",
                "x floor"):
        table.add_column(col, justify="left" if col in ("layer", "dir", "kernel", "config", "bound")
                         else "right")
    for r in report["launches"]:
        ok = r["ok"]
        table.add_row(r["layer"], r["direction"][:3], r["kernel"].replace("_kernel", ""),
                      r["config"], "x".join(str(g) for g in r["grid"]),
                      str(r.get("registers", "-")), str(r.get("spill_bytes", "-")),
                      f"{r.get('shared_bytes', 0) / 1024:.0f}", str(r.get("ctas_per_sm", "-")),
                      f"{r.get('waves', 0):.2f}", "yes" if r.get("async_loads") else "no",
                      str(r.get("stages", "-")),
                      str(r.get("loop_instructions") or r.get("instructions", "-")),
                      str(r.get("loop_mma", "-")), r["bound"] if ok else f"FAIL: {r['error']}",
                      _us(r["estimate_us"]), _us(r["floor_us"]),
                      f"{r['estimate_us'] / r['floor_us']:.1f}" if r["floor_us"] else "-")
    console.print(table)
    console.print("* SASS instructions per main-loop iteration (the whole kernel when it has no loop)")
    layers = Table(title="per layer (static estimate)")
    for col in ("layer", "launches", "est us", "floor us", "x floor"):
        layers.add_column(col)
    for t in report["layers"]:
        layers.add_row(t["layer"], str(t["launches"]), _us(t["estimate_us"]), _us(t["floor_us"]),
                       f"{t['ratio']:.1f}" if t["ratio"] else "-")
    console.print(layers)
    s = report["step"]
    console.print(f"step: {s['triton_launches']} Triton launches, {s['torch_kernels']} other torch "
                  f"kernels (+{s['optimizer_kernels']} in the optimizer), "
                  f"{sum(s['op_calls'].values())} library op calls; estimate "
                  f"{_us(s['estimate_us'])} us against a floor of {_us(s['floor_us'])} us "
                  f"({s['ratio']:.1f}x), and at least {_us(s['torch_kernels_us'])} us for the other "
                  f"kernels ({_us(s['with_torch_kernels_us'])} us together); {s['failed']} "
                  f"launch(es) failed or spilled")


def check_launches(arch, batch=128):
    """(dtype label, launch) for everything the compile check compiles for `arch` (see the module
    doc): the steps are captured as they launch on that architecture (some launchers choose their
    kernel or tile per architecture, e.g. the conv weight gradient's tiling)."""
    import torch

    from ..kernels.augment import augment_forward
    from ..kernels.launch import accumulator_dtype
    from ..kernels.lrn import lrn_backward

    out = []
    from ..spec import SHIPPED

    card = model.CARDS[model.CARD_FOR_ARCH[arch]]
    for dtype, passes in CHECK_STEPS:
        label = dtype + ("" if passes is None else " unfused")
        out += [(label, l) for l in capture_step("alexnet", batch=batch, dtype=dtype,
                                                 passes=passes, sms=card.sms, arch=arch).launches]
    for spec in SHIPPED:
        if spec != "alexnet":
            out += [(f"bf16 {spec}", l) for l in capture_step(spec, batch=batch, sms=card.sms,
                                                              arch=arch).launches]
    meta = dict(device="meta")
    images = torch.empty(1000, 256, 256, 3, dtype=torch.uint8, **meta)
    per_image = [torch.empty(batch, dtype=t, **meta) for t in (torch.int64, torch.int32,
                                                                torch.int32, torch.int32)]
    shift = torch.empty(batch, 3, **meta)
    stats = torch.empty(3, **meta)
    # LRN windows wider than 5 (no shipped spec has one) take the sliding-window backward: lrn2's
    # shape, channels_last, the gradient in the input's dtype and in fp32 (the fused LRN ->
    # max-pool's buffer).
    def ncs(dt):
        return torch.empty_strided((batch, 256, 729), (256 * 729, 1, 256), dtype=dt, **meta)

    for dtype in (torch.bfloat16, torch.float32, torch.float64):
        for dy_dtype in {dtype, accumulator_dtype(dtype)}:
            out += [(f"lrn size 7 {str(dtype)[6:]}", l) for l in capture_calls(
                lambda: lrn_backward(ncs(dtype), ncs(dy_dtype), ncs(dtype), 7, 5e-4, 0.75, 2.0,
                                     groups=2, mask_input=True), layer="lrn", sms=card.sms,
                arch=arch)]
    for out_dtype in (torch.bfloat16, torch.float16, torch.float32):
        for fmt in (torch.contiguous_format, torch.channels_last):
            out += [(f"augment {str(out_dtype)[6:]}", l) for l in capture_calls(
                lambda: augment_forward(images, *per_image, shift, stats, stats, 224, out_dtype,
                                        fmt), layer="augment", sms=card.sms, arch=arch)]
    return out


def every_kernel():
    """Names of every Triton kernel (a module-level `*_kernel` JIT function) of the kernels
    package, found by importing each of its modules."""
    import importlib
    import pkgutil

    import triton

    from .. import kernels

    names = set()
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"{kernels.__name__}.{info.name}")
        names |= {name for name, value in vars(module).items()
                  if name.endswith("_kernel") and isinstance(value, triton.runtime.JITFunction)}
    return names


def run_check(args):
    archs = sorted(ARCHS.values())
    labelled = [(label, launch, arch) for arch in archs for label, launch in check_launches(arch)]
    with tempfile.TemporaryDirectory(prefix="tritonalex-check-") as cache:
        # Fresh caches: the check compiles everything, as a new machine would.
        os.environ["TRITON_CACHE_DIR"] = os.path.join(cache, "triton")
        os.environ["TRITONALEX_CACHE_DIR"] = os.path.join(cache, "perf")
        compiled = {}
        for arch in archs:
            compiled.update(compile_all([l for _, l, a in labelled if a == arch], [arch],
                                        model_builds=False))
    rows = OrderedDict()
    for label, launch, arch in labelled:
        for config, kwargs in config_variants(launch, arch):
            facts, error = compiled[job_key(launch, kwargs, arch)]
            key = (launch.name, label, config, arch)
            row = rows.setdefault(key, dict(kernel=launch.name, dtype=label, config=config,
                                            arch=f"sm_{arch}", builds=0, registers=0,
                                            spill_bytes=0, shared_bytes=0, async_loads=True,
                                            stages=99, error=""))
            row["builds"] += 1
            if facts is None:
                row["error"] = error
                continue
            row["registers"] = max(row["registers"], facts["registers"])
            row["spill_bytes"] = max(row["spill_bytes"], facts["spill_bytes"])
            row["shared_bytes"] = max(row["shared_bytes"], facts["shared_bytes"])
            row["async_loads"] &= facts["async_loads"]
            row["stages"] = min(row["stages"], facts["stages"])
            if facts["spill_bytes"]:
                row["error"] = "register spills"
            elif not facts["shared_ok"]:
                row["error"] = "shared memory over the limit"
    rows = list(rows.values())
    for name in sorted(every_kernel() - {launch.name for _, launch, _ in labelled}):
        rows.append(dict(kernel=name, dtype="-", config="-", arch="-", builds=0, registers=0,
                         spill_bytes=0, shared_bytes=0, async_loads=False, stages=0,
                         error="never launched by the check's steps: not compiled"))
    failed = [r for r in rows if r["error"]]
    summary = dict(builds=len(compiled), rows=len(rows), failed=len(failed))
    _emit(dict(rows=rows, summary=summary), args, lambda: print_check(rows))
    print(f"{len(compiled)} distinct builds ({len(rows)} kernel/dtype/config/arch rows): "
          f"{len(rows) - len(failed)} rows clean, {len(failed)} failed, spilled or over shared "
          f"memory", file=sys.stderr if args.json else sys.stdout)
    return 1 if failed else 0


def print_check(rows):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Compile check: every config, bound as an alexnet step's launches bind it "
                        "(worst over the layers), no GPU needed")
    for col in ("kernel", "dtype", "config", "arch", "builds", "regs", "spill (B)", "shared (B)",
                "async loads", "stages", "status"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["kernel"], r["dtype"], r["config"], r["arch"], str(r["builds"]),
                      str(r["registers"]), str(r["spill_bytes"]), str(r["shared_bytes"]),
                      "yes" if r["async_loads"] else "no", str(r["stages"]),
                      "ok" if not r["error"] else f"FAIL: {r['error']}")
    Console(width=200).print(table)


if __name__ == "__main__":
    sys.exit(main())
