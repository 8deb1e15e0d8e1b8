"""LRN, max-pool and the fused LRN -> max-pool against torch: values, indices, gradients, errors."""


import pytest
import torch
import torch.nn.functional as TF

import tritonalex.functional as F
import tritonalex.nn as tnn
from tritonalex.kernels import lrn as lrn_kernels
from tritonalex.bench.layers import cases
from tritonalex.kernels import pool as pool_kernels
from tritonalex.kinds.lrn import lrn_args
from tritonalex.kinds.maxpool import pool_args
from reference import DEVICE, TOLERANCE, Inputs, as_layout, assert_close, check_unary_op

# --- local response norm -------------------------------------------------------------------------

LRN_CASES = [  # (input shape, size, alpha, beta, k)
    ((2, 7, 5, 6), 5, 1e-4, 0.75, 1.0),
    ((2, 7, 5, 6), 5, 0.5, 0.75, 2.0),  # large alpha: the cross term matters
    ((1, 3, 11), 2, 0.3, 0.6, 1.0),  # 3-D input, even size
    ((2, 4, 3, 2, 3), 3, 0.2, 1.1, 0.5),  # 5-D input
    ((1, 5, 4, 4), 1, 0.4, 0.75, 1.0),
    ((1, 3, 4, 4), 8, 0.4, 0.75, 1.0),  # window wider than the channel count
    ((1, 1, 7, 3), 5, 0.9, 0.75, 1.5),  # one channel
    ((2, 10, 3, 4), 5, 0.5, 0.75, 0.0),  # k = 0: scales may be 0 or subnormal (not NORMAL_S)
]


