"""Measurement harness shared by the benchmark scripts: timing, roofline floors, CSV rows.

Every row compares implementations measured side by side in one process on one card, with
p50/p20/p80 times, achieved TFLOP/s, the roofline floor (the larger of FLOPs over peak compute
and minimum bytes over peak bandwidth), the % of that floor reached, and the speedup over the
baseline (torch). Result files are written atomically.
"""

import argparse
import csv
import datetime
import os
import sys
import tempfile
import time

import torch

# Dense datasheet peaks: TFLOP/s per compute kind, and HBM bandwidth in TB/s.
PEAKS = {
    "H100": {"bf16": 989, "fp16": 989, "tf32": 495, "fp32": 67, "fp64": 67, "bw": 3.35},
    "H200": {"bf16": 989, "fp16": 989, "tf32": 495, "fp32": 67, "fp64": 67, "bw": 4.8},
    "A100": {"bf16": 312, "fp16": 312, "tf32": 156, "fp32": 19.5, "fp64": 19.5, "bw": 2.0},
}
FIELDS = ["date", "gpu", "torch", "triton", "tritonalex", "case", "batch", "dtype", "layout",
          "pass", "impl", "p50_ms", "p20_ms", "p80_ms", "tflops", "floor_ms", "pct_of_roofline",
          "speedup_vs_torch"]
_KIND = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.float64: "fp64"}


def run_info(batch):
    """The fields every row of one run shares: date, card and versions."""
    import triton

    import tritonalex

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (Triton interpreter)"
    return dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                gpu=gpu, torch=torch.__version__, triton=triton.__version__,
                tritonalex=tritonalex.__version__, batch=batch)


def floor_ms(gpu, dtype, flops, bytes_, tensor_core_fp32=False):
    """The roofline floor in ms, or NaN for a card without datasheet numbers here."""
    peaks = next((p for name, p in PEAKS.items() if name in gpu), None)
    if peaks is None:
        return float("nan")
    kind = "tf32" if dtype == torch.float32 and tensor_core_fp32 else _KIND[dtype]
    return max(flops / (peaks[kind] * 1e12), bytes_ / (peaks["bw"] * 1e12)) * 1e3


def timer(fn, smoke):
    """(p50, p20, p80) in ms: triton's do_bench on a GPU; one wall-clock run in smoke mode."""
    if not smoke:
        from triton.testing import do_bench

        return do_bench(fn, quantiles=[0.5, 0.2, 0.8])
    start = time.perf_counter()
    fn()
    elapsed = (time.perf_counter() - start) * 1e3
    return elapsed, elapsed, elapsed


def compare(info, case, dtype, layout, pass_, steps, flops, bytes_, smoke, tensor_core_fp32=False):
    """Time each of `steps` ({impl: zero-argument callable}, "torch" among them) -> CSV rows."""
    floor = floor_ms(info["gpu"], dtype, flops, bytes_, tensor_core_fp32)
    times = {impl: timer(step, smoke) for impl, step in steps.items()}
    rows = []
    for impl, (p50, p20, p80) in times.items():
        row = dict(info, case=case, dtype=_KIND[dtype], layout=layout, impl=impl,
                   p50_ms=f"{p50:.4f}", p20_ms=f"{p20:.4f}", p80_ms=f"{p80:.4f}",
                   tflops=f"{flops / p50 / 1e9:.2f}", floor_ms=f"{floor:.4f}",
                   pct_of_roofline=f"{100 * floor / p50:.1f}",
                   speedup_vs_torch=f"{times['torch'][0] / p50:.3f}", **{"pass": pass_})
        rows.append(row)
        print(f"{case:22} {row['dtype']:5} {layout:13} {pass_:16} {impl:10} p50 {p50:9.4f} ms  "
              f"{row['pct_of_roofline']:>5}% of roofline  x{row['speedup_vs_torch']} vs torch",
              flush=True)
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


def parser(doc):
    """The options every benchmark script takes: --out, --batch, --dtypes, --smoke."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    p.add_argument("--smoke", action="store_true",
                   help="tiny run that checks the script without a GPU (times are meaningless)")
    return p


def require_cuda(args, script):
    """Exit with a clear message when a real (non --smoke) run has no GPU to measure."""
    if not args.smoke and not torch.cuda.is_available():
        sys.exit(f"{script} measures GPU speed and needs CUDA; use --smoke to check the script")
