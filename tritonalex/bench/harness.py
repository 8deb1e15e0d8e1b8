"""Measurement harness: timing, peak memory, roofline floors and result files.

Every row compares implementations measured side by side in one process on one card: median,
20th and 80th percentile times (triton.testing.do_bench: CUDA events after warm-up, L2 flushed
between runs), achieved TFLOP/s and GB/s, the roofline floor (the larger of FLOPs over peak compute
and minimum bytes over peak bandwidth), the % of that floor reached, the speedup over torch eager
(a CUDA-graph replay's, `*.graph`, over torch's replay) and the peak memory of one call. Result
files are written atomically.
"""

import csv
import datetime
import os

import torch

from .._output import atomic_open

# Dense datasheet peaks (SXM parts): TFLOP/s per compute kind, and HBM bandwidth in TB/s.
PEAKS = {
    "H100": {"bf16": 989, "fp16": 989, "tf32": 495, "fp32": 67, "fp64": 67, "bw": 3.35},
    "H200": {"bf16": 989, "fp16": 989, "tf32": 495, "fp32": 67, "fp64": 67, "bw": 4.8},
    "A100": {"bf16": 312, "fp16": 312, "tf32": 156, "fp32": 19.5, "fp64": 19.5, "bw": 2.0},
}
# The precisions a user picks: tensor dtype, and whether fp32 matmuls/convs may use TF32.
PRECISIONS = {"fp32": (torch.float32, False), "tf32": (torch.float32, True),
              "fp16": (torch.float16, False), "bf16": (torch.bfloat16, False),
              "fp64": (torch.float64, False)}
FIELDS = ["date", "gpu", "torch", "triton", "tritonalex", "case", "batch", "dtype", "tf32", "layout",
          "direction", "impl", "p50_ms", "p20_ms", "p80_ms", "tflops", "gbps", "floor_ms",
          "pct_of_roofline", "speedup_vs_torch", "peak_mib", "note"]


def run_info(batch):
    """The fields every row of one run shares: date, card and versions."""
    import triton

    import tritonalex

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (Triton interpreter)"
    return dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                gpu=gpu, torch=torch.__version__, triton=triton.__version__,
                tritonalex=tritonalex.__version__, batch=batch)


def floor_ms(gpu, precision, flops, bytes_):
    """The roofline floor in ms on `gpu` (a name containing H100, H200 or A100), NaN otherwise."""
    peaks = next((p for name, p in PEAKS.items() if name in gpu), None)
    if peaks is None:
        return float("nan")
    return max(flops / (peaks[precision] * 1e12), bytes_ / (peaks["bw"] * 1e12)) * 1e3


class precision_mode:
    """Context manager: TF32 on or off for both cuDNN convs and cuBLAS matmuls, restored after."""

    def __init__(self, tf32):
        self.tf32 = tf32

    def __enter__(self):
        self.saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = self.tf32

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved


def time_ms(step):
    """(p50, p20, p80) in ms of a zero-argument CUDA callable, after one untimed call (which
    also absorbs Triton autotuning and torch.compile's compilation)."""
    from triton.testing import do_bench

    step()
    torch.cuda.synchronize()
    return tuple(do_bench(step, quantiles=[0.5, 0.2, 0.8]))


def peak_mib(step):
    """Peak memory allocated above the starting point during one call of `step`, in MiB."""
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - start) / 2**20


def measurement_rows(info, case, precision, layout, direction, steps, flops, bytes_, notes=None):
    """Time and measure each of `steps` ({impl: callable or None}, "torch" among them) -> rows.

    A None step (an implementation that could not run, e.g. torch.compile failing) gives a row
    with empty figures and the reason from `notes[impl]`.
    """
    floor = floor_ms(info["gpu"], precision, flops, bytes_)
    times = {impl: time_ms(step) for impl, step in steps.items() if step is not None}
    rows = []
    for impl, step in steps.items():
        row = dict(info, case=case, dtype=precision, tf32=PRECISIONS[precision][1], layout=layout,
                   direction=direction, impl=impl, note=(notes or {}).get(impl, ""))
        if step is not None:
            p50, p20, p80 = times[impl]
            row.update(p50_ms=round(p50, 4), p20_ms=round(p20, 4), p80_ms=round(p80, 4),
                       tflops=round(flops / p50 / 1e9, 2), gbps=round(bytes_ / p50 / 1e6, 1),
                       floor_ms=round(floor, 4), pct_of_roofline=round(100 * floor / p50, 1),
                       speedup_vs_torch=round(times[_baseline(impl, times)][0] / p50, 3),
                       peak_mib=round(peak_mib(step), 1))
        rows.append(row)
    return rows


def _baseline(impl, times):
    """The row a speedup divides: torch eager, or for a graph replay (`*.graph`) torch's replay
    where one was timed (like against like: both without host time)."""
    return "torch.graph" if impl.endswith(".graph") and "torch.graph" in times else "torch"


def append_csv_atomically(rows, path):
    """Append rows to the CSV at `path` (created with a header if missing) by rewriting the old
    content plus the new rows atomically: a crash or Ctrl-C leaves the old file or the new one."""
    old = []
    if os.path.exists(path):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames and reader.fieldnames != FIELDS:
                raise ValueError(f"{path} has other columns than this version writes; "
                                 f"pass another --csv file")
            old = list(reader)
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(old + rows)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