@pytest.mark.parametrize("shape,size,alpha,beta,k", LRN_CASES)
def test_lrn_matches_torch_float64(shape, size, alpha, beta, k, lrn_path):
    rnd = Inputs()
    check_unary_op(lambda x: F.local_response_norm(x, size, alpha, beta, k),
                   lambda x: TF.local_response_norm(x, size, alpha, beta, k),
                   rnd.randn(*shape), seed=rnd.seed)


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_lrn_layouts(layout, lrn_path):
    rnd = Inputs()
    x = as_layout(rnd.randn(2, 9, 6, 7), layout)
    y, dx = check_unary_op(lambda t: F.local_response_norm(as_layout(t, layout), 5, 0.3, 0.75, 2.0),
                           lambda t: TF.local_response_norm(t, 5, 0.3, 0.75, 2.0), x,
                           grad_layout="strided", seed=rnd.seed)
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("channels,hw", [(96, 55), (256, 27)])
def test_lrn_alexnet_shapes(channels, hw):
    rnd = Inputs()
    x = torch.relu(rnd.randn(1, channels, hw, hw)) * 3
    lrn = tnn.LocalResponseNorm.paper()
    check_unary_op(lrn, lambda t: TF.local_response_norm(t, 5, 5e-4, 0.75, 2.0), x, seed=rnd.seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_lrn_low_precision(dtype, lrn_path):
    rnd = Inputs()
    check_unary_op(lambda x: F.local_response_norm(x, 5, 0.2, 0.75, 1.0),
                   lambda x: TF.local_response_norm(x, 5, 0.2, 0.75, 1.0),
                   rnd.randn(2, 11, 5, 7), dtype=dtype, seed=rnd.seed)


@pytest.mark.parametrize("op", ["lrn", "lrn_max_pool2d"])
def test_bf16_backward_keeps_its_precision(op):
    """With the window sum dominating the scale (large alpha, small k), bf16's input gradient
    stays within half the usual bf16 tolerance of the float64 reference (its own bf16 rounding,
    about 2^-8 of the largest value, dominates): the walk sums in fp32 (a TF32 band sum it
    replaced came out near 4e-2 with 3-bit operands)."""
    rnd = Inputs()
    x = torch.relu(rnd.randn(2, 48, 5, 6)) + 0.5  # lrn1's groups
    lrn = (5, 4.0, 0.75, 0.1)
    if op == "lrn":
        ours = lambda t: F.local_response_norm(t, *lrn)
        theirs = lambda t: TF.local_response_norm(t, *lrn)
    else:
        ours = lambda t: F.lrn_max_pool2d(t, *lrn, kernel_size=3, stride=2)
        theirs = _two_ops(lrn, dict(kernel_size=3, stride=2))
    check_unary_op(ours, theirs, x, dtype=torch.bfloat16, seed=rnd.seed,
                   tol=TOLERANCE[torch.bfloat16] / 2)


@pytest.mark.parametrize("groups", [1, 2])
def test_lrn_nan_and_infinities_stay_in_their_windows(groups, lrn_path):
    """A NaN or an infinity reaches only the outputs whose window holds it, as in torch."""
    rnd = Inputs()
    x = rnd.randn(2, 12, 5, 4)
    x[0, 3, 1, 1], x[0, 8, 2, 2] = float("nan"), float("inf")
    x[1, 5, 0, 0], x[1, 6, 0, 0], x[1, 9, 3, 3] = float("-inf"), float("inf"), float("-inf")
    lrn = (5, 0.1, 0.75, 2.0)
    ref = _per_group(lambda t: TF.local_response_norm(t, *lrn), groups)(x)
    for y in (F.local_response_norm(x, *lrn, groups=groups),
              F.lrn_max_pool2d(x, *lrn, kernel_size=1, stride=1, groups=groups)):
        assert torch.equal(torch.isnan(y), torch.isnan(ref))
        assert torch.allclose(y.nan_to_num(), ref.nan_to_num(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("groups", [1, 2])
def test_lrn_backward_nan_follows_torch(groups, lrn_path):
    """The input gradient with NaNs in x: NaN exactly where torch's is (up to 4 channels away,
    through every normalizer whose window holds one), equal elsewhere (every sum of the walk and
    of the sliding kernel holds only its window's terms). Infinities are not
    compared: near one, the gradient has inf * 0 terms that torch's composite resolves by its
    order of operations and the closed form does not."""
    rnd = Inputs()
    x = rnd.randn(2, 16, 4, 5)
    x[0, 3, 1, 1], x[0, 11, 2, 2], x[1, 8, 0, 0] = float("nan"), float("nan"), float("nan")
    dy = rnd.randn(2, 16, 4, 5)
    lrn = (5, 0.1, 0.75, 2.0)
    ref_x = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(_per_group(lambda t: TF.local_response_norm(t, *lrn), groups)(
        ref_x), ref_x, dy)
    for op in (lambda t: F.local_response_norm(t, *lrn, groups=groups),
               lambda t: F.lrn_max_pool2d(t, *lrn, kernel_size=1, stride=1, groups=groups)):
        ours_x = x.clone().requires_grad_()
        (got,) = torch.autograd.grad(op(ours_x), ours_x, dy)
        assert torch.equal(torch.isnan(got), torch.isnan(want))
        assert torch.allclose(got.nan_to_num(), want.nan_to_num(), rtol=1e-10, atol=0)


@pytest.mark.parametrize("stride", [2, 3])  # stride classes (2: four), pixels one by one (3)
def test_fused_lrn_pool_backward_nan_follows_torch(stride, lrn_path):
    """The fused LRN -> max-pool's input gradient with a NaN in x, against torch's LRN then
    max_pool2d: NaN exactly where torch's is, equal elsewhere."""
    rnd = Inputs()
    x = rnd.randn(2, 16, 7, 7)
    x[0, 5, 2, 3] = float("nan")
    lrn, pool = (5, 0.1, 0.75, 2.0), dict(kernel_size=3, stride=stride)
    ref_x = x.clone().requires_grad_()
    y = _two_ops(lrn, pool)(ref_x)
    dy = rnd.randn(*y.shape)
    (want,) = torch.autograd.grad(y, ref_x, dy)
    ours_x = x.clone().requires_grad_()
    (got,) = torch.autograd.grad(F.lrn_max_pool2d(ours_x, *lrn, **pool), ours_x, dy)
    assert torch.isnan(want).any() and not torch.isnan(want[1]).any()
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.allclose(got.nan_to_num(), want.nan_to_num(), rtol=1e-10, atol=0)


def test_lrn_groups_of_odd_width():
    """129 channels in one group: the walk's last run holds 1 channel of the group and 3 past it
    (masked)."""
    rnd = Inputs()
    lrn = (5, 0.5, 0.75, 2.0)
    x = as_layout(rnd.randn(1, 129, 4, 5), "channels_last")
    pool = dict(kernel_size=3, stride=2)
    check_unary_op(lambda t: F.local_response_norm(t, *lrn),
                   lambda t: TF.local_response_norm(t, *lrn), x, seed=rnd.seed)
    check_unary_op(lambda t: F.lrn_max_pool2d(t, *lrn, **pool), _two_ops(lrn, pool), x,
                   seed=rnd.seed)


def test_lrn_gradcheck():
    rnd = Inputs()
    x = rnd.randn(2, 6, 3, 4, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.local_response_norm(t, 3, 0.5, 0.75, 1.0), (x,),
                                    fast_mode=True)


def test_lrn_paper_convention():
    """paper(): b = a / (2 + 1e-4 * sum over 5 neighbours of a^2) ** 0.75, written out by hand."""
    rnd = Inputs()
    a = rnd.randn(1, 8, 3, 3) * 20
    got = tnn.LocalResponseNorm.paper()(a)
    padded = TF.pad(a * a, (0, 0, 0, 0, 2, 2))
    window_sum = sum(padded[:, d:d + 8] for d in range(5))
    want = a / (2 + 1e-4 * window_sum) ** 0.75
    assert_close(got, want, TOLERANCE[torch.float64], "paper LRN", rnd.seed)
    assert isinstance(tnn.LocalResponseNorm.paper(), torch.nn.LocalResponseNorm)


def test_lrn_errors_and_empty(monkeypatch):
    monkeypatch.setattr(lrn_kernels, "lrn_forward", lambda *a, **k: pytest.fail("launched"))
    with pytest.raises(ValueError, match="3D or higher"):
        F.local_response_norm(torch.randn(2, 3, device=DEVICE), 3)
    with pytest.raises(RuntimeError, match="float16, bfloat16, float32 or float64"):
        F.local_response_norm(torch.ones(1, 3, 4, dtype=torch.int32, device=DEVICE), 3)
    empty = torch.randn(0, 3, 4, device=DEVICE)
    assert F.local_response_norm(empty, 3).shape == empty.shape


# --- max-pool ------------------------------------------------------------------------------------

POOL_CASES = [  # (input shape, kwargs)
    ((2, 3, 9, 8), dict(kernel_size=3, stride=2)),  # AlexNet's overlapping pool, odd sizes
    ((1, 4, 10, 11), dict(kernel_size=2)),  # stride defaults to kernel_size
    ((2, 2, 9, 9), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))),
    ((1, 3, 12, 10), dict(kernel_size=3, stride=2, dilation=2, padding=1)),
    ((2, 2, 8, 9), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ((1, 2, 7, 7), dict(kernel_size=(2, 3), stride=(3, 2), padding=(1, 1), ceil_mode=True,
                        dilation=(1, 2))),
    ((1, 1, 1, 1), dict(kernel_size=1)),
]


@pytest.mark.parametrize("shape,kwargs", POOL_CASES)
def test_max_pool_matches_torch(shape, kwargs):
    rnd = Inputs()
    x = rnd.randn(*shape)
    check_unary_op(lambda t: F.max_pool2d(t, **kwargs), lambda t: TF.max_pool2d(t, **kwargs), x,
                   seed=rnd.seed)
    _, idx = F.max_pool2d(x, return_indices=True, **kwargs)
    _, want = TF.max_pool2d(x, return_indices=True, **kwargs)
    assert idx.dtype == torch.int64 and torch.equal(idx, want)


def test_max_pool_ties_nan_and_neg_inf_follow_torch():
    x = torch.zeros(1, 3, 6, 6, dtype=torch.float64, device=DEVICE)  # channel 0: all ties
    x[0, 1] = float("-inf")  # channel 1: windows of -inf
    x[0, 2, 1, 1] = float("nan")  # channel 2: NaNs win, the last one in the window
    x[0, 2, 1, 2] = float("nan")
    x[0, 2, 4, 4] = 5.0
    for kwargs in (dict(kernel_size=3, stride=2), dict(kernel_size=3, stride=1, padding=1)):
        y, idx = F.max_pool2d(x, return_indices=True, **kwargs)
        ref, ref_idx = TF.max_pool2d(x, return_indices=True, **kwargs)
        assert torch.equal(torch.isnan(y), torch.isnan(ref))
        assert torch.equal(y.nan_to_num(), ref.nan_to_num())
        assert torch.equal(idx, ref_idx)
        # Without return_indices the argmax is kept as a tap code: the same choice, so
        # the same gradient (torch's, routed through its indices), fused LRN->pool too.
        dy = torch.randn(ref.shape, dtype=torch.float64, device=DEVICE)
        for ours, theirs in ((lambda t: F.max_pool2d(t, **kwargs),
                              lambda t: TF.max_pool2d(t, **kwargs)),
                             (lambda t: F.lrn_max_pool2d(t, 3, 0.1, 0.75, 2.0, **kwargs),
                              lambda t: TF.max_pool2d(TF.local_response_norm(t, 3, 0.1, 0.75, 2.0),
                                                      **kwargs))):
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            (ga,) = torch.autograd.grad(ours(xa), xa, dy)
            (gb,) = torch.autograd.grad(theirs(xb), xb, dy)
            assert torch.equal(torch.isnan(ga), torch.isnan(gb))
            assert torch.allclose(ga.nan_to_num(), gb.nan_to_num(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("pair", [False, True])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, stride=2),
                                    dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=(3, 2), stride=(1, 2), dilation=(2, 1))])
