"""Launch logic shared by every kernel: interpreter or GPU, tile configs, dtypes, output buffers.

One place decides how a kernel is launched, so that each kernel file only holds its kernels and
their launchers:

* ``INTERPRETING``: whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``).
  ``tritonalex/__init__.py`` sets that variable on machines without CUDA before triton is imported.
* ``DotKernel``: the GPU tile configs (autotuned) on a GPU; under the interpreter, where a program
  instance costs ~0.45 ms whatever its size and multi-config autotune crashes, one large tile
  sized to the problem.
  The compile check (``tritonalex kernels``) compiles exactly the GPU config lists given here.
* dtype rules: which torch dtypes a kernel takes, the ``tl.dot`` input precision (IEEE or TF32)
  and the interpreter's bf16 workaround.
* ``empty``: every output buffer comes from here, so tests can poison them (fill with NaN) and
  catch an element that a kernel never wrote.
* ``launch``: the one place every kernel launch goes through. Each launch states its ``Cost``
  (useful FLOPs, minimum bytes, main-loop trips per program), so the static performance model
  (``tritonalex.perf``) can capture a whole training step's launches without running one.
"""

import functools
import os

import torch
import triton
import triton.language as tl

from . import direct

INTERPRETING = os.environ.get("TRITON_INTERPRET", "0").lower() not in ("", "0", "false", "off")

# TRITONALEX_AUTOTUNE=0 runs every kernel with the first config of its list instead of timing all
# of them: each new layer shape then costs one compile instead of one per config (the GPU test run).
AUTOTUNE = os.environ.get("TRITONALEX_AUTOTUNE", "1") != "0"

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tile(gpu, interpreter, fit=()):
    """The tile of a launch that is not autotuned (block sizes, then e.g. warps): `gpu` on a GPU;
    under the interpreter, where every program instance costs ~0.45 ms whatever its size,
    `interpreter` (large, to run few instances), each of its first len(fit) blocks cut to the
    power of two that covers that problem size (no work on a block past the problem's end).
    Every such launcher chooses through here."""
    if not INTERPRETING:
        return gpu
    if not fit:
        return interpreter
    return tuple(min(block, triton.next_power_of_2(max(size, 1))) for block, size in zip(interpreter, fit)) \
        + tuple(interpreter[len(fit):])


class Cost:
    """What a launch costs at least, for the static performance model (``tritonalex.perf``).

    flops: useful floating-point operations (2 per multiply-add of a GEMM, 0 for data movement);
    min_bytes: bytes that must cross DRAM at least (each input read once, each output written once);
    trips: per config (a dict of its constexprs), how many times one program runs the kernel's
    main loop (the one holding the ``tl.dot``, else the longest); 1 for loop-free kernels;
    workspace_bytes: scratch the launch writes and reads back beyond that (a split reduction's
    partial sums, counted twice: not part of the floor, but of the model's memory time), a number
    or, per config, a function of its constexprs;
    tail_bytes: per config, bytes one program reads after its main loop before the launch can
    end (a split reduction's last arrival reading its tile's partial sums): a serial tail;
    paths: constexpr overrides, one per path of a kernel whose programs split evenly among them,
    each running one (the fused LRN -> max-pool walk's stride classes): the model counts the
    average instructions of the kernel built with each (with the registers and shared memory of
    the real one).
    """

    __slots__ = ("flops", "min_bytes", "trips", "workspace_bytes", "tail_bytes", "paths")

    def __init__(self, flops, min_bytes, trips=None, workspace_bytes=0, tail_bytes=None,
                 paths=()):
        self.flops, self.min_bytes = int(flops), int(min_bytes)
        self.trips = trips or (lambda meta: 1)
        self.workspace_bytes = workspace_bytes if callable(workspace_bytes) \
            else (lambda meta, total=int(workspace_bytes): total)
        self.tail_bytes = tail_bytes or (lambda meta: 0)
        self.paths = [dict(p) for p in paths]


