"""linear (fused bias+ReLU+dropout GEMM), relu, dropout, their modules, and convert(model)."""

import pytest
import torch
import torch.nn.functional as TF

import tritonalex
import tritonalex.functional as F
import tritonalex.nn as tnn
from tritonalex.kernels.launch import DotKernel
from reference import DEVICE, TOLERANCE, Inputs, as_layout, assert_close, check_autocast_parameters


def run_linear(x_shape, n, *, dtype=torch.float64, bias=True, relu=False, x_layout="contiguous",
               w_layout="contiguous"):
    rnd = Inputs()
    x = as_layout(rnd.randn(*x_shape, dtype=dtype), x_layout).requires_grad_()
    w = as_layout(rnd.randn(n, x_shape[-1], dtype=dtype), w_layout).requires_grad_()
    b = rnd.randn(n, dtype=dtype, requires_grad=True) if bias else None
    leaves = [t for t in (x, w, b) if t is not None]
    refs = [t.detach().double().requires_grad_() for t in leaves]
    y = F.linear(x, w, b, activation="relu" if relu else None)
    ref = TF.linear(*refs) if bias else TF.linear(refs[0], refs[1])
    ref = torch.relu(ref) if relu else ref
    assert_close(y, ref, TOLERANCE[dtype], "forward", rnd.seed)
    dy = as_layout(rnd.randn(*ref.shape, dtype=dtype), "strided")
    for name, got, want in zip(("input", "weight", "bias"), torch.autograd.grad(y, leaves, dy),
                               torch.autograd.grad(ref, refs, dy.double())):
        assert_close(got, want, TOLERANCE[dtype], f"grad {name}", rnd.seed)


@pytest.mark.parametrize("x_shape,n", [((5, 7), 3), ((2, 3, 33), 17), ((1, 1), 1), ((130, 20), 260)])
@pytest.mark.parametrize("relu", [False, True])
def test_linear_matches_torch(x_shape, n, relu):
    run_linear(x_shape, n, relu=relu, bias=relu or n != 17)


def test_linear_noncontiguous_operands():
    run_linear((6, 10), 9, x_layout="strided", w_layout="strided", relu=True)


@pytest.mark.parametrize("splits", [2, 3, 5])
def test_linear_split_k(splits, monkeypatch):
    """On a GPU the forward's and the input gradient's reductions are shared by several programs
    per output tile (split-K), the last to arrive adding the partials in split order (then the
    forward's bias, ReLU and dropout). Forced here, with splits left empty at 5 (3 steps of 128):
    equal to torch, dropout's mask the same in both directions, bitwise reproducible, and the
    arrival counters left at zero."""
    from tritonalex.kernels import gemm, launch

    monkeypatch.setattr(gemm, "INTERPRETER_SPLITS", splits)
    run_linear((3, 37), 260, relu=True)  # the input gradient's 260 outputs: 3 steps
    run_linear((3, 300), 20, relu=True)  # the forward's 300 inputs: 3 steps
    rnd = Inputs()
    x = rnd.randn(4, 300, requires_grad=True)
    w, b, dy = rnd.randn(260, 300), rnd.randn(260), rnd.randn(4, 260)
    seed = torch.tensor([7], device=DEVICE)
    ys = [F.linear(x, w, b, dropout=0.3, seed=seed) for _ in range(2)]
    grads = [torch.autograd.grad(y, x, dy)[0] for y in ys]
    ref = TF.linear(x.detach().double(), w.double(), b.double())
    kept = ys[0] != 0  # no output of a dense fp64 product is exactly 0 here
    assert 0.5 < kept.double().mean() < 0.9
    assert_close(ys[0], torch.where(kept, ref / 0.7, 0.0), TOLERANCE[torch.float64], "forward",
                 rnd.seed)
    assert_close(grads[0], (dy.double() * kept / 0.7) @ w.double(), TOLERANCE[torch.float64],
                 "grad input", rnd.seed)
    assert torch.equal(ys[0], ys[1]) and torch.equal(grads[0], grads[1])
    used = [t for t in launch._counters.values() if not t.is_meta]  # (other tests: meta ones)
    assert used and all(int(t.abs().sum()) == 0 for t in used)


