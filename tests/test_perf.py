"""The static performance model (`tritonalex kernels --step`): capture, compile, estimate.

Capturing and compiling need TRITON_INTERPRET=0, so those tests run the command (or a short
script) in a subprocess; they share one Triton cache, so each kernel compiles once per session.
"""

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter

import pytest
import torch

import tritonalex
from tritonalex.kernels import launch
from tritonalex.perf import model


@pytest.fixture(scope="module")
def compile_env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("perf-cache")
    return dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(cache / "triton"),
                TRITONALEX_CACHE_DIR=str(cache / "perf"), TRITON_DEFAULT_FP_FUSION="1")


def run_kernels(env, *args):
    result = subprocess.run([sys.executable, "-m", "tritonalex.cli", "kernels", *args],
                            capture_output=True, text=True, env=env)
    return result


def run_script(env, code):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_captured_launches_equal_an_interpreter_run(compile_env):
    """The capture (meta tensors, GPU launch path) lists exactly the kernels a real run of the
    same step launches: here alexnet-small in fp32, run in the interpreter."""
    seen = []

    def observe(kernel, **_):
        seen.append(kernel.fn.__name__)
        return False  # observe only: the launch still runs

    torch.manual_seed(0)
    net = tritonalex.compile(tritonalex.load_spec("alexnet-small"), backend="triton", devices="cpu")
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    previous, launch.capture_hook = launch.capture_hook, observe
    try:
        loss = torch.nn.functional.cross_entropy(net(images), labels)
        loss.backward()
    finally:
        launch.capture_hook = previous
    result = run_kernels(compile_env, "--step", "alexnet-small", "--batch", "2", "--dtype", "fp32",
                         "--launches-only", "--json")
    assert result.returncode == 0, result.stderr
    captured = json.loads(result.stdout)
    assert Counter(l["kernel"] for l in captured["launches"]) == Counter(seen)
    assert captured["step"]["triton_launches"] == len(seen)
    assert sum(captured["step"]["op_calls"].values()) > 0


