"""Benchmark: tritonalex LRN, max-pool and fused LRN -> max-pool against torch at AlexNet's shapes.

torch's LocalResponseNorm is a composite (pad, avg_pool3d, pow, div); its max_pool2d is a native
kernel. Every case is memory-bound, so the roofline floor is minimum bytes over bandwidth:
LRN forward reads x and writes y; the pool also writes int64 indices; backward passes read
what they need (x, dy, indices) and write dx. One CSV row per (case, implementation).

    python bench/bench_lrn_pool.py --out results/lrn_pool.csv        # on a CUDA machine
    python bench/bench_lrn_pool.py --smoke --out /tmp/lrn_pool.csv  # checks the script on CPU
"""

import torch
import torch.nn.functional as TF

import tritonalex.functional as F
from tritonalex.bench import compare, parser, require_cuda, run_info, write_csv_atomically

PAPER_LRN = (5, 5e-4, 0.75, 2.0)  # size, alpha, beta, k: the paper's LRN in torch's convention
POOL = dict(kernel_size=3, stride=2)
SHAPES = {  # AlexNet's activations per image: (channels, height = width)
    "lrn": [(96, 55), (256, 27)],
    "max_pool": [(96, 55), (256, 27), (256, 13)],
    "lrn_max_pool": [(96, 55), (256, 27)],
}


def ops(op):
    """{impl: fn(x)} for one op."""
    if op == "lrn":
        return {"tritonalex": lambda x: F.local_response_norm(x, *PAPER_LRN),
                "torch": lambda x: TF.local_response_norm(x, *PAPER_LRN)}
    if op == "max_pool":
        return {"tritonalex": lambda x: F.max_pool2d(x, **POOL),
                "torch": lambda x: TF.max_pool2d(x, **POOL)}
    return {"tritonalex": lambda x: F.lrn_max_pool2d(x, *PAPER_LRN, **POOL),
            "torch": lambda x: TF.max_pool2d(TF.local_response_norm(x, *PAPER_LRN), **POOL)}


def min_bytes(op, x, y, backward):
    """Minimum DRAM traffic of the op (and its backward) in bytes."""
    xb, yb = x.numel() * x.element_size(), y.numel() * y.element_size()
    idx = y.numel() * 8 if op != "lrn" else 0
    fwd = xb + yb + idx
    if not backward:
        return fwd
    if op == "lrn":
        return fwd + xb + yb + xb  # read x, dy; write dx
    if op == "max_pool":
        return fwd + yb + idx + xb  # read dy, indices; write dx
    return fwd + xb + yb + idx + xb  # fused: read x, dy, indices; write dx


def run(batch, dtypes, layouts, smoke, which, out):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    info = run_info(batch)
    rows = []
    for op in which:
        for channels, hw in SHAPES[op]:
            case = f"{op}@{channels}x{hw}x{hw}"
            for dtype in dtypes:
                for layout in layouts:
                    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                    x = torch.relu(torch.randn(batch, channels, hw, hw, device=device, dtype=dtype))
                    x = x.contiguous(memory_format=fmt).requires_grad_()
                    impls = ops(op)
                    y = impls["torch"](x)
                    dy = torch.randn_like(y)
                    for pass_ in ("forward", "forward+backward"):
                        backward = pass_ != "forward"
                        if backward:
                            steps = {k: (lambda f=f: f(x).backward(dy)) for k, f in impls.items()}
                        else:
                            steps = {k: (lambda f=f: f(x.detach())) for k, f in impls.items()}
                        rows += compare(info, case, dtype, layout, pass_, steps, 0,
                                        min_bytes(op, x, y, backward), smoke)
                        write_csv_atomically(rows, out)  # after every case: a timeout keeps results
    return rows


def main(argv=None):
    options = parser(__doc__)
    options.add_argument("--ops", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    options.add_argument("--layouts", nargs="+", default=["nchw", "channels_last"],
                         choices=["channels_last", "nchw"])
    args = options.parse_args(argv)
    require_cuda(args, "bench_lrn_pool.py")
    if args.smoke:
        args.batch, args.dtypes, args.layouts = 1, ["float32"], ["nchw"]
        SHAPES.update({op: [(8, 13)] for op in SHAPES})
    rows = run(args.batch, [getattr(torch, d) for d in args.dtypes], args.layouts, args.smoke,
               args.ops, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
