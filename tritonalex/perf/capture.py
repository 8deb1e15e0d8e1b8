"""Capture every launch one training step of a compiled spec makes, without a GPU.

The step runs as `tritonalex train` runs it (forward under bf16/fp16 autocast or in fp32, cross-
entropy on fp32 logits, backward, then SGD with momentum and weight decay), but on meta tensors
(shapes, strides and dtypes, no storage; autograd works on them, which it does not on fake CUDA
tensors in a CPU build of torch): nothing is computed and no GPU is needed. Every Triton launch
goes through `kernels.launch.launch`; while the capture runs, that hands each launch here instead
of running it. Tensors are recorded as
`PointerArg` (dtype and byte offset: what Triton's argument binder reads of a pointer), every
other argument as given, so the compile step can bind them exactly as a real launch would.

Also counted: the torch kernels the step dispatches (every aten op but views and allocations:
casts, cats, adds, zero fills, the loss...; those inside a tritonalex op too), the optimizer's
apart, and the calls of tritonalex's library ops.
The step runs twice and the second is recorded: the steady state, after one-time allocations.

Must run with TRITON_INTERPRET=0 (so kernels are compiled functions, launchers use their GPU
configs): `tritonalex kernels` starts it in such a subprocess.
"""

import contextlib
import dataclasses
from collections import Counter

import torch
import torch.nn.functional as TF
from torch.utils._python_dispatch import TorchDispatchMode

from ..ops._library import IMPLEMENTATIONS, NAMESPACE

# aten ops that launch no kernel: views, allocations and metadata.
_NO_KERNEL = ("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
              "lift_fresh", "detach", "alias", "is_same_size", "_local_scalar_dense",
              "_unsafe_view",
              "_record_function_enter_new", "_record_function_exit")

@dataclasses.dataclass(frozen=True)
class PointerArg:
    """A tensor argument as Triton's binder sees it: dtype and data_ptr (its byte offset from a
    256-byte-aligned allocation, as torch's CUDA allocator gives)."""
    dtype: torch.dtype
    offset: int

    def data_ptr(self):
        return self.offset


@dataclasses.dataclass
class Launch:
    """One captured launch."""
    layer: str  # the compiled net's node, "loss", or "optimizer"
    direction: str  # "forward" or "backward"
    kernel: object  # the JITFunction, or the Autotuner wrapping it
    grid: object  # a tuple, or a callable of the config's constexprs
    args: tuple
    kwargs: dict
    cost: object  # kernels.launch.Cost
    configs: list  # the autotuned configs, or None for a fixed launch

    @property
    def name(self):
        return kernel_name(self.kernel)


def kernel_name(kernel):
    fn = kernel
    while hasattr(fn, "fn"):  # Autotuner -> JITFunction -> python function
        fn = fn.fn
    return fn.__name__


@dataclasses.dataclass
class Step:
    """What one training step launches and dispatches."""
    spec: str
    batch: int
    dtype: str
    layout: str
    launches: list
    torch_kernels: Counter  # forward + backward (the loss included)
    torch_kernel_bytes: Counter  # the same kernels' tensor bytes
    optimizer_kernels: Counter
    op_calls: Counter  # torch.ops.tritonalex.* calls, forward and backward


class _State:
    layer = "input"
    direction = "forward"


class _CountKernels(TorchDispatchMode):
    """Counts dispatched aten ops that launch a kernel into `counter`, and tritonalex's library
    ops into `op_calls` (while `recording`). A tritonalex op runs its implementation under this
    mode, so the torch kernels inside it are counted too."""

    def __init__(self):
        super().__init__()
        self.counter, self.op_calls = Counter(), Counter()
        self.bytes = Counter()  # per kernel name: bytes of its tensor arguments and results
        self.recording = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if func.namespace == NAMESPACE:
            if self.recording:
                self.op_calls[name] += 1
            with self:
                return IMPLEMENTATIONS[name](*args, **kwargs)
        out = func(*args, **kwargs)
        if self.recording and not func.is_view and name not in _NO_KERNEL:
            self.counter[name] += 1
            self.bytes[name] += _tensor_bytes((args, kwargs, out))
        return out


def _tensor_bytes(tree):
    """Bytes of the distinct tensors in a nest of tuples, lists and dicts: what a kernel reads
    and writes at least."""
    seen, total, todo = set(), 0, [tree]
    while todo:
        item = todo.pop()
        if isinstance(item, torch.Tensor):
            if id(item) not in seen:
                seen.add(id(item))
                total += item.numel() * item.element_size()
        elif isinstance(item, (tuple, list)):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
    return total


def _pointer(arg):
    if isinstance(arg, torch.Tensor):
        return PointerArg(arg.dtype, arg.storage_offset() * arg.element_size())
    return arg


@contextlib.contextmanager
def _simulated_autocast(dtype):
    """torch.autocast has no meta device; tritonalex's conv2d/linear ask torch whether autocast
    is on for their inputs' device (as torch's own ops do) and cast, so answer as a CUDA autocast
    would for the meta tensors of the capture."""
    if dtype is None:
        yield
        return
    saved = torch.amp.is_autocast_available, torch.is_autocast_enabled, torch.get_autocast_dtype
    torch.amp.is_autocast_available = lambda device_type: device_type == "meta" or saved[0](device_type)
    torch.is_autocast_enabled = lambda device_type=None: device_type == "meta"
    torch.get_autocast_dtype = lambda device_type: dtype
    try:
        yield
    finally:
        torch.amp.is_autocast_available, torch.is_autocast_enabled, torch.get_autocast_dtype = saved