def test_linear_unsplit_config_ignores_splits(monkeypatch):
    """An `unsplit` GPU config (SPLIT=False) runs one program per output tile whatever SPLITS the
    launch computed for the wide tiles: its grid has one split, its programs take the whole
    reduction and write y (and dx) directly, never the partials or the arrival counters."""
    from tritonalex.kernels import gemm, launch

    monkeypatch.setattr(gemm, "INTERPRETER_SPLITS", 3)
    monkeypatch.setattr(gemm, "INTERPRETER_SPLIT", False)
    run_linear((3, 300), 260, relu=True)  # 3 steps of 128 in both GEMMs' reductions
    # (Counters are zero between launches; a split program arriving alone would leave a 1.)
    used = [t for t in launch._counters.values() if not t.is_meta]  # (other tests: meta ones)
    assert all(int(t.abs().sum()) == 0 for t in used)


@pytest.mark.parametrize("k,n", [pytest.param(9216, 4096, marks=pytest.mark.slow), (4096, 4096),
                                 (4096, 1000)])
def test_linear_alexnet_fc_shapes(k, n):
    run_linear((2, k), n, relu=n != 1000)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_linear_low_precision(dtype):
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        run_linear((9, 40), 24, dtype=dtype, relu=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def test_linear_gradcheck():
    rnd = Inputs()
    args = (rnd.randn(4, 6, requires_grad=True), rnd.randn(5, 6, requires_grad=True),
            rnd.randn(5, requires_grad=True))
    assert torch.autograd.gradcheck(lambda x, w, b: F.linear(x, w, b, activation="relu"), args,
                                    fast_mode=True)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("p", [0.5, 0.2])
def test_linear_dropout_mask_and_backward(relu, p):
    """Kept elements are the undropped output times 1/(1-p); the backward uses the same mask."""
    rnd = Inputs()
    x = rnd.randn(64, 48, requires_grad=True)
    w = rnd.randn(96, 48, requires_grad=True)
    b = rnd.randn(96, requires_grad=True)
    act = "relu" if relu else None
    torch.manual_seed(rnd.seed)
    y = F.linear(x, w, b, activation=act, dropout=p)
    plain = F.linear(x, w, b, activation=act).detach()
    kept = y != 0
    assert_close(torch.where(kept, y, 0), torch.where(kept, plain / (1 - p), 0), 1e-12, "scale", rnd.seed)
    if not relu:  # every element is a candidate: the kept fraction is 1 - p
        assert abs(kept.double().mean().item() - (1 - p)) < 0.02, kept.double().mean().item()
    # Reference backward: through the mask the forward actually used.
    xr = x.detach().requires_grad_()
    wr = w.detach().requires_grad_()
    br = b.detach().requires_grad_()
    mask = kept if not relu else (y > 0)
    ref = (xr @ wr.T + br) * mask / (1 - p)
    dy = rnd.randn(*y.shape)
    got = torch.autograd.grad(y, (x, w, b), dy)
    want = torch.autograd.grad(ref, (xr, wr, br), dy)
    for name, g, r in zip(("input", "weight", "bias"), got, want):
        assert_close(g, r, TOLERANCE[torch.float64], f"dropout grad {name}", rnd.seed)
    torch.manual_seed(rnd.seed)
    assert torch.equal(F.linear(x, w, b, activation=act, dropout=p), y)  # reproducible


def test_linear_eval_mode_has_no_dropout():
    rnd = Inputs()
    x, w = rnd.randn(3, 4), rnd.randn(5, 4)
    assert torch.equal(F.linear(x, w, dropout=0.5, training=False), F.linear(x, w))


def test_linear_bad_input_before_launch(monkeypatch):
    monkeypatch.setattr(DotKernel, "launch", lambda *a, **k: pytest.fail("launched"))
    x, w = torch.randn(3, 4, device=DEVICE), torch.randn(5, 4, device=DEVICE)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        F.linear(x, torch.randn(5, 3, device=DEVICE))
    with pytest.raises(RuntimeError):
        TF.linear(x, torch.randn(5, 3, device=DEVICE))
    with pytest.raises(RuntimeError, match="should be the same"):
        F.linear(x.double(), w)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.linear(x, w, dropout=1.5)


# --- relu and dropout ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 5, 2)])
def test_relu_matches_torch(shape):
    rnd = Inputs()
    x = rnd.randn(*shape, requires_grad=True)
    y = F.relu(x)
    assert_close(y, torch.relu(x), 0.0, "relu", rnd.seed)
    if x.numel():
        dy = rnd.randn(*shape)
        assert_close(torch.autograd.grad(y, x, dy)[0], torch.autograd.grad(torch.relu(x), x, dy)[0],
                     0.0, "relu grad", rnd.seed)


def test_relu_inplace_and_nan():
    x = torch.tensor([-1.0, float("nan"), 2.0], device=DEVICE)
    y = F.relu(x, inplace=True)
    assert y is x and torch.isnan(x[1]) and x[0] == 0 and x[2] == 2
    rnd = Inputs()
    a = rnd.randn(4, 6, requires_grad=True)
    h = a * 1.0
    F.relu(h, inplace=True).sum().backward()
    assert torch.equal(a.grad, (a > 0).double())


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_statistics_and_backward(p):
    rnd = Inputs()
    x = (rnd.randn(20000).abs() + 0.1).requires_grad_()
    torch.manual_seed(rnd.seed)
    y = F.dropout(x, p)
    kept = y != 0
    assert abs(kept.double().mean().item() - (1 - p)) < 0.02
    if p < 1:
        assert_close(y[kept], x[kept] / (1 - p), 1e-12, "scale", rnd.seed)
    else:
        assert torch.equal(y, torch.zeros_like(y))
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert torch.equal(g != 0, kept)  # the backward uses exactly the forward's mask
    torch.manual_seed(rnd.seed)
    assert torch.equal(F.dropout(x, p), y)


def test_dropout_eval_empty_inplace_and_errors():
    x = torch.randn(5, device=DEVICE)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(torch.randn(0, 3, device=DEVICE), 0.5).shape == (0, 3)
    assert F.dropout(torch.tensor(2.0, device=DEVICE), 0.5).shape == ()
    y = x.clone()
    assert F.dropout(y, 0.5, inplace=True) is y
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, -0.1)


