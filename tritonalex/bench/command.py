"""`tritonalex bench`: every AlexNet layer and whole specs against the stock torch path.

On a CUDA GPU it measures: tritonalex, torch eager (cuDNN/cuBLAS) and torch.compile side by side,
one table row and one CSV row per (layer, precision, layout, direction, implementation).
Without one it checks: each selected kernel (or the spec's compiled net) against torch in float64
under Triton's interpreter at a small batch, and prints FLOPs, bytes and the H100 roofline floor
at the requested batch. It never reports an interpreter time as a kernel time.
"""

import argparse
import json
import math
import sys

import torch

from .._cli_types import positive
from ..kernels import launch
from . import harness, layers, net

IMPLS = ("tritonalex", "torch", "torch.compile")
DEFAULT_CSV = "bench/results/bench.csv"
CHECK_TOLERANCE = 1e-9  # relative to the reference's largest magnitude, in float64
AUGMENT_TOLERANCE = 2e-6  # the augmentation kernel computes in fp32


def add_parser(commands):
    p = commands.add_parser(
        "bench", help="benchmark every AlexNet layer and whole specs against cuDNN/cuBLAS",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layer", nargs="+", metavar="NAME", default=[],
                   help=f"layers of alexnet ({', '.join(layers.order())}) or groups "
                        f"({', '.join(layers.groups())})")
    p.add_argument("--net", nargs="?", const="alexnet", metavar="SPEC",
                   help="an inference pass and a training step of a spec (default: alexnet)")
    p.add_argument("--batch", type=positive, default=128, help="batch size (default 128)")
    p.add_argument("--dtype", nargs="+", default=["bf16"], choices=list(harness.PRECISIONS),
                   help="precisions (default bf16); tf32 is fp32 tensors with TF32 convs and matmuls "
                        "on both paths, fp32 is IEEE")
    p.add_argument("--direction", choices=["forward", "backward", "both", "all"], default="all",
                   help="both: forward+backward as one training step; all (default): the three")
    p.add_argument("--layout", choices=["nchw", "channels_last", "both"], default="both",
                   help="activation layout of conv/LRN/pool layers (default both; fc is row-major)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--csv", default=DEFAULT_CSV,
                   help=f"CSV file that measured rows are appended to (GPU only; default {DEFAULT_CSV})")
    p.add_argument("--no-csv", action="store_true", help="append nothing to the CSV")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.add_argument("--check-batch", type=positive, default=1,
                   help="batch of the interpreter check without a GPU (default 1)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw speedup per layer from the rows recorded in --csv (needs matplotlib)")
    p.set_defaults(run=run)
    return p




def run(args):
    if not (args.layer or args.net or args.plot):
        print("error: choose what to run: --layer NAME|GROUP, --net [SPEC] or --plot FILE.png",
              file=sys.stderr)
        return 2
    try:
        chosen = layers.select(args.layer)
        spec = None
        if args.net:
            from ..spec import load_spec

            spec = load_spec(args.net)
    except ValueError as exc:  # SpecError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    directions = {"all": layers.DIRECTIONS, "both": ("forward+backward",)}.get(
        args.direction, (args.direction,))
    layouts = ("channels_last", "nchw") if args.layout == "both" else (args.layout,)
    if chosen or spec:
        if torch.cuda.is_available():
            rows = measure(chosen, spec, args, directions, layouts, "cuda")
            report(rows, args, measured=True)
            if not args.json and not args.no_csv:
                print(f"appended {len(rows)} rows to {args.csv}")
        else:
            rows = check(chosen, spec, args, directions, layouts)
            report(rows, args, measured=False)
            if any(row["check"] == "FAIL" for row in rows):
                return 1
    if args.plot:
        from .plot import plot_speedups

        return plot_speedups(args.csv, args.plot)
    return 0


# ---------------------------------------------------------------------------- on a CUDA GPU


