"""Benchmark: tritonalex conv2d+bias+ReLU against torch (cuDNN conv, then ReLU) on AlexNet's convs.

For every conv layer, dtype and layout it times the forward and forward+backward of both paths
side by side in one process on one card, and writes one CSV row per (case, implementation) with
p50/p20/p80 milliseconds, achieved TFLOP/s, the roofline floor (max of FLOPs over peak and
minimum bytes over bandwidth), the % of that floor reached and the speedup over torch.

    python bench/bench_conv.py --out results/conv.csv            # on a CUDA machine
    python bench/bench_conv.py --smoke --out /tmp/conv.csv      # CPU/interpreter: checks the script

Without CUDA (--smoke) the numbers are interpreter timings, meaningless as speed; the rows say so.
"""

import argparse
import csv
import datetime
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as TF

import tritonalex
import tritonalex.functional as F
from tritonalex.shapes import ALEXNET_CONVS, conv_shapes

# Dense datasheet peaks (TFLOP/s) and HBM bandwidth (TB/s) for the roofline floors.
PEAKS = {
    "H100": {torch.bfloat16: 989, torch.float16: 989, "tf32": 495, torch.float32: 67, "bw": 3.35},
    "H200": {torch.bfloat16: 989, torch.float16: 989, "tf32": 495, torch.float32: 67, "bw": 4.8},
    "A100": {torch.bfloat16: 312, torch.float16: 312, "tf32": 156, torch.float32: 19.5, "bw": 2.0},
}
FIELDS = ["date", "gpu", "torch", "triton", "tritonalex", "layer", "batch", "dtype", "layout", "pass",
          "impl", "p50_ms", "p20_ms", "p80_ms", "tflops", "floor_ms", "pct_of_roofline",
          "speedup_vs_torch"]


def peaks_for(name):
    for key, peaks in PEAKS.items():
        if key in name:
            return peaks
    return None


def timer(fn, smoke):
    """(p50, p20, p80) in ms: triton's do_bench on a GPU, a plain wall clock in smoke mode."""
    if not smoke:
        from triton.testing import do_bench

        return do_bench(fn, quantiles=[0.5, 0.2, 0.8])
    start = time.perf_counter()
    fn()
    elapsed = (time.perf_counter() - start) * 1e3
    return elapsed, elapsed, elapsed


def conv_cost(x_shape, w_shape, args, dtype, backward, input_grad):
    """(FLOPs, minimum bytes moved) of forward, or forward+backward, of one conv+bias+ReLU."""
    n, c, h, w = x_shape
    oc, cg, kh, kw = w_shape
    s, p = args["stride"], args["padding"]
    oh, ow = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    gemm = 2 * n * oh * ow * oc * cg * kh * kw
    size = torch.tensor([], dtype=dtype).element_size()
    x_b, w_b, y_b = n * c * h * w * size, oc * cg * kh * kw * size, n * oc * oh * ow * size
    flops, bytes_ = gemm, x_b + w_b + y_b
    if backward:  # weight grad (+ input grad): read dy, y, x, w; write dw, db (and dx)
        flops += gemm * (2 if input_grad else 1)
        bytes_ += 2 * y_b + x_b + 2 * w_b + (2 * x_b if input_grad else 0)
    return flops, bytes_


def run(layers, batch, dtypes, layouts, smoke):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu (Triton interpreter)"
    peaks = peaks_for(gpu)
    meta = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                gpu=gpu, torch=torch.__version__, triton=__import__("triton").__version__,
                tritonalex=tritonalex.__version__, batch=batch)
    rows = []
    for layer in layers:
        x_shape, w_shape, args = conv_shapes(layer, batch)
        input_grad = layer != "conv1"  # the image needs no gradient
        for dtype in dtypes:
            for layout in layouts:
                fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                x = torch.randn(x_shape, device=device, dtype=dtype).contiguous(memory_format=fmt)
                x.requires_grad_(input_grad)
                wt = (0.01 * torch.randn(w_shape, device=device, dtype=dtype)).requires_grad_()
                b = torch.zeros(w_shape[0], device=device, dtype=dtype, requires_grad=True)
                impls = {
                    "tritonalex": lambda: F.conv2d(x, wt, b, activation="relu", **args),
                    "torch": lambda: torch.relu(TF.conv2d(x, wt, b, **args)),
                }
                dy = torch.randn_like(impls["torch"]())
                for pass_ in ("forward", "forward+backward"):
                    backward = pass_ != "forward"
                    flops, bytes_ = conv_cost(x_shape, w_shape, args, dtype, backward, input_grad)
                    peak_key = "tf32" if dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else dtype
                    floor = (max(flops / (peaks[peak_key] * 1e12), bytes_ / (peaks["bw"] * 1e12)) * 1e3
                             if peaks else float("nan"))
                    times = {}
                    for impl, fn in impls.items():
                        step = (lambda fn=fn: fn().backward(dy)) if backward else (lambda fn=fn: fn())
                        with torch.no_grad() if not backward else torch.enable_grad():
                            times[impl] = timer(step, smoke)
                    for impl, (p50, p20, p80) in times.items():
                        rows.append(dict(meta, layer=layer, dtype=str(dtype).replace("torch.", ""),
                                         layout=layout, **{"pass": pass_}, impl=impl,
                                         p50_ms=f"{p50:.4f}", p20_ms=f"{p20:.4f}", p80_ms=f"{p80:.4f}",
                                         tflops=f"{flops / p50 / 1e9:.2f}", floor_ms=f"{floor:.4f}",
                                         pct_of_roofline=f"{100 * floor / p50:.1f}",
                                         speedup_vs_torch=f"{times['torch'][0] / p50:.3f}"))
                        print(f"{layer} {rows[-1]['dtype']:8} {layout:13} {pass_:16} {impl:10} "
                              f"p50 {p50:9.4f} ms  {rows[-1]['pct_of_roofline']:>5}% of roofline  "
                              f"x{rows[-1]['speedup_vs_torch']} vs torch", flush=True)
    return rows


def write_csv_atomically(rows, path):
    """Write to a temporary file beside `path`, then rename: never a half-written result file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, newline="", suffix=".tmp") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(f.name, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--layers", nargs="+", default=list(ALEXNET_CONVS), choices=list(ALEXNET_CONVS))
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--layouts", nargs="+", default=["channels_last", "nchw"],
                        choices=["channels_last", "nchw"])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run that checks the script without a GPU (times are meaningless)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.layers, args.dtypes, args.layouts = 1, ["conv3"], ["float32"], ["nchw"]
    elif not torch.cuda.is_available():
        sys.exit("bench_conv.py measures GPU speed and needs CUDA; use --smoke to check the script")
    rows = run(args.layers, args.batch, [getattr(torch, d) for d in args.dtypes], args.layouts, args.smoke)
    write_csv_atomically(rows, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
