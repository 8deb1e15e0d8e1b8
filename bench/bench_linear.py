"""Benchmark: tritonalex's fused linear+bias+ReLU+dropout against torch (cuBLAS linear, then ReLU
and dropout) on AlexNet's fc6, fc7 and fc8, forward and forward+backward, with peak memory.

The fused layer stores no dropout mask and no pre-activation, so its peak memory should be lower;
each row carries the peak bytes allocated during one step in `case` as "...|peak=<MiB>".

    python bench/bench_linear.py --out results/linear.csv        # on a CUDA machine
    python bench/bench_linear.py --smoke --out /tmp/linear.csv  # checks the script on CPU
"""

import torch
import torch.nn.functional as TF

import tritonalex.functional as F
from tritonalex.bench import compare, parser, require_cuda, run_info, write_csv_atomically

# name: (in_features, out_features, ReLU + dropout 0.5 after it)
FC_LAYERS = {"fc6": (9216, 4096, True), "fc7": (4096, 4096, True), "fc8": (4096, 1000, False)}


def impls(x, w, b, fused):
    if fused:
        return {"tritonalex": lambda: F.linear(x, w, b, activation="relu", dropout=0.5),
                "torch": lambda: TF.dropout(torch.relu(TF.linear(x, w, b)), 0.5)}
    return {"tritonalex": lambda: F.linear(x, w, b), "torch": lambda: TF.linear(x, w, b)}


def peak_mib(step):
    """Peak memory allocated above the starting point during one call of `step` (CUDA only)."""
    if not torch.cuda.is_available():
        return float("nan")
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - start) / 2**20


def run(layers, batch, dtypes, smoke, out):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    info = run_info(batch)
    rows = []
    for layer in layers:
        k, n, fused = FC_LAYERS[layer]
        for dtype in dtypes:
            x = torch.randn(batch, k, device=device, dtype=dtype, requires_grad=True)
            w = (0.01 * torch.randn(n, k, device=device, dtype=dtype)).requires_grad_()
            b = torch.zeros(n, device=device, dtype=dtype, requires_grad=True)
            fns = impls(x, w, b, fused)
            dy = torch.randn(batch, n, device=device, dtype=dtype)
            for pass_ in ("forward", "forward+backward"):
                backward = pass_ != "forward"
                steps = {name: (lambda f=f: f().backward(dy)) if backward else (lambda f=f: f())
                         for name, f in fns.items()}
                flops = 2 * batch * k * n * (3 if backward else 1)
                size = x.element_size()
                bytes_ = (batch * k + n * k + batch * n) * size
                if backward:  # read dy, y, w, x; write dx, dw, db
                    bytes_ += (2 * batch * n + 2 * n * k + 2 * batch * k + n) * size
                new = compare(info, f"{layer}", dtype, "row-major", pass_, steps, flops, bytes_,
                              smoke, tensor_core_fp32=torch.backends.cuda.matmul.allow_tf32)
                for row in new:
                    row["case"] = f"{layer}|peak={peak_mib(steps[row['impl']]):.1f}MiB"
                rows += new
                write_csv_atomically(rows, out)  # after every case: a timeout keeps results
    return rows


def main(argv=None):
    options = parser(__doc__)
    options.add_argument("--layers", nargs="+", default=list(FC_LAYERS), choices=list(FC_LAYERS))
    args = options.parse_args(argv)
    require_cuda(args, "bench_linear.py")
    if args.smoke:
        args.batch, args.layers, args.dtypes = 2, ["fc8"], ["float32"]
    rows = run(args.layers, args.batch, [getattr(torch, d) for d in args.dtypes], args.smoke, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