def test_step_report(compile_env, tmp_path):
    out = tmp_path / "step.json"
    result = run_kernels(compile_env, "--step", "alexnet-small", "--batch", "16", "--json",
                         "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert json.loads(out.read_text()) == report
    assert report["kind"].startswith("static estimate")
    launches = report["launches"]
    assert len(launches) == report["step"]["triton_launches"] > 10
    for row in launches:
        for key in ("layer", "kernel", "registers", "spill_bytes", "shared_bytes", "async_loads",
                    "bound", "estimate_us", "floor_us"):
            assert key in row, key
        assert row["spill_bytes"] == 0
        assert row["bound"] in ("tensor", "issue", "sfu", "memory", "latency")
        # Every term divides by a rate at or below the datasheet peak, and the MMA work counted
        # includes padding: the estimate can never beat the floor.
        assert row["estimate_us"] >= row["floor_us"]
    assert [t["layer"] for t in report["layers"]] == [
        "conv1", "lrn1", "conv2", "lrn2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8"]
    step = report["step"]
    for key in ("triton_launches", "torch_kernels", "estimate_us", "floor_us"):
        assert key in step
    assert step["estimate_us"] == pytest.approx(sum(r["estimate_us"] for r in launches))
    assert step["floor_us"] == pytest.approx(sum(r["floor_us"] for r in launches))
    # The other torch kernels: a launch each plus their bytes, at least the loss's logits.
    assert step["torch_kernel_bytes"] >= 16 * 10 * 4 and step["torch_kernels_us"] >= 2 * step[
        "torch_kernels"]
    assert step["with_torch_kernels_us"] == pytest.approx(step["estimate_us"]
                                                          + step["torch_kernels_us"])
    assert sum(t["launches"] for t in report["layers"]) == len(launches)
    # A conv forward has its main loop and tensor-core instructions in it.
    conv = next(r for r in launches if r["kernel"] == "conv2d_forward_kernel")
    assert conv["loop_mma"] >= 1 and conv["loop_instructions"] > conv["loop_mma"]


def test_an_unpipelined_variant_estimates_worse(compile_env):
    """The same fc launch compiled with one stage (synchronous loads) must come out slower."""
    result = run_script(compile_env, """
        import json
        from tritonalex.perf import model
        from tritonalex.perf.capture import capture_step
        from tritonalex.perf.step import compile_all, estimate_launch
        card = model.CARDS["h100"]
        step = capture_step("alexnet", batch=128, dtype="bf16")
        fc = next(l for l in step.launches if l.name == "linear_forward_kernel")
        fc.configs = fc.configs[:1]
        pipelined = estimate_launch(fc, compile_all([fc], [90], processes=1), card, "bf16")
        fc.configs = [c.__class__(c.kwargs, num_warps=c.num_warps, num_stages=1) for c in fc.configs]
        serial = estimate_launch(fc, compile_all([fc], [90], processes=1), card, "bf16")
        print(json.dumps(dict(pipelined=pipelined, serial=serial)))
    """)
    pipelined, serial = result["pipelined"], result["serial"]
    assert pipelined["async_loads"] and pipelined["stages"] >= 2
    assert not serial["async_loads"] and serial["stages"] == 1
    assert serial["estimate_us"] > 1.2 * pipelined["estimate_us"]


def test_programs_split_among_paths_count_their_average(compile_env):
    """The fused LRN -> max-pool walk runs one stride class per program; the model counts the
    average instructions of the builds with one class each (`Cost.paths`), fewer than the real
    build's, which holds all four, and the registers of the real one."""
    result = run_script(compile_env, """
        import json
        from tritonalex.perf import model
        from tritonalex.perf.capture import capture_step
        from tritonalex.perf.step import _model_builds, compile_all, estimate_launch, job_key
        card = model.CARDS["h100"]
        step = capture_step("alexnet", batch=128, dtype="bf16")
        walk = next(l for l in step.launches if l.name == "lrn_walk_max_pool2d_backward_kernel"
                    and l.layer == "lrn2")
        compiled = compile_all([walk], [90], processes=1)
        kwargs = dict(walk.kwargs, num_warps=walk.kwargs["num_warps"], num_stages=3)
        real = compiled[job_key(walk, kwargs, 90)][0]
        paths = [compiled[job_key(walk, b, 90)][0] for b in _model_builds(walk, kwargs)]
        row = estimate_launch(walk, compiled, card, "bf16")
        print(json.dumps(dict(real=real, paths=paths, row=row)))
    """)
    real, paths, row = result["real"], result["paths"], result["row"]
    assert len(paths) == 4 and len({p["loop_instructions"] for p in paths}) > 1
    assert max(p["instructions"] for p in paths) < real["instructions"]
    assert row["loop_instructions"] == sum(p["loop_instructions"] for p in paths) / 4
    assert row["registers"] == real["registers"] and row["spill_bytes"] == real["spill_bytes"]


def test_model_on_a_published_figure(compile_env):
    """A tutorial-style Triton matmul against a published H100 GEMM time (see calibration.py)."""
    result = run_script(compile_env, """
        import json
        from tritonalex.perf.calibration import published_check
        print(json.dumps(published_check()))
    """)
    estimate, published = result
    assert published / 1.5 <= estimate <= published * 1.5


def test_bad_spec_is_one_line(compile_env):
    result = run_kernels(compile_env, "--step", "no-such-spec", "--launches-only")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "no-such-spec" in result.stderr


def test_occupancy_and_mma_shapes():
    card = model.CARDS["h100"]
    assert model.occupancy(card, warps=8, registers=216, shared=16384) == 1  # the conv forward
    assert model.occupancy(card, warps=4, registers=32, shared=0) == 16  # 64 warps / 4
    assert model.occupancy(card, warps=4, registers=128, shared=0) == 4  # 64K regs / (128*128)
    assert model.occupancy(card, warps=4, registers=32, shared=100 * 1024) == 2  # shared memory
    assert model.mma_flops("HGMMA.64x64x16.F32.BF16") == 2 * 64 * 64 * 16 / 4
    assert model.mma_flops("HMMA.16816.F32.BF16") == 2 * 16 * 8 * 16
    assert model.floor_us(card, 989.4e12, 0, "bf16") == pytest.approx(1e6)
    assert model.floor_us(card, 0, 3.35e12, "bf16") == pytest.approx(1e6)


def test_split_tail_and_nested_loops_count():
    """A split reduction's last arrival reads its partials after the main loop (a serial tail at
    L2_BYTES_PER_CLOCK), a main loop nested in another is counted as the outer loop's
    instructions per trip, and special-function instructions at their quarter rate."""
    card = model.CARDS["h100"]
    facts = dict(registers=128, shared_bytes=0, loop_instructions=100, nest_instructions=100,
                 instructions=300, loop_mma=[], kernel_mma=[], loop_mufu=0, kernel_mufu=0,
                 stages=3, async_loads=True)
    args = dict(ctas=132, warps=4, trips=50, flops=0, min_bytes=0, precision="bf16")
    plain = model.estimate(card, facts, **args)
    tail = model.estimate(card, facts, **args, tail_bytes=64 * 1830)  # 1830 clocks: 1 us
    assert tail["estimate_us"] == pytest.approx(plain["estimate_us"] + 1.0)
    nested = model.estimate(card, {**facts, "nest_instructions": 200}, **args)
    assert nested["terms_us"]["issue"] == pytest.approx(
        plain["terms_us"]["issue"] * (200 * 50 + 100) / (100 * 50 + 200), rel=1e-3)
    # The special functions' quarter rate: 60 MUFU of a 100-instruction loop bind (before issue
    # and load latency): 4 warps x 60 x 50 trips x 32 lanes / 16 per clock, one program per SM.
    special = model.estimate(card, {**facts, "loop_mufu": 60, "kernel_mufu": 60}, **args)
    assert special["bound"] == "sfu" and special["terms_us"]["sfu"] == pytest.approx(
        1e6 * 4 * 60 * 50 * 32 / 16 / card.clock_hz, rel=1e-3)
    assert special["terms_us"]["sfu"] > plain["terms_us"]["issue"]


NESTED_KERNEL = """
import triton
import triton.language as tl


@triton.jit
def nested(a_ptr, c_ptr, K, R):
    i = tl.arange(0, 64)
    acc = tl.zeros((64, 64), dtype=tl.float32)
    for r in range(R):
        base = a_ptr + r * 4096 * ((r * 7) % 5)
        for k in range(0, K, 64):
            a = tl.load(base + i[:, None] * K + (k + i)[None, :])
            acc = tl.dot(a, a, acc)
    tl.store(c_ptr + i[:, None] * 64 + i[None, :], acc)
"""


def test_sass_finds_a_main_loop_nested_in_another(compile_env, tmp_path):
    """The SASS reader reports the outermost loop around the main (MMA) loop."""
    (tmp_path / "nested_kernel.py").write_text(NESTED_KERNEL)
    result = run_script(compile_env, f"""
        import json, sys
        import torch
        sys.path.insert(0, {str(tmp_path)!r})
        from nested_kernel import nested
        from tritonalex.perf.capture import PointerArg
        from tritonalex.perf.sass import analyze, compile_launch
        args = (PointerArg(torch.bfloat16, 0), PointerArg(torch.float32, 0), 256, 4)
        compiled = compile_launch(nested, args, dict(num_warps=4, num_stages=3), 90)
        print(json.dumps(analyze(compiled, 90)))
    """)
    assert result["loop_mma"] and result["nest_instructions"] > result["loop_instructions"]


def test_launch_overhead_measurement(compile_env):
    """`--overhead`: every launch of a step goes its real launch path to a stubbed GPU call (the
    direct path, and Triton's for comparison); host times come back per launch."""
    result = run_kernels(compile_env, "--step", "alexnet-small", "--batch", "4", "--overhead",
                         "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["launches"] > 10 and out["op_calls"] >= out["launches"] - 5
    assert 0 < out["launch_path_us"] < out["per_launch_us"] < out["step_us"]
    assert 0 < out["launcher_us"] < out["per_launch_us"] and out["triton_path_us"] > 0


# The GPU's launch call, stubbed (perf/overhead.py), records what it is handed: the grid, stream,
# function handle, which compiled kernel (its packed metadata's identity) and the arguments.
RECORD_LAUNCHES = """
    import json
    from triton.runtime.jit import JITFunction
    import torch
    from tritonalex.kernels import direct, launch
    from tritonalex.perf import overhead

    calls, through_triton = [], [0]

    def record(*call):
        gx, gy, gz, stream, function, metadata, _, _, _, *args = call
        calls.append([gx, gy, gz, stream, repr(function), id(metadata)] + [
            [list(a.shape), list(a.stride()), str(a.dtype)] if isinstance(a, torch.Tensor)
            else repr(a) for a in args])

    overhead._no_launch = record
    triton_run = JITFunction.run

    def counted(self, *args, **kwargs):
        through_triton[0] += 1
        return triton_run(self, *args, **kwargs)

    JITFunction.run = counted

    def launches(run):
        calls.clear()
        through_triton[0] = 0
        run()
        return list(calls), through_triton[0]
"""


def test_direct_launches_pass_what_triton_passes(compile_env):
    """The direct launch path (kernels/direct.py) hands the GPU's launch call exactly what
    Triton's own launch path hands it, for every launch of a training step (tl.dot kernels with
    their tuned configs, and plain ones), without entering Triton's launch path."""
    out = run_script(compile_env, RECORD_LAUNCHES + """
    from tritonalex.perf.capture import _State, targeting, training_step

    state = _State()
    with overhead.stubbed_gpu(90), training_step("alexnet-small", 4, "bf16", "channels_last",
                                                 None, state) as (step, name):
        launch.launch_meta = True  # meta tensors go the whole launch path, to the stub
        with targeting(None, 132, 90):
            step_once = lambda: overhead._forward_backward(step)
            launches(step_once), launches(step_once)  # tunes and compiles; fills the direct path
            direct_run = launches(step_once)
            direct.ENABLED = False
            triton_run = launches(step_once)
    print(json.dumps(dict(direct=direct_run, triton=triton_run)))
    """)
    (direct_calls, direct_through), (triton_calls, triton_through) = out["direct"], out["triton"]
    assert len(triton_calls) > 10 and triton_through == len(triton_calls)
    assert direct_through == 0
    assert direct_calls == triton_calls


def test_direct_launches_respecialize(compile_env):
    """A launch whose specialization differs from every earlier one (a tensor off 16-byte
    alignment, an integer no longer divisible by 16, another dtype) goes through Triton again and
    gets its own compiled kernel; a repeat goes direct to the same one."""
    out = run_script(compile_env, RECORD_LAUNCHES + """
    from tritonalex.kernels.activation import relu_forward

    buffer = torch.zeros(4096)
    cases = dict(aligned=buffer[:1024], again=buffer[:1024], other_storage=torch.zeros(1024),
                 misaligned=buffer[1:1025], misaligned_again=buffer[1:1025],
                 size_1000=buffer[:1000], float64=torch.zeros(1024, dtype=torch.float64))
    with overhead.stubbed_gpu(90):
        seen = {name: launches(lambda: relu_forward(x)) for name, x in cases.items()}
    print(json.dumps({name: [through, run[0][5]] for name, (run, through) in seen.items()}))
    """)
    through = {name: n for name, (n, _) in out.items()}
    kernel = {name: k for name, (_, k) in out.items()}
    assert through == dict(aligned=1, again=0, other_storage=0, misaligned=1, misaligned_again=0,
                           size_1000=1, float64=1)
    assert kernel["aligned"] == kernel["again"] == kernel["other_storage"]
    assert kernel["misaligned"] == kernel["misaligned_again"]
    assert len({kernel[name] for name in ("aligned", "misaligned", "size_1000", "float64")}) == 4


def test_the_compile_check_finds_every_kernel(compile_env):
    """The check's kernel list is found by importing kernels/, not kept by hand: it equals the
    `@triton.jit def *_kernel` definitions in the sources (batch norm's, added later, included)."""
    import pathlib
    import re

    out = run_script(compile_env, """
        import json
        from tritonalex.perf.command import every_kernel
        print(json.dumps(sorted(every_kernel())))
    """)
    sources = pathlib.Path(launch.__file__).parent.glob("*.py")
    defined = {name for path in sources
               for name in re.findall(r"@triton\.jit\ndef (\w+_kernel)\(", path.read_text())}
    assert set(out) == defined and "batch_norm_stats_kernel" in defined


def test_alexnet_step_kernel_budget(compile_env):
    """One bf16 alexnet training step on one device: at most 30 Triton launches and at most 10
    other kernels, made once per step, not once per layer: one foreach copy rounds every conv
    weight, one random draw seeds every dropout, the logits come out in fp32 (no casts around the
    loss), conv1's space-to-depth input is a Triton kernel and its weight gradient is written as
    the weight's own."""
    result = run_kernels(compile_env, "--step", "alexnet", "--launches-only", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    step = json.loads(result.stdout)["step"]
    kinds = step["torch_kernel_kinds"]
    assert step["triton_launches"] <= 30
    assert kinds["_foreach_copy_"] == 1 and kinds["randint"] == 1
    assert "_to_copy" not in kinds and step["torch_kernels"] <= 10
