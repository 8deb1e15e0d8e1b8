"""Compile a captured launch exactly as a real launch would, and read its SASS.

Compile: the kernel's own `JITFunction.warmup`, i.e. Triton's argument binder (pointer alignment,
divisibility-by-16 and ==1 specialization of integers, constexprs) and its full NVIDIA pipeline
with the bundled ptxas, against a stand-in driver that reports the target GPU (no GPU needed:
`warmup` compiles and never launches). Triton's own cache makes a repeated compile cheap, and the
SASS reading below is cached beside it, keyed by the compiled kernel's hash.

Read (`cuobjdump` shipped with Triton): registers per thread, spill bytes (the sizes of the
STL/LDL local-memory instructions ptxas inserts), shared memory (Triton's metadata), whether global
loads are asynchronous (LDGSTS = cp.async, UTMALDG = TMA) and how many shared-memory stages the
pipeliner really made (the leading dimension of the multi-buffered allocations in the TTGIR), and
the loops: a backward branch closes a loop; the main loop is the innermost loop holding the tensor-
core instructions (HGMMA on sm_90, HMMA on sm_80, DMMA for fp64), else the largest innermost loop;
and the special-function instructions (MUFU), in the main loop (or its nest) and in all.
"""

import functools
import hashlib
import json
import os
import re
import subprocess
import tempfile

import triton

# Shared memory one CTA may use (bytes): H100 227 KB, A100 163 KB (CUDA programming guide,
# compute capabilities table).
MAX_SHARED = {90: 232448, 80: 166912}


class _TargetDriver:
    """Enough of Triton's driver interface for `warmup` to compile for `arch` without a GPU.
    The device id is the arch, so the JIT's per-device caches keep the two targets apart."""

    def __init__(self, arch):
        from triton.backends.compiler import GPUTarget

        self.arch, self.target = arch, GPUTarget("cuda", arch, 32)

    def get_current_device(self):
        return self.arch

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target


def jit_function(kernel):
    """The JITFunction under an Autotuner (or the kernel itself)."""
    while not isinstance(kernel, triton.runtime.jit.JITFunction):
        kernel = kernel.fn
    return kernel


def compile_launch(kernel, args, kwargs, arch):
    """Compile `kernel` for `arch` with the launch's arguments (a captured Launch's args, with
    the config's constexprs and num_warps/num_stages in kwargs); returns Triton's CompiledKernel."""
    from triton.runtime.driver import driver

    fn = jit_function(kernel)
    previous = driver._active  # None until a real driver was looked up (never, without a GPU)
    driver.set_active(_TargetDriver(arch))
    try:
        return fn.warmup(*args, grid=(1,), **kwargs)
    finally:
        driver._active = previous


def _cache_dir():
    root = os.environ.get("TRITONALEX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tritonalex", "perf")
    os.makedirs(root, exist_ok=True)
    return root


def analyze(compiled, arch):
    """The SASS facts of a CompiledKernel (a dict), cached on disk by its hash."""
    key = hashlib.sha256(f"{compiled.hash}-{arch}-v4".encode()).hexdigest()[:32]
    path = os.path.join(_cache_dir(), key + ".json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    facts = _read_sass(compiled.asm["cubin"])
    facts.update(shared_bytes=int(compiled.metadata.shared),
                 stages=_pipeline_stages(compiled.asm["ttgir"]),
                 shared_ok=int(compiled.metadata.shared) <= MAX_SHARED[arch])
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(facts, f)
    os.replace(tmp, path)
    return facts


@functools.lru_cache(maxsize=1)
def _cuobjdump():
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_MMA = ("HGMMA", "HMMA", "DMMA", "IMMA")
_SPILL = re.compile(r"^(STL|LDL)(\.(\d+|U8|S8|U16|S16))?")


def _run_cuobjdump(flag, cubin):
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([_cuobjdump(), flag, f.name], capture_output=True, text=True,
                              check=True).stdout


def _read_sass(cubin):
    usage = _run_cuobjdump("-res-usage", cubin)
    registers = int(re.search(r"REG:(\d+)", usage).group(1))
    instructions = []  # (address, opcode, text)
    for addr, text in _INSTRUCTION.findall(_run_cuobjdump("-sass", cubin)):
        body = re.sub(r"^@!?U?P\w+\s+", "", text)
        opcode = body.split()[0]
        instructions.append((int(addr, 16), opcode, body))
    # Drop the NOP padding and the trailing self-branch after the last EXIT (only that one: a loop
    # whose exit comes before its back edge ends the kernel with a backward branch of its own).
    instructions = [i for i in instructions if i[1] != "NOP"]
    while instructions and instructions[-1][1] == "BRA" and _branch_target(instructions[-1][2]) \
            == instructions[-1][0]:
        instructions.pop()

    spill = 0
    for _, opcode, _ in instructions:
        m = _SPILL.match(opcode)
        if m:
            width = m.group(3)
            spill += int(width) // 8 if width and width.isdigit() else (
                1 if width in ("U8", "S8") else 2 if width in ("U16", "S16") else 4)
    loops = []  # (start, end) address spans closed by a backward branch
    for addr, opcode, body in instructions:
        if opcode == "BRA":
            target = _branch_target(body)
            if target is not None and target < addr:
                loops.append((target, addr))

    def inside(span):
        return [i for i in instructions if span[0] <= i[0] <= span[1]]

    def is_mma(opcode):
        return opcode.split(".")[0] in _MMA

    innermost = [s for s in loops if not any(o != s and s[0] <= o[0] and o[1] <= s[1] for o in loops)]
    with_mma = [s for s in loops if any(is_mma(op) for _, op, _ in inside(s))]
    main = (min(with_mma, key=lambda s: s[1] - s[0]) if with_mma
            else max(innermost, key=lambda s: len(inside(s)), default=None))
    body = inside(main) if main else []
    scope = body if main else instructions
    # A main loop inside other loops: the outermost one's instructions (the model counts them
    # per main-loop trip, an upper bound: it does not know the outer loops' trip counts).
    outer = max((s for s in loops if main and s[0] <= main[0] and main[1] <= s[1]),
                key=lambda s: s[1] - s[0], default=main)
    return dict(
        registers=registers,
        spill_bytes=spill,
        instructions=len(instructions),
        loop_instructions=len(body),
        nest_instructions=len(inside(outer)) if outer else 0,
        loop_mma=[op for _, op, _ in body if is_mma(op)],
        kernel_mma=[op for _, op, _ in instructions if is_mma(op)],
        # The special-function unit's (lg2, ex2, rcp, rsqrt, sin, cos): a quarter-rate pipe.
        loop_mufu=sum(1 for _, op, _ in (inside(outer) if outer else []) if op.startswith("MUFU")),
        kernel_mufu=sum(1 for _, op, _ in instructions if op.startswith("MUFU")),
        async_loads=any(op.startswith(("LDGSTS", "UTMALDG")) for _, op, _ in scope),
        tma=any(op.startswith("UTMALDG") for _, op, _ in instructions),
    )


def _branch_target(body):
    target = re.search(r"0x([0-9a-f]+)", body)
    return int(target.group(1), 16) if target else None


def _pipeline_stages(ttgir):
    """Shared-memory stages of the software pipeline: the leading dimension of the buffers that
    asynchronous copies fill (1 when loads are not asynchronous)."""
    if "async_copy_global_to_local" not in ttgir and "async_tma_copy" not in ttgir:
        return 1
    dims = [int(d) for d in re.findall(r"local_alloc[^\n]*?memdesc<(\d+)x\d+x\d+", ttgir)]
    return max(dims, default=1)