def _attribute_backward(state, name):
    """A forward hook: the gradient of each of the layer's outputs, when it arrives, sets the
    layer the backward launches that follow belong to. The engine runs a chain's backward in
    reverse creation order, so they are this layer's until the previous layer's output's turn."""
    def set_layer(grad):
        state.layer, state.direction = name, "backward"

    def hook(module, inputs, outputs):
        passed_through = {id(t) for t in inputs[0]}  # e.g. the softmax node returns its logits
        for t in outputs:
            if t.requires_grad and id(t) not in passed_through:
                t.register_hook(set_layer)
    return hook


DTYPES = ("bf16", "fp16", "tf32", "fp32", "fp64")


@contextlib.contextmanager
def targeting(hook, sms=132, arch=90):
    """While inside, every launch is handed to `hook` (see `kernels.launch.capture_hook`) and
    `sms` and `arch` stand in for the GPU's SM count and compute capability (launchers that
    choose per architecture read them: launch.sm_count, launch.target_arch)."""
    from ..kernels import launch as launch_module

    if launch_module.INTERPRETING:
        raise RuntimeError("capturing launches needs TRITON_INTERPRET=0 (it compiles, it does not "
                           "run)")
    previous = (launch_module.capture_hook, launch_module._sm_count_override,
                launch_module._arch_override)
    launch_module.capture_hook, launch_module._sm_count_override = hook, sms
    launch_module._arch_override = arch
    try:
        yield
    finally:
        (launch_module.capture_hook, launch_module._sm_count_override,
         launch_module._arch_override) = previous


@contextlib.contextmanager
def recording(state, sms=132, arch=90):
    """While inside, every launch is appended to the yielded list (tagged with `state`'s layer and
    direction) and nothing runs, on a stand-in GPU of `sms` SMs and compute capability `arch`."""
    launches = []

    def hook(kernel, grid, args, kwargs, cost, configs):
        launches.append(Launch(state.layer, state.direction, kernel, grid,
                               tuple(_pointer(a) for a in args), dict(kwargs), cost, configs))
        return True  # consumed: nothing runs

    with targeting(hook, sms, arch):
        yield launches


def capture_step(spec="alexnet", batch=128, dtype="bf16", layout="channels_last", passes=None,
                 sms=132, arch=90):
    """Capture one training step of `spec` (a name or path) as a `Step`.

    dtype: "bf16" / "fp16" (autocast, as `tritonalex train --precision`), "tf32", "fp32" (IEEE)
    or "fp64" (the whole model in float64). layout: the input images' memory layout,
    "channels_last" (what `tritonalex train` feeds the triton backend) or "nchw".
    sms: the target card's SM count (the conv weight gradient splits its reduction by it); arch:
    its compute capability (the conv weight gradient's tiling depends on it).
    """
    state, counter = _State(), _CountKernels()
    # Forward + backward; the optimizer's stay in counter.counter.
    torch_kernels, torch_kernel_bytes = Counter(), Counter()

    def keep_forward_backward():
        torch_kernels.update(counter.counter)
        torch_kernel_bytes.update(counter.bytes)
        counter.counter = Counter()

    with counter, training_step(spec, batch, dtype, layout, passes, state) as (step, name):
        with recording(state, sms, arch) as launches:
            step()  # warm-up: one-time allocations (optimizer state, cached parameters)
            launches.clear()
            counter.recording = True
            step(before_optimizer=keep_forward_backward)
    return Step(name, batch, dtype, layout, launches, torch_kernels, torch_kernel_bytes,
                counter.counter, counter.op_calls)


@contextlib.contextmanager
def training_step(spec, batch, dtype, layout, passes, state):
    """Yields (step, spec name): `step(before_optimizer=None)` runs one training step of `spec`
    on meta tensors as `tritonalex train` runs it (images as the trainer feeds them: channels_last
    and, under autocast, in the autocast dtype; forward under a simulated CUDA autocast, cross-
    entropy on fp32 logits, backward, SGD with momentum and weight decay), tagging `state` with
    the layer and direction running."""
    import tritonalex

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)
    spec_obj = tritonalex.load_spec(spec) if isinstance(spec, str) else spec
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = dtype == "tf32"
    try:
        model = tritonalex.compile(spec_obj, backend="triton", devices=("meta",), passes=passes)
        model.train()
        param_dtype = torch.float64 if dtype == "fp64" else torch.float32
        model.to(param_dtype)
        # foreach=True: what torch picks for CUDA parameters (the meta default is a loop).
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4,
                                    foreach=True)
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        images = torch.empty(batch, spec_obj.channels, spec_obj.size, spec_obj.size,
                             dtype=autocast or param_dtype, device="meta").contiguous(
                                 memory_format=fmt)
        labels = torch.zeros(batch, dtype=torch.int64, device="meta")
        for name, module in model.nodes.items():
            module.register_forward_pre_hook(_set_layer(state, name))
            module.register_forward_hook(_attribute_backward(state, name))

        def step(before_optimizer=None):
            state.layer, state.direction = "input", "forward"
            with _simulated_autocast(autocast):
                logits = model(images)
            state.layer = "loss"
            loss = TF.cross_entropy(logits.to(param_dtype), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if before_optimizer is not None:
                before_optimizer()
            state.layer, state.direction = "optimizer", "optimizer"
            optimizer.step()

        yield step, spec_obj.name
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def capture_calls(fn, layer, sms=132, arch=90):
    """The launches `fn()` makes (on meta tensors), tagged with `layer`."""
    state = _State()
    state.layer = layer
    with recording(state, sms, arch) as launches:
        fn()
    return launches


def _set_layer(state, name):
    def pre_hook(module, inputs):
        state.layer, state.direction = name, "forward"
    return pre_hook
