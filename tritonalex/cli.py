"""tritonalex: AlexNet on Triton kernels. Compile-check the kernels, inspect and compile specs,
benchmark against cuDNN/cuBLAS, train with the paper's recipe and evaluate with its 10-crop test."""

import argparse
import os
import subprocess
import sys

from ._cli_types import Parser, positive


def _kernels(args):
    # The compile check and the static model need Triton's real compiler, not the interpreter
    # that importing tritonalex turns on without CUDA: they run in a process with
    # TRITON_INTERPRET=0, which parses the same arguments.
    env = dict(os.environ, TRITON_INTERPRET="0")
    return subprocess.call([sys.executable, "-m", "tritonalex.perf", *args.forward], env=env)


def _summary(args):
    import json

    import tritonalex
    from tritonalex.compiler import stages
    from tritonalex.compiler.summary import summarize

    spec = tritonalex.load_spec(args.spec)
    graph = list(stages(spec, passes=[] if args.no_fuse else None,
                        devices=tuple(f"gpu{i}" for i in range(spec.towers))))[-1][1]
    rows, totals = summarize(spec, graph, batch=args.batch)
    if args.json:
        print(json.dumps(dict(layers=rows, totals=totals), indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{spec.name}: {spec.towers} tower(s), input {spec.channels}x{spec.size}x"
                        f"{spec.size}, batch {args.batch}, one device per tower")
    for col in ("layer", "towers", "output (HxWxC)", "parameters", "fwd GFLOP/img",
                "activations (MiB)", "kernel (triton backend)", "device"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["layer"], r["towers"], r["output"], f"{r['parameters']:,}",
                      f"{r['forward_flops'] / 1e9:.3f}", f"{r['activation_bytes'] / 2**20:.1f}",
                      r["kernel"], r["devices"])
    table.add_row("total", "", "", f"{totals['parameters']:,}", f"{totals['forward_flops'] / 1e9:.3f}",
                  f"{totals['activation_bytes'] / 2**20:.1f}", "", "")
    console = Console(width=160)
    console.print(table)
    console.print(f"bytes crossing between devices per training step (fp32): "
                  f"{totals['crossing_bytes_per_step']:,}")
    return 0


def _compile(args):
    import tritonalex
    from tritonalex.compiler import explain

    spec = tritonalex.load_spec(args.spec)
    passes = None if args.passes is None else [p for p in args.passes.split(",") if p]
    from tritonalex.compiler import parse_devices

    devices = parse_devices(args.devices) if args.devices else ("cpu",)
    if args.explain:
        print(explain(spec, passes, devices))
    else:
        model = tritonalex.compile(spec, backend=args.backend, devices=devices, passes=passes)
        print(f"{spec.name}: compiled for the {args.backend} backend, "
              f"{sum(p.numel() for p in model.parameters()):,} parameters")
    return 0


def _with_spec_errors(fn):
    def run(args):
        from tritonalex.spec import SpecError

        try:
            return fn(args)
        except SpecError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return run


def build_parser():
    parser = Parser(prog="tritonalex", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    from .perf.command import __doc__ as kernels_doc, add_arguments as add_kernels_arguments

    kernels = commands.add_parser(
        "kernels",
        help="compile check of every kernel config (sm_80, sm_90), or with --step the static "
             "performance model of a training step; no GPU needed",
        description=kernels_doc.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernels_arguments(kernels)
    kernels.set_defaults(run=_kernels)

    summary = commands.add_parser(
        "summary", help="per-layer table of a spec: shapes, parameters, FLOPs, memory, kernels",
        description="Compile SPEC (a shipped name: alexnet, alexnet-owt, alexnet-small, or a .toml "
                    "path) and print, per layer: towers, output shape, parameters, forward FLOPs, "
                    "activation memory at --batch, the kernel that runs it and its device; then "
                    "totals and the bytes that cross between devices per training step.")
    summary.add_argument("spec")
    summary.add_argument("--batch", type=positive, default=128)
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.add_argument("--no-fuse", action="store_true", help="show the graph before fusion")
    summary.set_defaults(run=_with_spec_errors(_summary))

    comp = commands.add_parser(
        "compile", help="compile a spec; --explain prints the graph after every compiler stage",
        description="Compile SPEC through its stages (build graph, infer shapes, fusion passes, "
                    "placement, lowering).")
    comp.add_argument("spec")
    comp.add_argument("--explain", action="store_true", help="print the graph after each stage")
    comp.add_argument("--backend", choices=["triton", "torch"], default="triton")
    comp.add_argument("--passes", default=None,
                      help="comma-separated fusion passes to run (default: all; '' for none): "
                           "fuse_conv_relu, fuse_linear_dropout, fuse_lrn_maxpool")
    comp.add_argument("--devices", default=None, help="comma-separated devices, one per tower")
    comp.set_defaults(run=_with_spec_errors(_compile))

    from .bench.command import add_parser as add_bench_parser

    add_bench_parser(commands)

    from .train.command import add_parsers as add_train_parsers

    add_train_parsers(commands)
    return parser


def _given_flags(parser, argv):
    """The destinations of the options that appear on the command line (not left at defaults)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices[argv[0]] if argv and argv[0] in sub.choices else parser
    given = set()
    for action in command._actions:
        for flag in action.option_strings:
            if any(tok == flag or tok.startswith(flag + "=") for tok in argv[1:]):
                given.add(action.dest)
    return given


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.forward = argv[1:]  # `kernels`: its arguments, already checked, go to the subprocess
    args.given = _given_flags(parser, argv)
    from .train.checkpoint import CheckpointError

    try:
        return args.run(args)
    except (ValueError, OSError, CheckpointError) as exc:  # SpecError is a ValueError
        # Bad input (a flag, a file, a spec) is one line, as argparse's own errors are;
        # TRITONALEX_DEBUG=1 shows the traceback.
        if os.environ.get("TRITONALEX_DEBUG"):
            raise
        print(f"tritonalex {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
