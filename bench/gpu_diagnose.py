"""Find the launch behind an illegal memory access on a GPU: one case per process (a fault ends
the process's CUDA context), each launch synchronized and named as it runs.

    python bench/gpu_diagnose.py CASE [--batch N]
    compute-sanitizer --tool memcheck --print-limit 3 python bench/gpu_diagnose.py CASE

Cases (the faults the first H200 run found, 2026-11-28, bench/results/gpu-h200-2026-11-28.log):
  lrn-backward       the fused LRN -> max-pool backward, bf16, channels_last, on lrn1's shapes
                     (96 channels in two 48-channel LRN groups, 55x55 -> 27x27) then lrn2's (256
                     in two of 128, 27x27 -> 13x13): the walk along the channels that replaced
                     the band kernel, which faulted on lrn2 (never run on a GPU before)
  conv1-weight-grad  conv1 (space-to-depth) with an NCHW output gradient, its weight gradient
                     run with each autotune config offered to it on sm_90 in turn
  step               one bf16 training step of the alexnet spec, first configs only
Prints `ok KERNEL ...` after each launch synchronizes, `FAULT ...` at the first that does not.
"""

import argparse
import os

os.environ.setdefault("TRITONALEX_AUTOTUNE", "0")

import torch  # noqa: E402

import tritonalex  # noqa: E402
import tritonalex.functional as F  # noqa: E402
from trace_launches import replace_launch  # noqa: E402  (beside this file)
from tritonalex.kernels import conv, launch  # noqa: E402
from tritonalex.perf.capture import kernel_name  # noqa: E402

_launch = launch.launch


def _synchronized_launch(kernel, grid, *args, cost, configs=None, **kwargs):
    """The launch, then a synchronize: a fault is reported here, naming this launch."""
    name = kernel_name(kernel)
    shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
    try:
        _launch(kernel, grid, *args, cost=cost, configs=configs, **kwargs)
        torch.cuda.synchronize()
    except Exception as error:
        print(f"FAULT {name} {shapes} {kwargs}: {error}", flush=True)
        raise
    print(f"ok {name} {shapes} {({k: v for k, v in kwargs.items() if k.isupper()})}", flush=True)


def lrn_backward(batch):
    for channels, hw in ((96, 55), (256, 27)):
        x = torch.randn(batch, channels, hw, hw, device="cuda", dtype=torch.bfloat16).relu()
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        y = F.lrn_max_pool2d(x, 5, 1e-4, 0.75, 2.0, groups=2, kernel_size=3, stride=2)
        torch.autograd.grad(y, x, torch.randn_like(y))


def conv1_weight_grad(batch):
    x = torch.randn(batch, 3, 227, 227, device="cuda", dtype=torch.bfloat16)
    w = (0.05 * torch.randn(96, 3, 11, 11, device="cuda")).to(torch.bfloat16).requires_grad_()
    b = torch.zeros(96, device="cuda", dtype=torch.bfloat16).requires_grad_()
    kernel = conv._weight_grad
    (cls,) = [c for c in kernel.gpu_configs if c == "tensor_core"]
    conv1 = dict(TRANSPOSED=True, REST_M=32, ALIGNED_C=True)  # its launch's constexprs
    for config in [c for c in kernel.gpu_configs[cls] if launch.offered_on(c, 90, conv1)]:
        print(f"-- config {config}", flush=True)
        kernel.offered[cls] = [config]
        kernel.tuned[cls].configs = [config]
        kernel.chosen.clear()
        kernel.direct.entries.clear()  # (keyed without the config)
        y = F.conv2d(x, w, b, stride=4)
        torch.autograd.grad(y, (w, b), torch.randn(y.shape, device="cuda", dtype=y.dtype))
        torch.cuda.synchronize()


def step(batch):
    import torch.nn.functional as TF

    spec = tritonalex.load_spec("alexnet")
    model = tritonalex.compile(spec, backend="triton", devices=("cuda:0",)).train()
    images = torch.randn(batch, spec.channels, spec.size, spec.size, device="cuda")
    labels = torch.randint(0, 10, (batch,), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(images)
    TF.cross_entropy(logits.float(), labels).backward()


CASES = {"lrn-backward": lrn_backward, "conv1-weight-grad": conv1_weight_grad, "step": step}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=list(CASES))
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    replace_launch(_synchronized_launch)
    torch.manual_seed(0)
    CASES[args.case](args.batch)
    torch.cuda.synchronize()
    print(f"{args.case}: no fault", flush=True)


if __name__ == "__main__":
    main()