# --- modules and convert -------------------------------------------------------------------------

def test_modules_are_torch_modules_with_same_state_dict():
    ours, theirs = tnn.Linear(8, 4, activation="relu", dropout=0.5), torch.nn.Linear(8, 4)
    assert isinstance(ours, torch.nn.Linear)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert isinstance(tnn.ReLU(), torch.nn.ReLU) and isinstance(tnn.Dropout(0.2), torch.nn.Dropout)
    ours.eval()
    x = torch.randn(3, 8, dtype=torch.float64, device=DEVICE)
    ours = ours.to(DEVICE, torch.float64)
    theirs = theirs.to(DEVICE, torch.float64)
    theirs.load_state_dict(ours.state_dict())
    assert_close(ours(x), torch.relu(theirs(x)), TOLERANCE[torch.float64], "module")


class TorchvisionStyleAlexNet(torch.nn.Module):
    """torchvision's AlexNet layout (features / avgpool / classifier), defined here."""

    def __init__(self, num_classes=1000):
        super().__init__()
        nn = torch.nn
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_convert_torchvision_style_alexnet():
    torch.manual_seed(0)
    model = TorchvisionStyleAlexNet().to(DEVICE, torch.float64).eval()
    keys = list(model.state_dict())
    rnd = Inputs()
    x = rnd.randn(1, 3, 67, 67)
    with torch.no_grad():
        want = model(x)
    weight = model.features[0].weight
    converted = tritonalex.convert(model)
    assert list(converted.state_dict()) == keys
    assert converted.features[0].weight is weight  # shared, not copied
    assert isinstance(converted.features[0], tnn.Conv2d) and converted.features[0].activation == "relu"
    assert isinstance(converted.features[1], torch.nn.Identity)
    fc6 = converted.classifier[1]
    assert isinstance(fc6, tnn.Linear) and (fc6.activation, fc6.dropout) == ("relu", 0.5)
    assert isinstance(converted.classifier[0], tnn.Dropout)
    assert converted.classifier[6].activation is None
    assert converted.tritonalex_unsupported == [("avgpool", "AdaptiveAvgPool2d")]
    with torch.no_grad():
        got = converted(x)
    assert_close(got, want, 1e-10, "converted AlexNet", rnd.seed)


def test_relu_and_dropout_keep_channels_last():
    """The compiled net runs channels_last: the elementwise kernels keep that layout (no copy)."""
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, device=DEVICE).contiguous(
        memory_format=torch.channels_last)
    x.requires_grad_()
    g = torch.randn(2, 3, 4, 5, dtype=torch.float64, device=DEVICE)  # an NCHW gradient: read in x's layout
    y = F.relu(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, torch.relu(x))
    (dx,) = torch.autograd.grad(y, x, g)
    assert torch.equal(dx, torch.where(x > 0, g, 0.0))
    d = F.dropout(x, 0.5)
    assert d.is_contiguous(memory_format=torch.channels_last)
    kept = d != 0
    assert torch.equal(d[kept], 2 * x[kept])
    (dx,) = torch.autograd.grad(d, x, g)
    assert torch.equal(dx, torch.where(kept, 2 * g, 0.0))  # the same mask in the backward


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_reads_fp32_weights_in_the_kernel(dtype):
    """As for conv2d: the input cast, the fp32 weight rounded in the kernel, fp32 gradients."""
    rnd = Inputs()
    x = rnd.randn(5, 8, dtype=torch.float32)
    w = rnd.randn(3, 8, dtype=torch.float32, requires_grad=True)
    b = rnd.randn(3, dtype=torch.float32, requires_grad=True)
    check_autocast_parameters(lambda x, w, b: F.linear(x, w, b, activation="relu"), TF.linear,
                              x, w, b, dtype, rnd.seed)


