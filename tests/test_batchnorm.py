"""batch_norm against torch in float64: PyTorch's own OpInfo samples, layouts, expanded
parameters, low precision, running statistics (momentum=None included), the nn module, errors,
determinism; and the batchnorm layer kind in the shipped `alexnet-bn` spec."""

import pytest
import torch
import torch.nn.functional as TF

import tritonalex
import tritonalex.functional as F
import tritonalex.nn as tnn
from tritonalex.kernels import batchnorm as bn_kernels
from reference import DEVICE, TOLERANCE, Inputs, as_layout, assert_close

ops = torch.ops.tritonalex


def _run(fn, x, running_mean, running_var, weight, bias, *args, **kwargs):
    """fn's output, its gradients (input, weight, bias: those that require grad) for a fixed
    output gradient, and the running statistics after the call (fn works on copies)."""
    x = x.detach().clone().requires_grad_(x.requires_grad)
    params = [None if t is None else t.detach().clone().requires_grad_(t.requires_grad)
              for t in (weight, bias)]
    stats = [None if t is None else t.detach().clone() for t in (running_mean, running_var)]
    y = fn(x, *stats, *params, *args, **kwargs)
    wrt = [t for t in (x, *params) if t is not None and t.requires_grad]
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), device="cpu", dtype=torch.float64)
    grads = torch.autograd.grad(y, wrt, dy.to(y.dtype)) if wrt and y.numel() else ()
    return y, list(grads), stats


def assert_matches_torch(x, running_mean, running_var, weight, bias, *args, tol=TOLERANCE[torch.float64],
                         seed=None, **kwargs):
    got = _run(F.batch_norm, x, running_mean, running_var, weight, bias, *args, **kwargs)
    want = _run(TF.batch_norm, x, running_mean, running_var, weight, bias, *args, **kwargs)
    assert_close(got[0], want[0], tol, "output", seed)
    assert got[0].dtype == want[0].dtype
    for i, (a, b) in enumerate(zip(got[1], want[1])):
        assert a.dtype == b.dtype
        # relative to at least 1, the output gradient's scale: with two values per channel the
        # input gradient is 0 exactly, and both results are rounding noise
        assert_close(a, b, tol, f"gradient {i}", seed, floor=1.0)
    for name, a, b in zip(("running_mean", "running_var"), got[2], want[2]):
        if b is not None:
            assert_close(a, b, tol, name, seed)


def _opinfo_samples():
    import torch.backends

    # Importing torch's test suite freezes torch.backends' global flags for the whole process
    # (common_utils calls disable_global_flags): thaw them again for the other tests.
    try:
        from torch.testing._internal.common_methods_invocations import op_db
    except ImportError:  # torch's test suite needs expecttest, which the GPU machines lack
        return

    torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
    assert not torch.backends.flags_frozen()

    (info,) = [op for op in op_db if op.name == "nn.functional.batch_norm" and not op.variant_test_name]
    for dtype in (torch.float64, torch.float32):
        for sample in info.sample_inputs(DEVICE.type, dtype, requires_grad=True):
            yield pytest.param(sample, dtype, id=f"{dtype}-{tuple(sample.input.shape)}-{sample.kwargs}")


@pytest.mark.parametrize("sample,dtype", list(_opinfo_samples()))
def test_pytorch_opinfo_samples(sample, dtype):
    """torch's own sample inputs for batch_norm (training and eval, 2-D to 4-D, missing weight,
    bias or running statistics, negative momentum, empty input), fp32 and fp64."""
    assert_matches_torch(sample.input, *sample.args, tol=TOLERANCE[dtype], **sample.kwargs)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("training", [True, False])
