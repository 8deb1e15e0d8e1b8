"""Host time per launch: what the launches of a training step cost the CPU, GPU calls stubbed out.

A step of a compiled spec runs on meta tensors (as the static model's capture runs it, see
capture.py), and every launch goes the way it goes on a GPU (`kernels.launch`: the direct path
of kernels/direct.py, or Triton's launch path with the autotuner's cache lookup, the argument
binder and the compiled-kernel lookup) down to the call that would enqueue the kernel, which here
does nothing (Triton's driver is a stand-in for the target card; kernels are compiled
once, cached, never run). The least over `repeats` steps, after two warm-up steps (the first tunes
and compiles, the second fills the direct path), forward and backward (the optimizer step,
torch's own, is left out; `step_us` is the median). Three ways of running the same step, taking
turns:

* launches stopped where a launcher hands them to `kernels.launch` (`launch.launch`, or
  `DotKernel.launch`, whose config lookup is on the launch path): the launchers' own time
  (argument checks and reading, output allocation, the cost record) per launch: `launcher_us`;
* launches run as on a GPU (the direct path after the warm-up): `launch_path_us` per launch is
  this run's time minus the stopped run's, and `per_launch_us` the two together;
* the direct path turned off (`TRITONALEX_DIRECT_LAUNCH=0`): Triton's own launch path per launch,
  `triton_path_us`, for comparison.

Times are taken around our ops' implementations (op dispatch, torch.library's autograd wrapper
and the argument checks before it are outside them: `step_us` holds everything). On meta tensors
torch's own ops run Python reference implementations, slower than their host side on a GPU, so
`step_us` is an upper bound; an output allocation is about the same.

Must run with TRITON_INTERPRET=0 (`tritonalex kernels --step --overhead` starts it so).
"""

import contextlib
import statistics
import time

import torch

from ..kernels import direct
from ..kernels import launch as launch_module
from ..ops._library import IMPLEMENTATIONS
from .capture import _State, targeting, training_step
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


class _TimedImplementations:
    """While entered, every tritonalex op's implementation is timed (outermost calls only):
    `seconds` and `calls` since the last `reset`."""

    def __enter__(self):
        self.saved = dict(IMPLEMENTATIONS)
        self.depth = 0
        self.reset()
        for name, impl in self.saved.items():
            IMPLEMENTATIONS[name] = self._timed(impl)
        return self

    def __exit__(self, *exc):
        IMPLEMENTATIONS.update(self.saved)

    def reset(self):
        self.seconds, self.calls = 0.0, 0

    def _timed(self, impl):
        def timed(*args, **kwargs):
            self.depth += 1
            began = time.perf_counter()
            try:
                return impl(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.seconds += time.perf_counter() - began
                    self.calls += 1
        return timed


def measure(spec="alexnet", batch=128, dtype="bf16", arch=90, sms=132, repeats=20):
    """Host times of a training step's launches (see the module docstring), in microseconds."""
    state = _State()
    modes = ("stopped", "direct", "triton")
    inside = {mode: [] for mode in modes}
    steps = []  # whole-step times, of the direct path's run
    launches = 0

    def count(*args, **kwargs):
        nonlocal launches
        launches += 1
        return True  # consumed: nothing runs

    @contextlib.contextmanager
    def running(mode):
        saved = direct.ENABLED, launch_module.launch_meta, launch_module.DotKernel.launch
        direct.ENABLED, launch_module.launch_meta = mode == "direct", True
        if mode == "stopped":  # where a launcher hands a launch to kernels.launch
            launch_module.DotKernel.launch = count
        try:
            with targeting(count if mode == "stopped" else None, sms, arch):
                yield
        finally:
            direct.ENABLED, launch_module.launch_meta, launch_module.DotKernel.launch = saved

    with stubbed_gpu(arch), training_step(spec, batch, dtype, "channels_last", None,
                                          state) as (step, name), _TimedImplementations() as timer:
        for mode in modes:  # warm-up: compiles, tunes, allocates, fills the direct path
            with running(mode):
                for _ in range(2):
                    _forward_backward(step)
        for _ in range(repeats):  # the modes take turns, so a slow spell of the machine hits all
            for mode in modes:
                with running(mode):
                    launches = 0
                    timer.reset()
                    began = time.perf_counter()
                    _forward_backward(step)
                    if mode == "direct":
                        steps.append(time.perf_counter() - began)
                    inside[mode].append(timer.seconds)
                    if mode == "stopped":
                        count_per_step, calls = launches, timer.calls
    # The least of the repeats: each is the cost plus whatever else the machine did meanwhile.
    direct_s, triton_s, stopped_s = (min(inside[mode]) for mode in ("direct", "triton", "stopped"))
    per_launch = lambda seconds: seconds * 1e6 / count_per_step
    return dict(spec=name, batch=batch, dtype=dtype, launches=count_per_step, op_calls=calls,
                per_launch_us=per_launch(direct_s),
                launcher_us=per_launch(stopped_s),
                launch_path_us=per_launch(direct_s - stopped_s),
                triton_path_us=per_launch(triton_s - stopped_s),
                step_us=statistics.median(steps) * 1e6,
                measured_on="this machine's CPU, GPU calls stubbed")


class _Stop(Exception):
    """Raised after the backward: the optimizer step is not timed."""


def _stop():
    raise _Stop


def _forward_backward(step):
    try:
        step(before_optimizer=_stop)
    except _Stop:
        pass
