"""`tritonalex bench`: every AlexNet layer and whole specs against the stock torch path.

On a CUDA GPU it measures: tritonalex, torch eager (cuDNN/cuBLAS) and torch.compile side by side,
one table row and one CSV row per (layer, precision, layout, direction, implementation).
Without one it checks: each selected kernel (or the spec's compiled net) against torch in float64
under Triton's interpreter at a small batch, and prints FLOPs, bytes and the H100 roofline floor
at the requested batch. It never reports an interpreter time as a kernel time.
"""

import argparse
import sys

import torch

from .._cli_types import positive
from . import harness, layers
from .check import check
from .measure import measure
from .render import report

DEFAULT_CSV = "bench/results/bench.csv"


def add_parser(commands):
    p = commands.add_parser(
        "bench", help="benchmark every AlexNet layer and whole specs against cuDNN/cuBLAS",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layer", nargs="+", metavar="NAME", default=[],
                   help=f"layers of --spec (alexnet's: {', '.join(layers.order())}) or groups: "
                        f"layer kinds ({', '.join(layers.groups())})")
    p.add_argument("--spec", default="alexnet", metavar="SPEC",
                   help="the spec whose layers --layer picks (default alexnet; e.g. alexnet-bn, zfnet)")
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
    p.add_argument("--cuda-graph", action="store_true",
                   help="also time each layer's tritonalex and torch steps replayed from a CUDA "
                        "graph (rows tritonalex.graph, torch.graph: the GPU's time without the "
                        "host's; --net always times its training step so)")
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
        chosen = layers.select(args.layer, args.spec)
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