def test_layouts_and_expanded_parameters(layout, training):
    """Any strides, for the input and for every parameter (an expanded weight and bias)."""
    rnd = Inputs()
    x = as_layout(rnd.randn(5, 6, 7, 9) * 3 + 1, layout).requires_grad_()
    weight = rnd.randn(1).expand(6).requires_grad_()
    bias = rnd.randn(6, 2)[:, 1].requires_grad_()  # non-contiguous
    running_mean, running_var = rnd.randn(6), rnd.randn(6).abs() + 0.5
    assert_matches_torch(x, running_mean, running_var, weight, bias, training, 0.2, 1e-3,
                         seed=rnd.seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_with_fp32_parameters(dtype):
    """Activations in dtype, parameters and running statistics in fp32 (mixed precision),
    statistics accumulated in fp32: within dtype's rounding of the float64 result."""
    rnd = Inputs()
    x = (rnd.randn(4, 8, 6, 5) * 2 + 3).to(dtype)
    w, b = rnd.randn(8).float().requires_grad_(), rnd.randn(8).float().requires_grad_()
    rm, rv = torch.zeros(8), torch.ones(8)
    y = F.batch_norm(x.requires_grad_(), rm, rv, w, b, True)
    assert y.dtype == dtype
    x64 = x.detach().double().requires_grad_()
    w64, b64 = w.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    rm64, rv64 = torch.zeros(8, dtype=torch.float64), torch.ones(8, dtype=torch.float64)
    want = TF.batch_norm(x64, rm64, rv64, w64, b64, True)
    assert_close(y, want, TOLERANCE[dtype], "output", rnd.seed)
    assert_close(rm, rm64, 1e-6, "running mean", rnd.seed)
    assert_close(rv, rv64, 1e-6, "running var", rnd.seed)
    dy = torch.randn(y.shape, dtype=torch.float64).to(dtype)
    got = torch.autograd.grad(y, (x, w, b), dy)
    expected = torch.autograd.grad(want, (x64, w64, b64), dy.double())
    assert [g.dtype for g in got] == [dtype, torch.float32, torch.float32]
    for name, a, e in zip(("dx", "dw", "db"), got, expected):
        assert_close(a, e, 4 * TOLERANCE[dtype], name, rnd.seed)


def test_statistics_are_exact_where_sums_of_squares_cancel():
    """A large mean and a small spread: E[x^2] - E[x]^2 in fp32 would lose every digit (the
    variance, 1e-4, is below the fp32 spacing of E[x^2] = 1e6). What is left is the fp32 mean's
    own rounding (half a unit at 1000, 3e-5) against the spread (1e-2)."""
    x = 1000.0 + torch.randn(8, 3, 16, 16) * 1e-2
    y = F.batch_norm(x, None, None, training=True)
    want = TF.batch_norm(x.double(), None, None, training=True)
    assert_close(y, want, 1e-2, "output")


@pytest.mark.parametrize("momentum", [0.1, None])
def test_module_over_several_steps_equals_torch(momentum):
    """nn.BatchNorm2d: training steps (running statistics, num_batches_tracked, cumulative
    averaging with momentum=None), then eval, against torch.nn.BatchNorm2d; same state_dict."""
    torch.manual_seed(0)
    ref = torch.nn.BatchNorm2d(5, momentum=momentum).double()
    ours = tnn.BatchNorm2d(5, momentum=momentum).double()
    with torch.no_grad():
        ref.weight.normal_(), ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())
    rnd = Inputs()
    for step in range(3):
        x = rnd.randn(4, 5, 3, 6) * (step + 1) + step
        assert_close(ours(x), ref(x), 1e-12, f"step {step}", rnd.seed)
    for key, value in ref.state_dict().items():
        assert_close(ours.state_dict()[key].double(), value.double(), 1e-12, key, rnd.seed)
    ours.eval(), ref.eval()
    x = rnd.randn(2, 5, 4, 4)
    assert_close(ours(x), ref(x), 1e-12, "eval", rnd.seed)


@pytest.mark.parametrize("options", [dict(affine=False), dict(track_running_stats=False)])
def test_module_options(options):
    ref, ours = torch.nn.BatchNorm2d(4, **options).double(), tnn.BatchNorm2d(4, **options).double()
    x = Inputs().randn(3, 4, 5, 5)
    for mode in ("train", "eval"):
        getattr(ref, mode)(), getattr(ours, mode)()
        assert_close(ours(x), ref(x), 1e-12, mode)