def test_max_pool_forward_walks_row_bands(kwargs, pair, monkeypatch):
    """The forward walks bands of output rows, carrying the window row two outputs share (3x3
    stride 2: 13 output rows in 2 bands of 7, the last row of the second idle; a dilated window
    carries nothing), and with `pair` (the GPU's choice) a slot takes two output columns whose
    windows share a column (3x3 stride 2; 3 output columns: the last pair half idle).
    Integer values make ties, NaN and -inf sit on the shared rows, and some windows are all -inf:
    values, int64 indices and the tap codes' gradients equal torch's, fused LRN -> pool too."""
    monkeypatch.setattr(pool_kernels, "INTERPRETER_BANDS", 2)
    monkeypatch.setattr(pool_kernels, "PAIR_COLUMNS", pair)
    rnd = Inputs()
    x = torch.randint(-2, 3, (2, 3, 27, 7), generator=rnd.generator, device=rnd.generator.device,
                      dtype=torch.float64).to(DEVICE)
    x[0, 0, 2, 3] = x[0, 0, 4, 1] = float("nan")
    x[1, 1, 6] = float("-inf")
    x[1, 2, 8:11] = float("inf")
    x[0, 2, 11:16, 1:7] = float("-inf")  # whole windows of -inf: the first tap is the argmax
    dy = rnd.randn(*TF.max_pool2d(x, **kwargs).shape)
    y, idx = F.max_pool2d(x, return_indices=True, **kwargs)
    ref, ref_idx = TF.max_pool2d(x, return_indices=True, **kwargs)
    assert torch.equal(y.nan_to_num(), ref.nan_to_num()) and torch.equal(idx, ref_idx)
    lrn = (3, 0.1, 0.75, 2.0)
    for ours, theirs in ((lambda t: F.max_pool2d(t, **kwargs),
                          lambda t: TF.max_pool2d(t, **kwargs)),
                         (lambda t: F.lrn_max_pool2d(t, *lrn, **kwargs),
                          lambda t: TF.max_pool2d(TF.local_response_norm(t, *lrn), **kwargs))):
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(xa), theirs(xb)
        assert torch.equal(torch.isnan(ya), torch.isnan(yb))
        assert torch.allclose(ya.nan_to_num(), yb.nan_to_num(), rtol=1e-12, atol=0)
        (ga,) = torch.autograd.grad(ya, xa, dy)
        (gb,) = torch.autograd.grad(yb, xb, dy)
        assert torch.equal(torch.isnan(ga), torch.isnan(gb))
        assert torch.allclose(ga.nan_to_num(), gb.nan_to_num(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("pool", [dict(kernel_size=3, stride=2),
                                  dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)])
@pytest.mark.parametrize("size", [5, 4, 3, 1])
def test_fused_forward_channel_runs_and_column_pairs(size, pool, monkeypatch):
    """The fused forward's tile of 4-channel runs (tiles.lrn_scale_runs: a run's squares from one
    load and its 2-channel halos, cut at group edges; SIZE 5's shared partial sums, the other
    sizes' plain ones) and column pairs, windows inside the image or not: 2 groups of 12
    channels (3 runs each), a NaN and an infinity on run edges, integer values for ties. Values,
    torch's int64 indices and the gradients equal the two ops per group."""
    monkeypatch.setattr(pool_kernels, "PAIR_COLUMNS", True)
    runs = []
    real_launch = pool_kernels.launch

    def spy(kernel, grid, *args, **kwargs):
        if "RUN" in kwargs:
            runs.append((kwargs["RUN"], kwargs["PAIR"], kwargs["INSIDE"]))
        return real_launch(kernel, grid, *args, **kwargs)

    monkeypatch.setattr(pool_kernels, "launch", spy)
    rnd = Inputs()
    x = torch.randint(-3, 4, (2, 24, 11, 9), generator=rnd.generator, device=rnd.generator.device,
                      dtype=torch.float64)
    x = as_layout(x.to(DEVICE), "channels_last")
    x[0, 4, 3, 2] = float("nan")  # run 1's first channel: the halo of run 0
    x[1, 15, 5, 5] = float("inf")  # group 1's run 0, last channel: the halo of its run 1
    lrn = (size, 0.5, 0.75, 2.0)
    ours = lambda t: F.lrn_max_pool2d(t, *lrn, groups=2, **pool)
    theirs = _per_group(_two_ops(lrn, pool), 2)
    y, idx = F.lrn_max_pool2d(x, *lrn, groups=2, return_indices=True, **pool)
    ref = theirs(x)
    _, ref_idx = TF.max_pool2d(TF.local_response_norm(x[:, :12], *lrn), return_indices=True,
                               **pool)
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.allclose(y.nan_to_num(), ref.nan_to_num(), rtol=1e-12, atol=0)
    assert torch.equal(idx[:, :12], ref_idx)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    dy = rnd.randn(*ref.shape)
    (ga,) = torch.autograd.grad(ours(xa), xa, dy)
    (gb,) = torch.autograd.grad(theirs(xb), xb, dy)
    assert torch.equal(torch.isnan(ga), torch.isnan(gb))
    assert torch.allclose(ga.nan_to_num(), gb.nan_to_num(), rtol=1e-10, atol=1e-12)
    assert runs and all(r == (4, True, "padding" not in pool) for r in runs)


def test_forward_schedule_weighs_the_busiest_sm(monkeypatch):
    """On a GPU (132 SMs here) the forward's tile and bands give the least work to the busiest SM
    among those with at least 4 programs per SM: AlexNet's lrn1 (96 channels, 27 x 14 pair
    slots) walks 3 bands of 9 rows on 16 x 32 tiles, lrn2 (256 channels, 13 x 7) whole images
    on 16 x 16, where 16 x 32 tiles would leave the busiest SM 7 programs of 7.5 rows."""
    from tritonalex.kernels import launch

    monkeypatch.setattr(pool_kernels, "INTERPRETING", False)
    monkeypatch.setattr(launch, "_sm_count_override", 132)
    schedule = pool_kernels._forward_schedule
    assert schedule(128, 96, 27, 14, True, "cuda") == (16, 32, 4, 3, 9)
    assert schedule(128, 256, 13, 7, True, "cuda") == (16, 16, 2, 1, 13)
    # Too little work for 4 programs per SM: one row per band, the most programs there are.
    assert schedule(1, 16, 5, 3, True, "cuda") == (16, 16, 2, 5, 1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_lrn_pool_saves_tap_codes_for_64_channel_bands(dtype, monkeypatch):
    """16-bit inputs whose LRN groups take a 64-channel band tile (AlexNet's lrn1: 48 per
    tower) save the pool's argmax as tap codes: the same values and gradients as the two ops."""
    seen = []
    real = pool_kernels.max_pool2d_forward

    def spy(*args, **kwargs):
        y, idx = real(*args, **kwargs)
        seen.append(idx.dtype)
        return y, idx

    monkeypatch.setattr(pool_kernels, "max_pool2d_forward", spy)
    from tritonalex.ops import pool as pool_ops
    monkeypatch.setattr(pool_ops, "max_pool2d_forward", spy)
    rnd = Inputs()
    x = as_layout(torch.relu(rnd.randn(2, 96, 7, 9)) * 2, "channels_last")
    lrn, pool = (5, 5e-4, 0.75, 2.0), dict(kernel_size=3, stride=2)
    check_unary_op(lambda t: F.lrn_max_pool2d(t, *lrn, groups=2, **pool),
                   _per_group(_two_ops(lrn, pool), 2), x, dtype=dtype, seed=rnd.seed)
    assert seen and all(d == torch.int16 for d in seen)


def test_pool_indices_are_tap_codes_unless_returned():
    """Tap codes (kh*KW + kw in the window, int16 for 16-bit inputs, int32 else) pick the same
    tap as torch's index; returned indices are torch's int64."""
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, device=DEVICE)
    geometry = ((3, 2), (2, 2), (1, 0), (1, 1), (5, 4))  # kernel, stride, padding, dilation, out
    _, codes = pool_kernels.max_pool2d_forward(x, *geometry, flat_indices=False)
    _, flat = TF.max_pool2d(x, (3, 2), (2, 2), (1, 0), return_indices=True)
    oh = torch.arange(5, device=DEVICE).view(1, 1, 5, 1)
    ow = torch.arange(4, device=DEVICE).view(1, 1, 1, 4)
    kh, kw = flat // 8 - (2 * oh - 1), flat % 8 - 2 * ow
    assert codes.dtype == torch.int32 and torch.equal(codes.long(), kh * 2 + kw)
    assert pool_kernels.max_pool2d_forward(x.half(), *geometry, flat_indices=False)[1].dtype \
        == torch.int16
    assert F.max_pool2d(x, 3, 2, return_indices=True)[1].dtype == torch.int64


@pytest.mark.parametrize("hw", [55, 27, 13])
def test_max_pool_alexnet_shapes(hw):
    rnd = Inputs()
    check_unary_op(tnn.MaxPool2d(3, 2), lambda t: TF.max_pool2d(t, 3, 2),
                   rnd.randn(1, 16, hw, hw), seed=rnd.seed)


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_max_pool_layouts_and_unbatched(layout):
    rnd = Inputs()
    x = as_layout(rnd.randn(2, 5, 9, 10), layout)
    y, _ = check_unary_op(lambda t: F.max_pool2d(as_layout(t, layout), 3, 2, 1),
                          lambda t: TF.max_pool2d(t, 3, 2, 1), x, grad_layout="strided",
                          seed=rnd.seed)
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
    check_unary_op(lambda t: F.max_pool2d(t, 3, 2), lambda t: TF.max_pool2d(t, 3, 2),
                   rnd.randn(4, 7, 7), seed=rnd.seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_max_pool_low_precision(dtype):
    rnd = Inputs()
    check_unary_op(lambda t: F.max_pool2d(t, 3, 2), lambda t: TF.max_pool2d(t, 3, 2),
                   rnd.randn(2, 6, 11, 9), dtype=dtype, seed=rnd.seed)


def test_max_pool_gradcheck_and_determinism():
    rnd = Inputs()
    x = rnd.randn(1, 2, 7, 7, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.max_pool2d(t, 3, 2, 1), (x,), fast_mode=True)
    dy = rnd.randn(1, 2, 4, 4)
    first, second = (torch.autograd.grad(F.max_pool2d(x, 3, 2, 1), x, dy)[0] for _ in range(2))
    assert torch.equal(first, second)


def test_max_pool_module_is_a_torch_module():
    pool = tnn.MaxPool2d(3, stride=2, return_indices=True)
    assert isinstance(pool, torch.nn.MaxPool2d)
    x = torch.randn(1, 2, 7, 7, device=DEVICE)
    y, idx = pool(x)
    ref, ref_idx = torch.nn.MaxPool2d(3, stride=2, return_indices=True)(x)
    assert torch.equal(y, ref) and torch.equal(idx, ref_idx)


BAD_POOL = {
    "padding over half the kernel": dict(kernel_size=3, padding=2),
    "zero stride": dict(kernel_size=3, stride=0),
    "zero dilation": dict(kernel_size=3, dilation=0),
    "kernel of three values": dict(kernel_size=(3, 3, 3)),
    "stride of three values": dict(kernel_size=3, stride=(1, 1, 1)),
    "output too small": dict(kernel_size=7),
}


@pytest.mark.parametrize("case", list(BAD_POOL))
def test_max_pool_bad_input_raises_like_torch_before_launch(case, monkeypatch):
    x = torch.randn(1, 2, 5, 5, device=DEVICE)
    with pytest.raises(Exception) as torch_error:
        TF.max_pool2d(x, **BAD_POOL[case])
    monkeypatch.setattr(pool_kernels, "max_pool2d_forward", lambda *a, **k: pytest.fail("launched"))
    with pytest.raises(type(torch_error.value)):
        F.max_pool2d(x, **BAD_POOL[case])


def test_max_pool_rejects_2d_input():
    with pytest.raises(RuntimeError, match="3D or 4D"):
        F.max_pool2d(torch.randn(5, 5, device=DEVICE), 2)


# --- fused LRN -> max-pool -----------------------------------------------------------------------

FUSED_CASES = [  # (input shape, LRN (size, alpha, beta, k), pool kwargs)
    ((2, 7, 9, 8), (5, 0.5, 0.75, 2.0), dict(kernel_size=3, stride=2)),
    ((1, 4, 10, 9), (2, 0.3, 0.6, 1.0), dict(kernel_size=2, stride=1, padding=1)),
    ((1, 5, 9, 9), (3, 0.4, 0.75, 1.0), dict(kernel_size=3, stride=2, ceil_mode=True, dilation=(1, 2))),
]


def _two_ops(lrn, pool):
    return lambda t: TF.max_pool2d(TF.local_response_norm(t, *lrn), **pool)


@pytest.mark.parametrize("shape,lrn,pool", FUSED_CASES)
def test_fused_lrn_pool_equals_the_two_ops(shape, lrn, pool, lrn_path):
    rnd = Inputs()
    x = rnd.randn(*shape)
    check_unary_op(lambda t: F.lrn_max_pool2d(t, *lrn, **pool), _two_ops(lrn, pool), x,
                   grad_layout="strided", seed=rnd.seed)
    _, idx = F.lrn_max_pool2d(x, *lrn, return_indices=True, **pool)
    _, want = TF.max_pool2d(TF.local_response_norm(x, *lrn), return_indices=True, **pool)
    assert torch.equal(idx, want)


ALEXNET_LRN_POOLS = [node for node, _ in cases("alexnet").values() if node.kind == "lrn_maxpool"]


@pytest.mark.parametrize("node", ALEXNET_LRN_POOLS, ids=lambda node: node.label)
def test_fused_lrn_pool_alexnet_shapes(node):
    """The alexnet spec's fused layers, as one tower (the windows spanning all channels)."""
    rnd = Inputs()
    x = torch.relu(rnd.randn(1, node.in_shape[0] * node.in_parts, *node.in_shape[1:])) * 3
    lrn, (k, s, p) = lrn_args(node.params["lrn"]), pool_args(node.params["pool"])
    pool = dict(kernel_size=k, stride=s, padding=p)
    check_unary_op(lambda t: F.lrn_max_pool2d(t, *lrn, **pool), _two_ops(lrn, pool), x,
                   seed=rnd.seed)


def test_fused_lrn_pool_backward_indexing_in_int64(monkeypatch, lrn_path):
    """The fused backward as a launch over 2^31 elements runs it (int64 offsets, its pixels
    numbered across the batch in int64), forced here on a small input: equal to the two ops."""
    monkeypatch.setattr(pool_kernels, "needs_int64", lambda *tensors: True)
    rnd = Inputs()
    lrn, pool = (5, 0.3, 0.75, 2.0), dict(kernel_size=3, stride=2)
    x = as_layout(rnd.randn(3, 8, 11, 11), "channels_last")
    check_unary_op(lambda t: F.lrn_max_pool2d(t, *lrn, **pool), _two_ops(lrn, pool), x,
                   seed=rnd.seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_lrn_pool_low_precision_and_channels_last(dtype, lrn_path):
    rnd = Inputs()
    lrn, pool = (5, 0.3, 0.75, 2.0), dict(kernel_size=3, stride=2)
    x = as_layout(rnd.randn(2, 9, 11, 11), "channels_last")
    check_unary_op(lambda t: F.lrn_max_pool2d(t, *lrn, **pool), _two_ops(lrn, pool), x,
                   dtype=dtype, seed=rnd.seed)


def test_fused_lrn_pool_gradcheck():
    rnd = Inputs()
    x = rnd.randn(1, 5, 7, 7, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.lrn_max_pool2d(t, 3, 0.5, 0.75, 1.0, 3, 2), (x,),
                                    fast_mode=True)


def _per_group(fn, groups):
    """fn applied to each of `groups` equal channel groups on its own: the reference for groups=."""
    return lambda t: torch.cat([fn(part) for part in t.chunk(groups, dim=1)], dim=1)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("groups", [2, 3])
def test_grouped_lrn_and_fused_pool_equal_separate_groups(groups, layout, lrn_path):
    """groups=g (AlexNet's towers in one tensor): no window crosses a group's edge."""
    rnd = Inputs()
    x = as_layout(rnd.randn(2, 6 * groups - 2 * groups, 9, 8), layout)  # 4 channels per group
    lrn, pool = (5, 0.5, 0.75, 2.0), dict(kernel_size=3, stride=2)
    check_unary_op(lambda t: F.local_response_norm(t, *lrn, groups=groups),
                   _per_group(lambda t: TF.local_response_norm(t, *lrn), groups), x,
                   grad_layout="strided", seed=rnd.seed)
    check_unary_op(lambda t: F.lrn_max_pool2d(t, *lrn, groups=groups, **pool),
                   _per_group(_two_ops(lrn, pool), groups), x, grad_layout="strided",
                   seed=rnd.seed)
    with pytest.raises(ValueError, match="do not split into 5 groups"):
        F.local_response_norm(x, 5, groups=5)


@pytest.mark.parametrize("channels,groups", [(200, 2), (128, 1)])
def test_lrn_backwards_walk(channels, groups, monkeypatch):
    """Windows of 5 channels take the walks, alone and fused with the max-pool, on groups of 100
    and 128 channels (AlexNet's lrn2 towers: 128)."""
    launched = []
    real_launch = lrn_kernels.launch

    def spy(kernel, *args, **kwargs):
        launched.append(kernel.__name__ if hasattr(kernel, "__name__") else kernel.fn.__name__)
        return real_launch(kernel, *args, **kwargs)

    monkeypatch.setattr(lrn_kernels, "launch", spy)
    monkeypatch.setattr(pool_kernels, "launch", spy)
    rnd = Inputs()
    x = as_layout(torch.relu(rnd.randn(1, channels, 5, 6)) * 3, "channels_last")
    lrn, pool = (5, 0.5, 0.75, 2.0), dict(kernel_size=3, stride=2)
    check_unary_op(lambda t: F.local_response_norm(t, *lrn, groups=groups),
                   _per_group(lambda t: TF.local_response_norm(t, *lrn), groups), x,
                   seed=rnd.seed)
    check_unary_op(lambda t: F.lrn_max_pool2d(t, *lrn, groups=groups, **pool),
                   _per_group(_two_ops(lrn, pool), groups), x, seed=rnd.seed)
    assert "lrn_walk_backward_kernel" in launched
    assert "lrn_walk_max_pool2d_backward_kernel" in launched