def test_dropout_seed_passed_in():
    """A seed passed in gives the mask it draws, the same in linear's epilogue and in dropout,
    and is checked like torch checks its arguments."""
    x = torch.randn(8, 16, dtype=torch.float64, device=DEVICE) + 3  # positive: the zeros are the mask's
    w = torch.randn(32, 16, dtype=torch.float64, device=DEVICE) * 0.1
    seeds = torch.randint(0, 2**31 - 1, (2,), device=DEVICE)
    a = F.linear(x, w, dropout=0.5, seed=seeds[0:1])
    b = F.linear(x, w, dropout=0.5, seed=seeds[0:1])
    c = F.linear(x, w, dropout=0.5, seed=seeds[1:2])
    assert torch.equal(a, b) and not torch.equal(a == 0, c == 0)
    y = torch.ones(8, 32, dtype=torch.float64, device=DEVICE)
    assert torch.equal(F.dropout(y, 0.5, seed=seeds[1:2]), F.dropout(y, 0.5, seed=seeds[1:2]))
    with pytest.raises(TypeError, match="one-element int64 tensor"):
        F.linear(x, w, dropout=0.5, seed=seeds)
    with pytest.raises(TypeError, match="one-element int64 tensor"):
        F.dropout(y, 0.5, seed=seeds[0:1].int())
    assert_close(F.linear(x, w, dropout=0.5, training=False, seed=seeds), x @ w.T, TOLERANCE[torch.float64])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fp32_output_under_autocast(dtype):
    """out_dtype=float32 (the compiled net's logits): the fp32 accumulator written unrounded; the
    fp32 gradient coming back is rounded inside the backward's loads: dx (in the activations'
    dtype), dw and db as from the rounded gradient, within the dtype's tolerance (the
    interpreter's in-kernel rounding truncates, a GPU's rounds to nearest)."""
    rnd = Inputs()
    x = rnd.randn(6, 40, dtype=torch.float32).requires_grad_()
    w = rnd.randn(24, 40, dtype=torch.float32, requires_grad=True)
    b = rnd.randn(24, dtype=torch.float32, requires_grad=True)
    dy = rnd.randn(6, 24, dtype=torch.float32)
    with torch.autocast(DEVICE.type, dtype=dtype):
        wide = F.linear(x, w, b, out_dtype=torch.float32)
        narrow = F.linear(x, w, b)
    assert wide.dtype == torch.float32 and narrow.dtype == dtype
    x64, w64 = (t.detach().to(dtype).double().requires_grad_() for t in (x, w))
    b64 = b.detach().double().requires_grad_()
    ref = TF.linear(x64, w64, b64)
    assert_close(wide, ref, TOLERANCE[dtype], "fp32 output")  # the weight rounded in the kernel
    got = torch.autograd.grad(wide, (x, w, b), dy)
    want = torch.autograd.grad(ref, (x64, w64, b64), dy.to(dtype).double())
    assert got[1].dtype == got[2].dtype == torch.float32  # dx: x's, through autocast's cast
    for g, r, what in zip(got, want, ("dx", "dw", "db")):
        assert_close(g, r, TOLERANCE[dtype], what)
    with pytest.raises(TypeError, match="floating dtype"):
        F.linear(x, w, b, out_dtype=torch.int32)


def opcheck_samples():
    """The fp32 output and its backward (linear_input_grad in the forward input's dtype)."""
    rnd = Inputs()
    a, w = rnd.randn(5, 8).float().requires_grad_(), rnd.randn(3, 8).float().requires_grad_()
    return [("linear", (a.half().detach().requires_grad_(), w, None, False, 0.0, None, False,
                        torch.float32)),
            ("linear_input_grad", (rnd.randn(5, 3).float(), None, w.detach(), False, 0.0, None,
                                   False, torch.float16))]