def test_convert_swaps_batchnorm():
    model = tritonalex.convert(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)))
    assert type(model[1]) is tnn.BatchNorm2d and not model.tritonalex_unsupported


def test_bad_input_errors_like_torch():
    x = torch.randn(4, 3, 2, 2)
    cases = [
        ((torch.randn(1, 3), None, None, None, None, True), ValueError,
         "Expected more than 1 value per channel when training"),
        ((x, torch.zeros(2), torch.ones(3)), RuntimeError, "running_mean should contain 3 elements not 2"),
        ((x, torch.zeros(3), torch.ones(3), torch.ones(2)), RuntimeError,
         "weight should contain 3 elements not 2"),
        ((x, None, None), RuntimeError, "running_mean must be defined in evaluation mode"),
        ((x.int(), None, None, None, None, True), RuntimeError, "batch_norm: expected a float16"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            F.batch_norm(*args)


def test_deterministic_across_runs_and_splits(monkeypatch):
    """The per-channel sums merge their partials in a fixed order: bit-identical results, with
    several image splits (as on a GPU) and with one."""
    rnd = Inputs()
    x = rnd.randn(7, 6, 5, 5).requires_grad_()
    results = []
    for splits in (3, 3, 1):
        monkeypatch.setattr(bn_kernels, "INTERPRETER_SPLITS", splits)
        y = F.batch_norm(x, None, None, training=True)
        results.append((y, *torch.autograd.grad(y, x, torch.ones_like(y) + x.detach())))
    assert all(torch.equal(a, b) for a, b in zip(results[0], results[1]))
    assert_close(results[2][0], results[0][0], 1e-14, "one split")


def opcheck_samples():
    """(op name, args) for tests/test_library.py's opcheck of every op."""
    rnd = Inputs()
    x = rnd.randn(3, 4, 5, 2)
    w, b = rnd.randn(4), rnd.randn(4)
    y, mean, invstd = ops.batch_norm(x, None, None, w, b, True, 0.1, 1e-5)
    return [
        ("batch_norm", (x, torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64),
                        w, b, True, 0.1, 1e-5)),
        ("batch_norm", (x.contiguous(memory_format=torch.channels_last), rnd.randn(4),
                        rnd.randn(4).abs(), None, None, False, 0.1, 1e-5)),
        ("batch_norm_backward", (rnd.randn(*x.shape), x, w, mean, invstd, True, [True, True, True])),
        ("batch_norm_backward", (rnd.randn(*x.shape), x, None, mean, invstd, False, [False, False, True])),
    ]


# --- the layer kind in a compiled spec --------------------------------------------------------------


def small_spec(name, size, dropout=None):
    """A shipped spec at a smaller input and with 64-wide hidden FC layers (the same layers
    otherwise), so the interpreter runs it in seconds; dropout=0.0 turns its dropout off (for
    comparing training steps across backends)."""
    text = open(tritonalex.spec.spec_path(name)).read()
    full = tritonalex.load_spec(name).size
    text = text.replace(f"size = {full}", f"size = {size}").replace("out_features = 4096",
                                                                    "out_features = 64")
    if dropout is not None:
        text = text.replace("p = 0.5", f"p = {dropout}")
    return tritonalex.load_spec(name, text=text)


@pytest.mark.parametrize("name,size", [("alexnet-bn", 67), ("zfnet", 56), ("alexnet", 67)])
def test_specs_give_equal_logits_and_gradients_on_both_backends(name, size):
    """Training mode (batch statistics; dropout off so both backends compute the same function):
    logits, every parameter gradient and the running statistics after the step; then eval mode
    (running statistics)."""
    spec = small_spec(name, size, dropout=0.0)
    torch.manual_seed(0)
    ref = tritonalex.compile(spec, backend="torch", devices="cpu").double()
    ours = tritonalex.compile(spec, backend="triton", devices="cpu").double()
    ours.load_state_dict(ref.state_dict())
    rnd = Inputs()
    x = rnd.randn(2, 3, size, size)
    for model in (ref, ours):
        model.zero_grad()
        model(x).square().sum().backward()
    assert_close(ours(x), ref(x), 1e-9, "logits (train)", rnd.seed)
    # A conv bias right before a batch norm has gradient 0 exactly (the norm removes it): both
    # are rounding noise, compared against a small fraction of the largest gradient.
    floor = 1e-3 * max(p.grad.abs().max().item() for p in ref.parameters())
    for (key, a), (_, b) in zip(ours.named_parameters(), ref.named_parameters()):
        assert_close(a.grad, b.grad, 1e-9, key, rnd.seed, floor=floor)
    for key, value in ref.state_dict().items():
        assert_close(ours.state_dict()[key].double(), value.double(), 1e-9, key, rnd.seed)
    ours.eval(), ref.eval()
    assert_close(ours(x), ref(x), 1e-9, "logits (eval)", rnd.seed)


def test_batchnorm_towers_keep_their_own_keys():
    """alexnet-bn's batch norms hold both towers' channels in one layer on one device, and show
    each tower's parameters and buffers under its own key, as one module per tower would."""
    spec = small_spec("alexnet-bn", 67)
    merged = tritonalex.compile(spec, backend="triton", devices="cpu")
    *_, (_, graph) = tritonalex.compiler.stages(spec, devices=("cpu", "cpu"))
    per_tower = tritonalex.compiler.lower(spec, graph, "triton", merge_towers=False)
    assert list(merged.state_dict()) == list(per_tower.state_dict())
    assert {k for k in merged.state_dict() if k.startswith("nodes.bn2.")} == {
        f"nodes.bn2.towers.{i}.{name}" for i in range(2)
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    per_tower.load_state_dict(merged.state_dict())


def test_batchnorm_folds_into_the_conv_in_evaluation(monkeypatch):
    """Pass `fold_batchnorm`: in eval mode the conv runs with the norm folded into its weights
    and bias and no batch-norm kernel runs, equal to the unfolded network; in training mode the
    norm runs (batch statistics). The state_dict is the same either way."""
    import tritonalex.compiler as compiler
    from tritonalex.compiler.passes import FUSION_PASSES
    from tritonalex.kernels import batchnorm

    spec = small_spec("alexnet-bn", 67)
    torch.manual_seed(0)
    folded = tritonalex.compile(spec, backend="triton", devices="cpu").double()
    plain = tritonalex.compile(spec, backend="triton", devices="cpu",
                               passes=[p for p in FUSION_PASSES if p != "fold_batchnorm"]).double()
    assert any(node.folds == "bn1" for node in folded.graph)
    rnd = Inputs()
    with torch.no_grad():  # running statistics worth folding
        for name, t in folded.state_dict().items():
            if "running" in name:
                t.copy_(rnd.randn(*t.shape).abs() + 0.5 if "var" in name else rnd.randn(*t.shape))
    plain.load_state_dict(folded.state_dict())
    assert list(plain.state_dict()) == list(folded.state_dict())
    launches = []
    real = batchnorm.launch
    monkeypatch.setattr(batchnorm, "launch", lambda *a, **k: launches.append(a[0]) or real(*a, **k))
    folded.eval(), plain.eval()
    x = rnd.randn(2, 3, 67, 67)
    with torch.no_grad():
        got = folded(x)
        assert not launches
        assert_close(got, plain(x), 1e-10, "eval logits", rnd.seed)
        assert launches  # the unfolded network runs its norms
        assert compiler.explain(spec).split("== after")[-1].count("folds bn") == 5  # the placed graph
    folded.train()
    launches.clear()
    folded(x)
    assert launches  # training: batch statistics, the norm runs
