"""Benchmark: tritonalex conv2d+bias+ReLU against torch (cuDNN conv, then ReLU) on AlexNet's convs.

For every conv layer, dtype and layout it times the forward and forward+backward of both paths
side by side in one process on one card, and writes one CSV row per (case, implementation) with
p50/p20/p80 milliseconds, achieved TFLOP/s, the roofline floor (max of FLOPs over peak and
minimum bytes over bandwidth), the % of that floor reached and the speedup over torch.

    python bench/bench_conv.py --out results/conv.csv            # on a CUDA machine
    python bench/bench_conv.py --smoke --out /tmp/conv.csv      # CPU/interpreter: checks the script

Without CUDA (--smoke) the numbers are interpreter timings, meaningless as speed; the rows say so.
"""

import torch
import torch.nn.functional as TF

import tritonalex.functional as F
from tritonalex.bench import compare, parser, require_cuda, run_info, write_csv_atomically
from tritonalex.shapes import ALEXNET_CONVS, conv_shapes


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


def run(layers, batch, dtypes, layouts, smoke, out):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    info = run_info(batch)
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
                    if backward:
                        steps = {k: (lambda fn=fn: fn().backward(dy)) for k, fn in impls.items()}
                    else:
                        steps = {k: (lambda fn=fn: _no_grad(fn)) for k, fn in impls.items()}
                    flops, bytes_ = conv_cost(x_shape, w_shape, args, dtype, backward, input_grad)
                    rows += compare(info, layer, dtype, layout, pass_, steps, flops, bytes_, smoke,
                                    tensor_core_fp32=torch.backends.cudnn.allow_tf32)
                    write_csv_atomically(rows, out)  # after every case: a timeout keeps results
    return rows


def _no_grad(fn):
    with torch.no_grad():
        return fn()


def main(argv=None):
    options = parser(__doc__)
    options.add_argument("--layers", nargs="+", default=list(ALEXNET_CONVS), choices=list(ALEXNET_CONVS))
    options.add_argument("--layouts", nargs="+", default=["channels_last", "nchw"],
                         choices=["channels_last", "nchw"])
    args = options.parse_args(argv)
    require_cuda(args, "bench_conv.py")
    if args.smoke:
        args.batch, args.layers, args.dtypes, args.layouts = 1, ["conv3"], ["float32"], ["nchw"]
    rows = run(args.layers, args.batch, [getattr(torch, d) for d in args.dtypes], args.layouts,
               args.smoke, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
