"""The direct launch path: a launch Triton has made before goes straight to its compiled kernel.

Triton's `kernel[grid](*args)` binds every argument, derives its specialization (each tensor's
dtype and 16-byte alignment, each integer's value class), builds a cache key, looks the compiled
kernel up, checks the globals the kernel read, then calls the compiled kernel's launcher: 30-50 us
of Python per launch on this project's 2-core CI machine, more than many of our kernels run on an
H100. Once Triton has launched a specialization, launching it again needs only that last call.

So each kernel keeps a `DirectLaunches` table. The first launch of each key goes through Triton's
path; the table keeps the CompiledKernel Triton returned, and later launches with the same key
call its launcher with exactly the arguments Triton passes (`*bound_args.values()`: every
parameter in order, constexprs included, which the launcher skips), on the current stream. The
key: integers and floats by value (so it fixes every specialization Triton derives from them),
tensors by dtype, data_ptr % 16 and whether on CUDA (a CPU tensor must reach launch.check_on_gpu),
the constexprs, the current device. Values, not types: 1 and 1.0 share a key, so launchers pass
floats as floats (they do: sizes and strides come from torch as ints, float arguments pass
through float()); a mix-up would be harmless or loud (an int where a kernel took a float
converts; a float where it took an int is a TypeError), never silent.

Not direct (Triton's path every time): kernels with pre-run hooks, tensors passed by keyword, a
kernel whose launches put tensors at different positions, launches while a profiler's launch hook
is set. TRITONALEX_DIRECT_LAUNCH=0 turns the path off. tests/test_perf.py checks on a stubbed GPU
that every direct launch of a training step passes what Triton's own launch passes.
"""

import os

import torch
from triton import knobs
from triton.runtime.driver import driver

ENABLED = os.environ.get("TRITONALEX_DIRECT_LAUNCH", "1") != "0"


class DirectLaunches:
    """One kernel's direct launches: key -> (the compiled kernel's launcher, function handle and
    packed metadata, the constexprs' values after the positional arguments, the grid's meta)."""

    def __init__(self, kernel):
        self.kernel = kernel  # the JITFunction
        self.positions = None  # where its launches pass tensors (None: not seen yet)
        self.entries = {}
        self.usable = not kernel.pre_run_hooks

    def launch(self, grid, args, constexprs):
        """Launch `args` if this key launched before (True); else nothing (False)."""
        if not (ENABLED and self.entries):
            return False
        active = driver.active
        device = active.get_current_device()
        found = self.entries.get(_key(self.positions, args, constexprs, device))
        if found is None or _hooked(knobs.runtime.launch_enter_hook) \
                or _hooked(knobs.runtime.launch_exit_hook):
            return False
        launcher, function, metadata, tail, meta = found
        if callable(grid):
            grid = grid(meta)
        launcher(grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1,
                 active.get_current_stream(device), function, metadata, None, None, None,
                 *args, *tail)
        return True

    def remember(self, args, constexprs, kwargs, compiled):
        """After Triton launched the kernel with `args` and `kwargs` (`constexprs` and maybe a
        config's, which the key's constexprs then fix) and returned `compiled`: keep it."""
        if not (ENABLED and self.usable) or compiled is None:
            return
        positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        if self.positions is None:
            self.positions = positions
        if positions != self.positions or any(isinstance(v, torch.Tensor)
                                               for v in kwargs.values()):
            self.usable, self.entries = False, {}
            return
        if hasattr(compiled, "result"):  # an asynchronous compile's future
            compiled = compiled.result()
        params = self.kernel.params[len(args):]
        tail = tuple(kwargs[p.name] if p.name in kwargs else p.default for p in params)
        key = _key(positions, args, constexprs, driver.active.get_current_device())
        # Triton's launch loaded the kernel: its launcher and function handle are set.
        self.entries[key] = (compiled.run, compiled.function, compiled.packed_metadata, tail,
                             dict(kwargs))


def _key(positions, args, constexprs, device):
    """What decides Triton's specialization of a launch (see the module docstring); None when a
    tensor is missing from one of `positions`."""
    values = list(args)
    try:
        for i in positions:
            t = values[i]
            values[i] = (t.dtype, t.data_ptr() & 15 == 0, t.is_cuda)
    except AttributeError:
        return None
    return tuple(values), tuple(constexprs.items()), device


def _hooked(hook):
    """Whether a launch hook would call something (Triton >= 3.4 keeps an empty HookChain, which
    the launcher calls with the launch's metadata; with no calls in it, passing None is the same)."""
    return hook is not None and bool(getattr(hook, "calls", True))