def measure(chosen, spec, args, directions, layouts, device):
    info = harness.run_info(args.batch)
    rows = []
    for precision in args.dtype:
        dtype, tf32 = harness.PRECISIONS[precision]
        with harness.precision_mode(tf32):
            for layer in chosen:
                for layout in layouts if layers.takes_layout(layer) else ("row-major",):
                    args_ = layers.inputs(layer, args.batch, dtype, layout, device)
                    fns = layers.implementations(layer)
                    fns, notes = _with_compiled(fns, args.no_compile)
                    grad_output = torch.randn_like(fns["torch"](*args_))
                    for direction in directions:
                        steps, step_notes = _steps(fns, notes, lambda fn, d=direction:
                                                   layers.step(fn, args_, d, grad_output))
                        flops, bytes_ = layers.cost(layer, args.batch, args_[0].element_size(),
                                                    direction)
                        rows += _record(harness.measurement_rows(
                            info, layer, precision, layout, direction, steps, flops, bytes_,
                            step_notes), args)
            if spec is not None:
                models = net.models(spec, dtype, device)
                models, notes = _with_compiled(models, args.no_compile)
                x, labels = net.batch_of(spec, args.batch, dtype, device)
                for pass_ in net.PASSES:
                    steps, step_notes = _steps(models, notes,
                                               lambda m, p=pass_: net.step(m, p, x, labels))
                    flops, bytes_ = net.cost(spec, args.batch, x.element_size(), pass_)
                    rows += _record(harness.measurement_rows(
                        info, spec.name, precision, "nchw", pass_, steps, flops, bytes_,
                        step_notes), args)
                steps, bytes_ = net.augmentation_case(spec, args.batch, dtype, device)
                rows += _record(harness.measurement_rows(
                    info, spec.name, precision, "nchw", "augmentation", steps, 0, bytes_), args)
    return rows


def _with_compiled(fns, skip):
    """Add torch.compile of the torch path (a function or a module), unless skipped."""
    fns, notes = dict(fns), {}
    if skip:
        return fns, notes
    try:
        fns["torch.compile"] = torch.compile(fns["torch"])
    except Exception as exc:  # noqa: BLE001 - reported in the row, never hidden
        fns["torch.compile"], notes["torch.compile"] = None, f"torch.compile failed: {exc}"[:200]
    return fns, notes


def _steps(fns, notes, make):
    """{impl: step} from {impl: fn}; an implementation whose step fails to build or run gets
    None and a note (torch.compile can fail on some setups), tritonalex and torch never do."""
    steps, notes = {}, dict(notes)
    for impl, fn in fns.items():
        if fn is None:
            steps[impl] = None
            continue
        try:
            steps[impl] = make(fn)
            if impl == "torch.compile":
                steps[impl]()  # compile now, so a failure becomes a note, not a crash
        except Exception as exc:  # noqa: BLE001
            if impl != "torch.compile":
                raise
            steps[impl], notes[impl] = None, f"torch.compile failed: {exc}"[:200]
    return steps, notes


def _record(rows, args):
    """Print one progress line per row (stderr) and append the rows to the CSV now, so a run that
    is cut short keeps what it measured."""
    if not args.no_csv:
        harness.append_csv_atomically(rows, args.csv)
    if not args.json:
        for r in rows:
            print(f"  {r['case']:10} {r['dtype']:4} {r['layout']:13} {r['direction']:16} "
                  f"{r['impl']:13} " + (f"{r['p50_ms']:9.4f} ms" if "p50_ms" in r else r["note"]),
                  file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------------------- without a GPU


def check(chosen, spec, args, directions, layouts):
    """Check kernels against torch in float64 at --check-batch; costs at --batch."""
    poison = launch.set_poison(True)  # an element a kernel fails to write is NaN: the check fails
    try:
        return _check_all(chosen, spec, args, directions, layouts)
    finally:
        launch.set_poison(poison)


def _check_all(chosen, spec, args, directions, layouts):
    rows = []
    for precision in args.dtype:
        size = harness.PRECISIONS[precision][0].itemsize
        for layer in chosen:
            for layout in layouts if layers.takes_layout(layer) else ("row-major",):
                error = _check_layer(layer, args.check_batch, layout,
                                     backward=directions != ("forward",))
                for direction in directions:
                    flops, bytes_ = layers.cost(layer, args.batch, size, direction)
                    rows.append(_check_row(layer, precision, layout, direction, error, flops,
                                           bytes_, args.batch))
        if spec is not None:
            error = _check_net(spec, args.check_batch)
            for pass_ in net.PASSES:
                flops, bytes_ = net.cost(spec, args.batch, size, pass_)
                rows.append(_check_row(spec.name, precision, "nchw", pass_, error, flops, bytes_,
                                       args.batch))
            # the augmentation computes in fp32 by design (its input is 8-bit): fp32 tolerance
            steps, _ = net.augmentation_case(spec, args.check_batch, torch.float32, "cpu")
            error = _rel_error(steps["tritonalex"](), steps["torch"]())
            rows.append(_check_row(spec.name, precision, "nchw", "augmentation", error, 0,
                                   net.augmentation_bytes(spec, args.batch, size), args.batch,
                                   tolerance=AUGMENT_TOLERANCE))
    return rows


def _check_row(case, precision, layout, direction, error, flops, bytes_, batch,
               tolerance=CHECK_TOLERANCE):
    return dict(case=case, dtype=precision, layout=layout, direction=direction, batch=batch,
                check="ok" if error <= tolerance else "FAIL", max_rel_error=error,
                gflop=flops / 1e9, mbytes=bytes_ / 1e6,
                h100_floor_ms=harness.floor_ms("H100", precision, flops, bytes_))


def _rel_error(ours, ref):
    scale = ref.abs().max().item() or 1.0
    err = (ours - ref).abs().max().item() / scale
    return math.inf if math.isnan(err) else err


def _check_layer(layer, batch, layout, backward):
    """Largest relative error of the layer's output (and input/weight/bias gradients) against
    torch, float64, dropout off (its mask is random; tests/test_linear.py covers it)."""
    fns = layers.implementations(layer, training=False)
    results = {}
    for impl, fn in fns.items():
        args_ = layers.inputs(layer, batch, torch.float64, layout, "cpu")
        out = fn(*args_)
        grads = ()
        if backward:
            grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1),
                                      dtype=torch.float64)
            grads = torch.autograd.grad(out, [a for a in args_ if a.requires_grad], grad_output)
        results[impl] = (out.detach(),) + tuple(grads)
    return max(_rel_error(a, b) for a, b in zip(results["tritonalex"], results["torch"]))


