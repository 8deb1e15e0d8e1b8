"""Host time per launch: what the launches of a training step cost the CPU, GPU calls stubbed out.

A step of a compiled spec runs on meta tensors (as the static model's capture runs it, see
capture.py), but every launch goes all the way through Triton's launch path, the autotuner's
cache lookup, the argument binder and the compiled-kernel lookup, to the call that would enqueue
the kernel on a GPU, which here does nothing (Triton's driver is a stand-in for the target card;
kernels are compiled once, cached, never run). Medians over `repeats` steps after a warm-up
(forward and backward; the optimizer step, torch's own, is left out):

* per launch: the time inside tritonalex's library ops (our launcher: argument reading, output
  allocation, the cost record, and Triton's launch path) over the number of Triton launches;
* Triton's share of it: the same with every launch stopped at `kernels.launch.launch`, before
  Triton, subtracted;
* op dispatch: the time of each library-op call outside its implementation (torch.library's
  dispatch and autograd wrapper, our argument checks), per op call;
* step: the whole forward + backward host time. On meta tensors torch's own ops run Python
  reference implementations, slower than their host side on a GPU, so this is an upper bound.

Must run with TRITON_INTERPRET=0 (`tritonalex kernels --step --overhead` starts it so).
"""

import contextlib
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..ops._library import IMPLEMENTATIONS, NAMESPACE
from .capture import _State, recording, training_step
from .sass import _TargetDriver


def _no_launch(*args):
    return None


@contextlib.contextmanager
def stubbed_gpu(arch):
    """Triton's driver answers as a card of compute capability `arch` would, and a compiled
    kernel's launch call does nothing (see the module docstring)."""
    from triton.compiler.compiler import CompiledKernel
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.driver import driver

    saved = (driver._active, CompiledKernel._init_handles, Autotuner._bench,
             torch.cuda.get_device_capability)
    driver.set_active(_TargetDriver(arch))
    # Loading the module onto a GPU is what a kernel's first launch does: here its launcher
    # becomes the no-op instead (everything else on the launch path runs as on a GPU).
    CompiledKernel._init_handles = lambda self: setattr(self, "_run", _no_launch)
    # Nothing can be timed: the tuner takes the first config (the steady state is the same
    # cache lookup whichever config it would have picked).
    Autotuner._bench = lambda self, *args, config, **meta: [0.0, 0.0, 0.0]
    torch.cuda.get_device_capability = lambda device=None: divmod(arch, 10)
    try:
        yield
    finally:
        (driver._active, CompiledKernel._init_handles, Autotuner._bench,
         torch.cuda.get_device_capability) = saved


class _TimeOps(TorchDispatchMode):
    """Times tritonalex's library ops: inside their implementations (`inside`) and the whole call
    as seen from Python (`calls`, by the wrapper in `measure`)."""

    def __init__(self):
        super().__init__()
        self.inside, self.calls = 0.0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace != NAMESPACE:
            return func(*args, **(kwargs or {}))
        began = time.perf_counter()
        out = IMPLEMENTATIONS[func.overloadpacket.__name__](*args, **(kwargs or {}))
        self.inside += time.perf_counter() - began
        self.calls += 1
        return out


def measure(spec="alexnet", batch=128, dtype="bf16", arch=90, sms=132, repeats=20):
    """Host times of a training step's launches (see the module docstring), in microseconds."""
    state = _State()
    results = {}
    with stubbed_gpu(arch), training_step(spec, batch, dtype, "channels_last", None,
                                          state) as (step, name):
        for through_triton in (True, False):
            with recording(state, sms, arch) as launches:
                if through_triton:  # the recording hands each launch on, to the stub
                    _hand_on()
                _forward_backward(step)  # warm-up: compiles, tunes, allocates
                steps, inside, calls = [], [], 0
                for _ in range(repeats):
                    launches.clear()
                    timer = _TimeOps()
                    began = time.perf_counter()
                    with timer:
                        _forward_backward(step)
                    steps.append(time.perf_counter() - began)
                    inside.append(timer.inside)
                    calls = timer.calls
                results[through_triton] = (statistics.median(steps), statistics.median(inside),
                                           len(launches), calls)
    (step_s, inside_s, count, calls), (_, stopped_s, _, _) = results[True], results[False]
    return dict(spec=name, batch=batch, dtype=dtype, launches=count, op_calls=calls,
                per_launch_us=inside_s * 1e6 / count,
                triton_per_launch_us=(inside_s - stopped_s) * 1e6 / count,
                step_us=step_s * 1e6, measured_on="this machine's CPU, GPU calls stubbed")


class _Stop(Exception):
    """Raised after the backward: the optimizer step is not timed."""


def _stop():
    raise _Stop


def _forward_backward(step):
    try:
        step(before_optimizer=_stop)
    except _Stop:
        pass


def _hand_on():
    """Make the recording's hook also run each launch through Triton (to the stubbed call)."""
    from ..kernels import launch as launch_module

    record = launch_module.capture_hook

    def hook(kernel, grid, args, kwargs, cost, configs):
        record(kernel=kernel, grid=grid, args=args, kwargs=kwargs, cost=cost, configs=configs)
        kernel[grid](*args, **kwargs)
        return True
    launch_module.capture_hook = hook
