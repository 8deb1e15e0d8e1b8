"""`tritonalex bench` on a CUDA GPU: tritonalex, torch eager and torch.compile measured side by
side per (case, precision, layout, direction), each row appended to the CSV as it is measured."""

import sys

import torch

from . import harness, layers, net


def measure(chosen, spec, args, directions, layouts, device):
    info = harness.run_info(args.batch)
    rows = []
    for precision in args.dtype:
        dtype, tf32 = harness.PRECISIONS[precision]
        with harness.precision_mode(tf32):
            for layer in chosen:
                for layout in layouts if layers.takes_layout(layer, args.spec) else ("row-major",):
                    args_ = layers.inputs(layer, args.batch, dtype, layout, device, spec=args.spec)
                    fns = layers.implementations(layer, spec=args.spec)
                    fns, notes = _with_compiled(fns, args.no_compile)
                    grad_output = torch.randn_like(fns["torch"](*args_))
                    for direction in directions:
                        steps, step_notes = _steps(fns, notes, lambda fn, d=direction:
                                                   layers.step(fn, args_, d, grad_output))
                        if args.cuda_graph:  # each eager step replayed from a graph too
                            for impl in ("tritonalex", "torch"):
                                steps[f"{impl}.graph"], note = _replayed(steps[impl])
                                step_notes.update({f"{impl}.graph": note} if note else {})
                        flops, bytes_ = layers.cost(layer, args.batch, args_[0].element_size(),
                                                    direction, spec=args.spec)
                        rows += _record(harness.measurement_rows(
                            info, layers.label(layer, args.spec), precision, layout, direction,
                            steps, flops, bytes_, step_notes), args)
            if spec is not None:
                eager = net.models(spec, dtype, device)
                models, notes = _with_compiled(eager, args.no_compile, ("torch", "tritonalex"))
                x, labels = net.batch_of(spec, args.batch, dtype, device)
                for pass_ in net.PASSES:
                    steps, step_notes = _steps(models, notes,
                                               lambda m, p=pass_: net.step(m, p, x, labels))
                    if pass_ == "training step":  # and each eager step replayed from a graph
                        for impl, model in eager.items():
                            steps[f"{impl}.graph"], note = _graphed(model, x, labels)
                            step_notes.update({f"{impl}.graph": note} if note else {})
                    flops, bytes_ = net.cost(spec, args.batch, x.element_size(), pass_)
                    rows += _record(harness.measurement_rows(
                        info, spec.name, precision, "nchw", pass_, steps, flops, bytes_,
                        step_notes), args)
                steps, bytes_ = net.augmentation_case(spec, args.batch, dtype, device)
                rows += _record(harness.measurement_rows(
                    info, spec.name, precision, "nchw", "augmentation", steps, 0, bytes_), args)
    return rows


def _with_compiled(fns, skip, paths=("torch",)):
    """Add torch.compile of each of `paths` (a function or a module; "torch.compile" for the
    torch path, "tritonalex.compile" for ours), unless skipped."""
    fns, notes = dict(fns), {}
    if skip:
        return fns, notes
    for path in paths:
        impl = f"{path}.compile"
        try:
            fns[impl] = torch.compile(fns[path])
        except Exception as exc:  # noqa: BLE001 - reported in the row, never hidden
            fns[impl], notes[impl] = None, f"torch.compile failed: {exc}"[:200]
    return fns, notes


def _graphed(model, x, labels):
    """(step, None), or (None, why) when the capture fails: the row says so, the run goes on."""
    try:
        return net.graphed_step(model, x, labels), None
    except Exception as exc:  # noqa: BLE001 - reported in the row, never hidden
        return None, f"CUDA graph capture failed: {exc}"[:200]


def _replayed(step):
    """(the replay of `step` captured once into a CUDA graph, None), or (None, why) when the
    capture fails. A replay launches everything in one call: its time is the GPU's alone, where
    an eager step's is its host's whenever launching outlasts the kernels. The step warms up on
    a side stream first (tuning, compiling, the allocator's pools), as torch's graph docs ask."""
    from ..train.graphed import cuda_graph, side_stream

    try:
        with side_stream(torch.device("cuda", torch.cuda.current_device())):
            for _ in range(3):
                step()
        return cuda_graph(step), None
    except Exception as exc:  # noqa: BLE001 - reported in the row, never hidden
        return None, f"CUDA graph capture failed: {exc}"[:200]


def _steps(fns, notes, make):
    """{impl: step} from {impl: fn}; a compiled implementation whose step fails to build or run
    gets None and a note (torch.compile can fail on some setups), tritonalex and torch never do."""
    steps, notes = {}, dict(notes)
    for impl, fn in fns.items():
        if fn is None:
            steps[impl] = None
            continue
        try:
            steps[impl] = make(fn)
            if impl.endswith(".compile"):
                steps[impl]()  # compile now, so a failure becomes a note, not a crash
        except Exception as exc:  # noqa: BLE001
            if not impl.endswith(".compile"):
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