def _check_net(spec, batch):
    """Largest relative error of the triton backend's logits and parameter gradients (eval mode,
    so dropout is off) against the torch backend's, float64."""
    models = net.models(spec, torch.float64, "cpu")
    x, labels = net.batch_of(spec, batch, torch.float64, "cpu")
    results = {}
    for impl, model in models.items():
        model.eval()
        logits = model(x)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        results[impl] = [logits.detach()] + [p.grad for p in model.parameters()]
    return max(_rel_error(a, b) for a, b in zip(results["tritonalex"], results["torch"]))


# ---------------------------------------------------------------------------- output


def report(rows, args, measured):
    if args.json:
        print(json.dumps(dict(mode="measured" if measured else "checked", rows=rows), indent=1,
                         default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=180)
    if measured:
        first = rows[0] if rows else {}
        table = Table(title=f"tritonalex bench on {first.get('gpu')}, batch {args.batch}; "
                            f"torch {first.get('torch')}, triton {first.get('triton')}")
        for col in ("layer", "dtype", "layout", "direction", "impl", "p50 ms", "p20-p80 ms",
                    "TFLOP/s", "GB/s", "% roofline", "x vs torch", "peak MiB"):
            table.add_column(col, justify="right" if " " in col or "/" in col else "left")
        for r in rows:
            if "p50_ms" not in r:
                table.add_row(r["case"], r["dtype"], r["layout"], r["direction"], r["impl"],
                              r["note"], *[""] * 6)
                continue
            table.add_row(r["case"], r["dtype"], r["layout"], r["direction"], r["impl"],
                          f"{r['p50_ms']:.4f}", f"{r['p20_ms']:.4f}-{r['p80_ms']:.4f}",
                          f"{r['tflops']:.1f}", f"{r['gbps']:.0f}", f"{r['pct_of_roofline']:.1f}",
                          f"{r['speedup_vs_torch']:.2f}", f"{r['peak_mib']:.1f}")
        console.print(table)
        return
    console.print("No CUDA GPU: timings need one, so none are shown. Each kernel was instead "
                  f"checked against torch in float64 under Triton's interpreter at batch "
                  f"{args.check_batch}; FLOPs, bytes and the H100 roofline floor are for batch "
                  f"{args.batch} at the given dtype.")
    table = Table(title="tritonalex bench: interpreter check and H100 floors (no timings)")
    for col in ("layer", "dtype", "layout", "direction", "check", "max rel error", "GFLOP",
                "MB moved", "H100 floor ms"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["case"], r["dtype"], r["layout"], r["direction"], r["check"],
                      f"{r['max_rel_error']:.1e}", f"{r['gflop']:.3f}", f"{r['mbytes']:.1f}",
                      f"{r['h100_floor_ms']:.4f}")
    console.print(table)