def nbytes(*tensors):
    """Bytes of the elements of these tensors (None skipped): a minimum-traffic term."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


# Set by the static performance model while it captures a step: called with every launch instead
# of running it (see `launch`). None the rest of the time.
capture_hook = None


def launch(kernel, grid, *args, cost, configs=None, **kwargs):
    """Run `kernel[grid](*args, **kwargs)`: every launch in tritonalex goes through here.

    `configs` is the list a launch autotunes over (`kernel` is then the autotuner); `cost` is its
    `Cost`. While a capture is active the launch is handed to it first; it returns True when it
    consumed the launch (nothing runs). A launch on meta tensors runs nothing: meta tensors carry
    shapes only, so the outputs the launcher allocated are already the whole answer. Otherwise
    the launch goes straight to its compiled kernel when it launched before (kernels/direct.py).
    A grid that is a callable reads constexprs only (BLOCK_M...: keyword arguments).
    """
    if capture_hook is not None and capture_hook(kernel=kernel, grid=grid, args=args,
                                                 kwargs=kwargs, cost=cost, configs=configs):
        return
    if runs_nothing(args):
        return
    if configs is not None:  # the autotuner: Triton's path
        check_on_gpu(args)
        kernel[grid](*args, **kwargs)
        return
    table = _direct_launches(kernel)
    if table is None or not table.launch(grid, args, kwargs):
        check_on_gpu(args)
        compiled = kernel[grid](*args, **kwargs)
        if table is not None:
            table.remember(args, kwargs, kwargs, compiled)


def check_on_gpu(args):
    """Where CUDA is available the kernels run compiled and take CUDA tensors only: a tensor on
    another device is refused as torch refuses mixed devices (Triton's own error would name an
    argument number). Checked on Triton's path; the direct path's key holds each tensor's device
    type, so a CPU tensor never takes it."""
    if INTERPRETING or not torch.cuda.is_available():
        return
    for a in args:
        if isinstance(a, torch.Tensor) and not (a.is_cuda or a.is_meta):
            raise RuntimeError(f"Expected all tensors to be on a CUDA device: CUDA is available, so "
                               f"tritonalex runs its kernels compiled, but got a tensor on {a.device}")


# Set by the host-overhead measurement (tritonalex/perf/overhead.py), which stubs the GPU call
# out: launches on meta tensors then go the whole launch path.
launch_meta = False


def runs_nothing(args):
    """Whether a launch with these arguments runs nothing: it is on meta tensors."""
    if launch_meta:
        return False
    first = args[0]  # a launch's tensors share a device: the first one tells, if it is a tensor
    if isinstance(first, torch.Tensor):
        return first.is_meta
    return any(isinstance(a, torch.Tensor) and a.is_meta for a in args)


_tables = {}  # id(kernel) -> its DirectLaunches


def _direct_launches(kernel):
    """The direct-launch table of a JITFunction (None when it cannot take the direct path: the
    interpreter runs every launch anyway)."""
    if INTERPRETING:
        return None
    table = _tables.get(id(kernel))
    if table is None:
        table = _tables[id(kernel)] = direct.DirectLaunches(kernel)
    return table if table.usable else None


_sm_count_override = None
_arch_override = None


def sm_count(device):
    """Streaming multiprocessors of `device` (the static model substitutes its target card's)."""
    if _sm_count_override is not None:
        return _sm_count_override
    return torch.cuda.get_device_properties(device).multi_processor_count


# Split reductions (a GEMM's reduction shared by several programs per output tile, each writing
# a partial sum; the last to arrive adds them in split order: deterministic, one launch).
MAX_SPLITS = 24  # the last program of a tile adds up to this many partial tiles: a serial tail


def split_count(tiles, device, most, reduction=None):
    """How many programs share the reduction of each of `tiles` output tiles: the fewest whose
    time is within 1% of the best count's up to MAX_SPLITS and `most`. Time per unit of work:
    rounds of programs (a last, partly empty wave is idle SMs), plus, given the `reduction`
    length, the last arrival's serial sum of the tile's partials (`Cost.tail_bytes`): per split
    about 100 / reduction of the tile's work (4-byte partials read from L2 at ~64 bytes per
    clock against tensor cores doing ~3300 bf16 FLOPs per clock, 2 per reduction step). The
    static model counts the partials' bytes (`Cost.workspace_bytes`) too, hence `most` (callers
    bound it by the bytes the partials may add). `tiles` counts the output tiles of the tile the
    caller expects sm_90 to choose (its largest, or the conv weight gradient's transposed 64-row
    tiles); smaller tiles make more programs."""
    sms = sm_count(device)
    most = max(1, min(MAX_SPLITS, most))
    tail = 100 / reduction if reduction else 0.0
    time = {s: cdiv(tiles * s, sms) / s + (s - 1) * tail for s in range(1, most + 1)}
    best = min(time.values())
    return min(s for s, t in time.items() if t <= 1.01 * best)


_counters = {}


def arrival_counters(count, device):
    """A zeroed int32 workspace of at least `count` counters on `device` (one per output tile of a
    split reduction, see tiles.last_arrival), kept between launches: each launch leaves it zeroed
    again. Launches that use it run in one stream's order."""
    have = _counters.get(device)
    if have is None or have.numel() < count:
        have = _counters[device] = torch.zeros(max(count, 4096), dtype=torch.int32, device=device)
    return have


def target_arch(device):
    """The compute capability a launch on `device` compiles for, as 80, 86, 90...: a launcher that
    chooses its kernel or tile per architecture asks here. The static model substitutes its
    target's; the interpreter answers 90, so the tests run the newest architecture's choices."""
    if _arch_override is not None:
        return _arch_override
    if INTERPRETING:
        return 90
    major, minor = torch.cuda.get_device_capability(device)
    return 10 * major + minor


class DotKernel:
    """A `tl.dot` kernel and how to launch it: on a GPU, autotuned over the config list of its dot
    class (see `dot_class`); under the interpreter, launched directly with one tile sized to the
    problem (big, to run few program instances; no larger than the problem, to waste no work).

    The kernel takes the constexprs ACC, PRECISION and DOT_FP32, which `launch` derives from the
    dtype; `tile_dims` = (rows, columns, reduction) of the GEMM, used only under the interpreter.
    """

    def __init__(self, kernel, gpu_configs, key):
        self.kernel = kernel
        self.gpu_configs = gpu_configs  # {dot class: [triton.Config]}, best general choice first
        # What each class autotunes over (the config objects themselves: they carry their archs).
        self.offered = {cls: list(configs) if AUTOTUNE else list(configs[:1])
                        for cls, configs in gpu_configs.items()}
        self.tuned = {} if INTERPRETING else {
            cls: triton.autotune(configs=configs, key=key,
                                 prune_configs_by={"early_config_prune": _prune_for_this_gpu})(kernel)
            for cls, configs in self.offered.items()}
        # Once the autotuner has chosen for a key, later launches with that key take the chosen
        # config from here (the autotuner's own lookup builds a dict of every argument and the
        # dtype names of all tensors on every launch), and once launched, the direct path.
        self.key_spec = [(name, kernel.arg_names.index(name)) for name in key]
        self.tensor_positions = None
        self.chosen = {}  # key -> the chosen config's keyword arguments with the constexprs
        self.direct = None if INTERPRETING else direct.DirectLaunches(kernel)

    def launch(self, grid, *args, dtype, allow_tf32, tile_dims, cost, **constexprs):
        precision = dot_precision(dtype, allow_tf32)
        constexprs.update(ACC=tl_accumulator(dtype),
                          PRECISION=precision, DOT_FP32=dot_in_fp32(dtype))
        if INTERPRETING:
            launch(self.kernel, grid, *args, cost=cost, **interpreter_tile(*tile_dims), num_warps=1,
                   **constexprs)
            return
        # Launched before with these arguments: straight to the compiled kernel (kernels/direct.py,
        # keyed on the constexprs alone: they and the arguments fix the chosen config).
        if capture_hook is None and not runs_nothing(args) \
                and self.direct.launch(grid, args, constexprs):
            return
        cls = dot_class(dtype, precision)
        # The autotuner's key (its key arguments and every tensor's dtype) and our constexprs.
        if self.tensor_positions is None:  # the same argument list on every launch
            self.tensor_positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        key = (cls, *[args[i] if i < len(args) else constexprs[name] for name, i in self.key_spec],
               *[args[i].dtype for i in self.tensor_positions], *constexprs.values())
        chosen = self.chosen.get(key)
        if chosen is None:  # the autotuner's first launch for this key
            tuned = self.tuned[cls]
            tuned.best_config = None  # set again only if this launch reaches the autotuner
            launch(tuned, grid, *args, cost=cost, configs=self.offered[cls], **constexprs)
            if tuned.best_config is not None:  # it ran (a capture or a meta launch never does)
                self.chosen[key] = {**constexprs, **tuned.best_config.all_kwargs()}
            return
        # Tuned before: the kernel with the chosen config, through Triton's launch path, then
        # remembered for the direct path.
        if capture_hook is not None or runs_nothing(args):
            launch(self.kernel, grid, *args, cost=cost, **chosen)
            return
        self.direct.remember(args, constexprs, chosen, self.kernel[grid](*args, **chosen))


def interpreter_tile(rows, cols, reduction):
    """BLOCK_M/N/K for the interpreter: powers of two covering the problem, capped."""
    def fit(size, cap):
        return max(16, min(cap, triton.next_power_of_2(max(size, 1))))

    return dict(BLOCK_M=fit(rows, 512), BLOCK_N=fit(cols, 256), BLOCK_K=fit(reduction, 128))


def dot_class(dtype, precision):
    """Which config list a `tl.dot` kernel runs with: 16-bit tensor-core tiles, TF32 tiles, or
    smaller FMA tiles.

    fp16 and bf16 run on tensor cores ("tensor_core"); TF32 too, but its fp32 tiles take twice the
    registers and shared memory, so it has its own, smaller list ("tf32"); IEEE fp32 and fp64 run
    on the FMA units (fp64 MMA exists on A100/H100 but Triton lowers it to FMA) ("fma").
    """
    if dtype in (torch.float16, torch.bfloat16):
        return "tensor_core"
    return "tf32" if precision == "tf32" else "fma"


def config(block_m, block_n, block_k, num_warps, num_stages, archs=(80, 90), when=None):
    """A matmul-shaped tile config: BLOCK_M x BLOCK_N outputs, BLOCK_K of reduction per step.

    Where it is offered: `archs`, the GPU architectures (90 covers Hopper and later: some large
    tiles fit Hopper's wgmma but spill with Ampere's mma.sync), and `when`, constexpr values the
    launch must have (e.g. dict(ALIGNED_C=True): a tile that spills on another code path)."""
    cfg = triton.Config(
        {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k},
        num_warps=num_warps,
        num_stages=num_stages,
    )
    cfg.tritonalex_archs, cfg.tritonalex_when = tuple(archs), dict(when or {})
    return cfg


def offered_on(cfg, arch, constexprs):
    """Whether a config is offered on compute capability `arch` (e.g. 90, 80, 86 -> 80) to a launch
    with these constexprs."""
    archs = getattr(cfg, "tritonalex_archs", None)
    when = getattr(cfg, "tritonalex_when", {})
    return ((archs is None or (90 if arch >= 90 else 80) in archs)
            and all(constexprs.get(k) == v for k, v in when.items()))


def _prune_for_this_gpu(configs, named_args, **kwargs):
    """The autotuner's early prune: only the configs offered on the current GPU to this launch."""
    major, minor = torch.cuda.get_device_capability()
    kept = [c for c in configs if offered_on(c, 10 * major + minor, kwargs)]
    return kept or configs[:1]


def dot_precision(dtype, allow_tf32):
    """`tl.dot` input precision: TF32 for fp32 only on a GPU and only when torch's flag allows it."""
    if dtype == torch.float32 and allow_tf32 and not INTERPRETING:
        return "tf32"
    return "ieee"


def dot_in_fp32(dtype):
    """Whether to upcast tiles to fp32 before `tl.dot`: bf16 arithmetic is wrong in the interpreter."""
    return INTERPRETING and dtype == torch.bfloat16


def tl_accumulator(dtype):
    """`accumulator_dtype` as the Triton dtype a kernel's ACC constexpr takes."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def accumulator_dtype(dtype):
    """Partial sums are fp32 for every input type but fp64, which keeps fp64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@functools.lru_cache(maxsize=64)
def scalars(values, dtype, device):
    """A kernel's float constants (a tuple) as a tensor in `dtype`, its accumulator dtype: a float
    argument would arrive as fp32, so fp64 runs read fp64 constants from here. Cached, one copy
    per setting (no host-to-device copy per launch)."""
    return torch.tensor(values, dtype=dtype, device=device)


def needs_int64(*tensors):
    """Whether some element offset of these tensors can pass int32, so kernels must index in int64.

    Bounded by each tensor's storage: every element a view reaches lies inside it (one size
    read per tensor, on every launch; a view of a huge storage indexes in int64 to be safe)."""
    limit = 2**31 - 1
    return any(t is not None and t.untyped_storage().nbytes() // t.element_size() > limit
               for t in tensors)


_poison = os.environ.get("TRITONALEX_POISON", "0") == "1"


def set_poison(enabled):
    """Fill every new output buffer with NaN (tests turn this on); returns the previous setting."""
    global _poison
    previous, _poison = _poison, bool(enabled)
    return previous


def empty(shape, dtype, device, memory_format=torch.contiguous_format):
    """An output buffer; NaN-filled when poisoning is on, so an unwritten element shows."""
    out = torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format)
    if _poison and out.is_floating_point():
        out.fill_(float("nan"))
    return out


def memory_format_of(t):
    """channels_last for an NHWC-strided 4-D tensor, else contiguous: what torch's conv returns."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def with_strides_of(t, like):
    """t with `like`'s strides: t itself when they agree, else a copy in like's memory format (a
    kernel then reads both with one set of strides; `like` comes from `empty`, so the copy's
    strides are its own)."""
    return t if t.stride() == like.stride() else t.contiguous(memory_format=memory_format_of(like))


def cdiv(a, b):
    return (a + b - 1) // b
