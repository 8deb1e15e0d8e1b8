"""Run a Python module with every kernel launch printed to stderr just before it runs: kernel,
grid, tensor shapes and strides, constexprs, and each config the autotuner times. For finding the
launch behind an asynchronous CUDA error (an illegal memory access reported at a later call):

    CUDA_LAUNCH_BLOCKING=1 python bench/trace_launches.py tritonalex.cli bench --layer conv1 ...

With blocking launches the error surfaces at the faulting launch, so the last `[launch]` line
printed before it names the kernel and config. Debugging aid only: it patches, it does not measure.
"""

import runpy
import sys

import torch

import tritonalex  # noqa: F401  (first: without CUDA it turns the interpreter on before Triton loads)
import triton.runtime.autotuner as autotuner
from tritonalex.kernels import direct
from tritonalex.kernels import launch as launch_module
from tritonalex.perf.capture import kernel_name


def _say(*parts):
    print("[launch]", *parts, file=sys.stderr, flush=True)


def _describe(args):
    """Tensors as dtype[shape]/strides, other arguments as they are."""
    return " ".join(f"{str(a.dtype)[6:]}{list(a.shape)}/{list(a.stride())}"
                    if isinstance(a, torch.Tensor) else repr(a) for a in args)


_bench = autotuner.Autotuner._bench


def _traced_bench(self, *args, config, **meta):
    _say("tune", kernel_name(self), config)
    return _bench(self, *args, config=config, **meta)


_launch = launch_module.launch


def _traced_launch(kernel, grid, *args, cost, configs=None, **kwargs):
    _say("run", kernel_name(kernel), "grid", grid if not callable(grid) else "(callable)",
         _describe(args), kwargs, "autotuned" if configs else "")
    return _launch(kernel, grid, *args, cost=cost, configs=configs, **kwargs)


_direct = direct.DirectLaunches.launch


def _traced_direct(self, grid, args, constexprs):
    done = _direct(self, grid, args, constexprs)
    if done:
        _say("  ...went the direct path")
    return done


def replace_launch(replacement):
    """Every launch in tritonalex goes through `replacement` (which may call launch.launch): the
    kernel modules took `launch` by name when tritonalex loaded them, so each is repointed."""
    for name, module in list(sys.modules.items()):
        if name.startswith("tritonalex") and getattr(module, "launch", None) is _launch:
            module.launch = replacement


def main():
    autotuner.Autotuner._bench = _traced_bench
    direct.DirectLaunches.launch = _traced_direct
    replace_launch(_traced_launch)
    module_name, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module_name, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
