"""Out-of-bounds checking for kernels run under Triton's interpreter.

The interpreter turns every tensor argument into a raw host pointer, so a load or store past a
tensor's storage reads or writes whatever memory lies there: no error here, an illegal memory
access on a GPU. `bounds_checked()` closes that gap: while it is active, every load, store and
atomic of an interpreted kernel checks each address its mask enables against the storages of the
launch's tensor arguments, and raises IndexError naming the kernel and the first stray address.
"""

import contextlib

import numpy as np
import torch
from triton.runtime import interpreter

_ranges = []  # [(first byte, one past the last)] of the running launch's tensor storages
_kernel = [""]


def _storages(values):
    for v in values:
        if isinstance(v, torch.Tensor):
            s = v.untyped_storage()
            yield s.data_ptr(), s.data_ptr() + s.nbytes()
        elif isinstance(v, tuple):
            yield from _storages(v)


def _check(ptrs, mask, what):
    addresses = np.asarray(ptrs.data, dtype=np.uint64)
    if mask is not None:
        addresses = addresses[np.broadcast_to(np.asarray(mask.data, dtype=bool), addresses.shape)]
    if addresses.size == 0:
        return
    size = np.uint64(np.dtype(interpreter._get_np_dtype(ptrs.get_element_ty())).itemsize)
    inside = np.zeros(addresses.shape, dtype=bool)
    for first, end in _ranges:
        inside |= (addresses >= np.uint64(first)) & (addresses + size <= np.uint64(end))
    if not inside.all():
        stray = int(addresses[~inside][0])
        near = min(_ranges, key=lambda r: min(abs(stray - r[0]), abs(stray - r[1])))
        raise IndexError(f"{_kernel[0]}: {what} of {int((~inside).sum())} element(s) outside every "
                         f"tensor argument (first at byte {stray - near[0]} of a {near[1] - near[0]}"
                         f"-byte storage)")


@contextlib.contextmanager
def bounds_checked():
    """Check every interpreted memory access against the launch's tensor storages."""
    builder = interpreter.InterpreterBuilder
    executor = interpreter.GridExecutor
    saved = {name: getattr(builder, name) for name in (
        "create_masked_load", "create_masked_store", "create_atomic_rmw", "create_atomic_cas")}
    saved_args = executor._init_args_hst

    def init_args(self, args_dev, kwargs):
        args_hst, kwargs_hst = saved_args(self, args_dev, kwargs)
        _ranges[:] = list(_storages([*args_hst, *kwargs_hst.values()]))
        _kernel[0] = getattr(self.fn, "__name__", "kernel")
        return args_hst, kwargs_hst

    def load(self, ptrs, mask, *rest):
        _check(ptrs, mask, "load")
        return saved["create_masked_load"](self, ptrs, mask, *rest)

    def store(self, ptrs, value, mask, *rest):
        _check(ptrs, mask, "store")
        return saved["create_masked_store"](self, ptrs, value, mask, *rest)

    def rmw(self, op, ptr, val, mask, *rest):
        _check(ptr, mask, "atomic")
        return saved["create_atomic_rmw"](self, op, ptr, val, mask, *rest)

    def cas(self, ptr, cmp, val, *rest):
        _check(ptr, None, "atomic")
        return saved["create_atomic_cas"](self, ptr, cmp, val, *rest)

    builder.create_masked_load, builder.create_masked_store = load, store
    builder.create_atomic_rmw, builder.create_atomic_cas = rmw, cas
    executor._init_args_hst = init_args
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(builder, name, fn)
        executor._init_args_hst = saved_args


@contextlib.contextmanager
def gpu_choices(arch=90, sms=132, configs="all"):
    """Launch under the interpreter as on a GPU of compute capability `arch` with `sms` SMs: every
    launcher takes its GPU tiles, splits and paths (the kernels' own interpreter-only constexprs,
    set when they were imported, stay), and each autotuned launch runs every config offered there
    (configs="all"; "first": the one TRITONALEX_AUTOTUNE=0 runs), one after the other."""
    from tritonalex.kernels import launch

    modules = [m for m in _kernel_modules() if getattr(m, "INTERPRETING", None) is True]
    saved = (launch._arch_override, launch._sm_count_override, launch.DotKernel.launch)

    def every_config(self, grid, *args, dtype, allow_tf32, tile_dims, cost, **constexprs):
        launch.INTERPRETING = True  # the interpreter's dot precision and upcasts
        try:
            precision = launch.dot_precision(dtype, allow_tf32)
            constexprs.update(ACC=launch.tl_accumulator(dtype), PRECISION=precision,
                              DOT_FP32=launch.dot_in_fp32(dtype))
        finally:
            launch.INTERPRETING = False
        offered = [c for c in self.gpu_configs[launch.dot_class(dtype, precision)]
                   if launch.offered_on(c, arch, constexprs)]
        for config in offered[:1] if configs == "first" else offered:
            launch.launch(self.kernel, grid, *args, cost=cost, **config.kwargs, **constexprs)

    for m in modules:
        m.INTERPRETING = False
    launch._arch_override, launch._sm_count_override = arch, sms
    launch.DotKernel.launch = every_config
    try:
        yield
    finally:
        for m in modules:
            m.INTERPRETING = True
        launch._arch_override, launch._sm_count_override, launch.DotKernel.launch = saved


def _kernel_modules():
    import sys

    return [m for name, m in list(sys.modules.items())
            if name.startswith("tritonalex.kernels") or name.startswith("tritonalex.ops")]
