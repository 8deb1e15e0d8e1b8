"""tritonalex.functional.conv2d against torch.nn.functional.conv2d: values, gradients, errors."""

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import tritonalex.functional as F
from tritonalex.kernels.launch import DotKernel
from tritonalex.bench.layers import cases
from tritonalex.kinds.conv import geometry
from reference import (
    DEVICE,
    TF32_TOLERANCE,
    TOLERANCE,
    Inputs,
    as_layout,
    assert_close,
    check_autocast_parameters,
)


def run_case(x_shape, w_shape, *, dtype=torch.float64, bias=True, relu=True, layout="contiguous",
             grad_layout="contiguous", need_input_grad=True, tol=None, weight_layout="contiguous",
             **conv_args):
    """Forward and every gradient of ours vs torch (in float64 on the same rounded values)."""
    rnd = Inputs()
    x = as_layout(rnd.randn(*x_shape, dtype=dtype), layout).requires_grad_(need_input_grad)
    w = as_layout(rnd.randn(*w_shape, dtype=dtype), weight_layout).requires_grad_()
    b = rnd.randn(w_shape[0], dtype=dtype, requires_grad=True) if bias else None
    leaves = [t for t in (x, w, b) if t is not None and t.requires_grad]

    y = F.conv2d(x, w, b, activation="relu" if relu else None, **conv_args)
    x64, w64 = x.detach().double().requires_grad_(need_input_grad), w.detach().double().requires_grad_()
    b64 = b.detach().double().requires_grad_() if bias else None
    ref = TF.conv2d(x64, w64, b64, **conv_args)
    ref = torch.relu(ref) if relu else ref
    tol = tol or TOLERANCE[dtype]
    assert y.dtype == dtype
    assert_close(y, ref, tol, "forward", rnd.seed)

    dy = as_layout(rnd.randn(*ref.shape, dtype=dtype), grad_layout)
    grads = torch.autograd.grad(y, leaves, dy)
    refs = torch.autograd.grad(ref, [t for t in (x64, w64, b64) if t is not None and t.requires_grad],
                               dy.double())
    names = [n for n, t in zip(("input", "weight", "bias"), (x, w, b)) if t is not None and t.requires_grad]
    for name, got, want in zip(names, grads, refs):
        assert_close(got, want, tol, f"grad {name}", rnd.seed)
    return y, grads


# (input shape, weight shape, conv arguments): odd sizes, strides, padding forms, dilation, groups.
CASES = [
    ((2, 3, 9, 9), (4, 3, 3, 3), dict()),
    ((2, 3, 9, 9), (4, 3, 3, 3), dict(stride=2, padding=1)),
    ((1, 5, 13, 11), (7, 5, 3, 2), dict(stride=(2, 3), padding=(1, 2))),
    ((2, 4, 10, 9), (6, 2, 3, 3), dict(groups=2, padding=2, dilation=2)),
    ((3, 6, 7, 8), (9, 2, 2, 3), dict(groups=3, stride=(3, 1), padding=(0, 1))),
    ((1, 3, 23, 23), (8, 3, 11, 11), dict(stride=4)),
    ((2, 4, 8, 7), (5, 4, 4, 3), dict(padding="same", dilation=(1, 2))),
    ((2, 4, 8, 7), (5, 4, 3, 3), dict(padding="valid")),
    ((1, 2, 6, 6), (3, 2, 1, 1), dict(stride=2)),
    ((2, 16, 5, 5), (16, 16, 3, 3), dict(padding=1)),
    # Channels per group that 64 does not divide: the forward's flattened (kh, kw, c) loop, its
    # BLOCK_K steps spanning taps (130 x 2 x 2: five steps at the interpreter's largest, 128).
    ((2, 34, 7, 6), (6, 17, 3, 2), dict(groups=2, stride=(2, 1), padding=(1, 2), dilation=(2, 1))),
    ((1, 130, 4, 5), (3, 130, 2, 2), dict(padding=1)),
    # Multiples of 64: the (tap, channel chunk) loop; 192 takes two chunks per tap.
    ((2, 128, 5, 4), (6, 64, 3, 3), dict(groups=2, stride=(2, 1), padding=1)),
    ((1, 192, 4, 3), (4, 192, 2, 2), dict(padding=(1, 0), dilation=(1, 2))),
    # No tap outside the image (ALL_TAPS: no bound checks), and "same" padding only at the
    # bottom and right (top-left unpadded, yet the last taps fall outside).
    ((1, 64, 5, 6), (3, 64, 2, 3), dict(stride=(2, 1))),
    ((1, 64, 5, 5), (3, 64, 2, 2), dict(padding="same")),
    # Strided convs on few channels run as space-to-depth (conv1's path): padded, and cropped.
    ((1, 2, 17, 19), (4, 2, 7, 7), dict(stride=3, padding=(1, 3))),
    ((1, 2, 20, 20), (4, 2, 6, 6), dict(stride=3)),
]


@pytest.mark.parametrize("x_shape,w_shape,args", CASES, ids=[str(i) for i in range(len(CASES))])
@pytest.mark.parametrize("relu", [True, False])
def test_matches_torch_float64(x_shape, w_shape, args, relu):
    run_case(x_shape, w_shape, relu=relu, bias=relu, **args)


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
@pytest.mark.parametrize("grad_layout", ["channels_last", "strided"])
def test_layouts_and_noncontiguous_grad_output(layout, grad_layout):
    y, grads = run_case((2, 6, 9, 10), (4, 3, 3, 3), groups=2, padding=1, stride=(1, 2),
                        layout=layout, grad_layout=grad_layout)
    if layout == "channels_last":  # torch keeps channels_last through a conv; so do we
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert grads[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("relu,mask_input", [(False, False), (True, True)])
@pytest.mark.parametrize("c_per_group", [48, 144])
def test_input_grad_48s_of_channels_as_32_and_16(c_per_group, relu, mask_input, monkeypatch):
    """Groups of 48s of channels (conv2's input: conv1's towers) take 32 + 16 columns per program
    on the tensor cores (REST_N) instead of padding 48 to 64; forced here in float64, against
    torch's input gradient (the forward's ReLU mask on dy, the deferred one on x)."""
    from tritonalex.kernels import conv as conv_kernels

    monkeypatch.setattr(conv_kernels, "_rest_columns",
                        lambda c, dtype, device: 16 if c % 48 == 0 and c % 64 else 0)
    rnd = Inputs()
    x = as_layout(rnd.randn(2, 2 * c_per_group, 5, 6), "channels_last")
    w = rnd.randn(6, c_per_group, 3, 2)
    geometry = dict(stride=(1, 2), padding=(1, 0), dilation=(1, 1), groups=2)
    y = TF.conv2d(x, w, **geometry)
    dy = rnd.randn(*y.shape)
    want = torch.nn.grad.conv2d_input(x.shape, w, torch.where(y > 0, dy, 0.0) if relu else dy,
                                      **geometry)
    if mask_input:
        want = torch.where(x > 0, want, 0.0)
    got = conv_kernels.conv2d_input_grad(dy, y, w, x, (1, 2), ((1, 1), (0, 0)), (1, 1), 2, relu,
                                         False, mask_input=mask_input)
    assert_close(got, want, TOLERANCE[torch.float64])


@pytest.mark.parametrize("layout", ["channels_last", "contiguous", "strided"])
@pytest.mark.parametrize("shape,s,pad,out", [
    ((2, 3, 23, 23), 4, (0, 0), (6, 6)),  # conv1's shape, small: cropped past 4*6 = 24 > 23
    ((1, 3, 9, 11), 4, (1, 3), (3, 3)),  # padded top and left: runs start mid-pixel
    ((2, 5, 7, 6), 3, (2, 1), (2, 3)),  # a run of 15 in a 16-wide tile, rows past the input
    ((1, 1, 5, 8), 2, (0, 1), (2, 4)),  # one channel
])
def test_space_to_depth_matches_a_reshape(shape, s, pad, out, layout):
    """The space-to-depth copy against torch's pad, crop and reshape: channels_last inputs copy
    whole runs of s*C elements, other layouts gather; the output is channels_last."""
    from tritonalex.kernels.space_to_depth import space_to_depth

    x = as_layout(Inputs().randn(*shape), layout)
    n, c, h, w = shape
    (u, v), (ph, pw) = out, pad
    padded = torch.zeros(n, c, s * u, s * v, dtype=x.dtype, device=x.device)
    rows, cols = min(h, s * u - ph), min(w, s * v - pw)
    padded[:, :, ph:ph + rows, pw:pw + cols] = x[:, :, :rows, :cols]
    want = (padded.reshape(n, c, u, s, v, s).permute(0, 3, 5, 1, 2, 4).reshape(n, s * s * c, u, v))
    got = space_to_depth(x, s, ph, pw, u, v)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, want)


@pytest.mark.parametrize("c", [3, 20, 64])
def test_channels_last_weight_and_input(c):
    """The layout the compiled net keeps its weights in (OHWI in memory), both loop kinds."""
    rnd = Inputs()
    w = rnd.randn(5, c, 3, 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    x = rnd.randn(2, c, 8, 7).contiguous(memory_format=torch.channels_last).requires_grad_()
    ours = F.conv2d(x, w, padding=1, stride=(1, 2), activation="relu")
    ref = torch.relu(TF.conv2d(x, w, padding=1, stride=(1, 2)))
    assert_close(ours, ref, TOLERANCE[torch.float64], "forward", rnd.seed)
    dy = rnd.randn(*ref.shape)
    for got, want, name in zip(torch.autograd.grad(ours, (x, w), dy),
                               torch.autograd.grad(ref, (x, w), dy), ("input", "weight")):
        assert_close(got, want, TOLERANCE[torch.float64], f"grad {name}", rnd.seed)


def test_noncontiguous_weight():
    rnd = Inputs()
    w = rnd.randn(3, 4, 3, 3).transpose(2, 3)
    x = rnd.randn(2, 4, 7, 7)
    assert_close(F.conv2d(x, w, padding=1), TF.conv2d(x, w, padding=1), TOLERANCE[torch.float64],
                 "transposed weight", rnd.seed)


ALEXNET_CONVS = [name for name, (node, _) in cases("alexnet").items() if node.kind == "conv"]


def conv_shapes(layer, batch):
    """The alexnet spec's conv layer as one conv over both towers."""
    return geometry(cases("alexnet")[layer][0], batch)


@pytest.mark.parametrize("case", [0, 3, 10, 12])
def test_channels_last_weights(case):
    """Weights kept OHWI (the compiled net's layout): values equal, and the weight gradient in
    that layout, so autograd accumulates it without a layout copy (not through space-to-depth,
    case 12, whose gradient comes back through torch's reshapes)."""
    x_shape, w_shape, args = CASES[case]
    _, grads = run_case(x_shape, w_shape, layout="channels_last", weight_layout="channels_last",
                        **args)
    if case != 12:
        assert grads[1].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layer", ALEXNET_CONVS)
def test_alexnet_layers(layer):
    x_shape, w_shape, args = conv_shapes(layer, batch=1)
    # conv1's input is the image: training never needs its gradient (the slow test checks it).
    run_case(x_shape, w_shape, need_input_grad=layer != "conv1", **args)


@pytest.mark.parametrize("layer", ["conv1", "conv4"])
def test_alexnet_layers_in_bf16_take_the_narrow_channel_tiles(layer):
    """conv1's 96 and conv4's 192 output channels per group in bf16 (the interpreter answers
    sm_90): the forward's 64 + 32 / 128 + 64 columns and the weight gradient's transposed tiles
    at their real sizes, against torch in float64 on the same rounded values."""
    from tritonalex.kernels import conv as conv_kernels

    x_shape, w_shape, args = conv_shapes(layer, batch=1)
    assert conv_kernels.narrow_part(w_shape[0] // args.get("groups", 1), torch.bfloat16, DEVICE)
    run_case(x_shape, w_shape, dtype=torch.bfloat16, need_input_grad=layer != "conv1", **args)


@pytest.mark.slow
def test_alexnet_conv1_input_grad():
    x_shape, w_shape, args = conv_shapes("conv1", batch=1)
    run_case(x_shape, w_shape, **args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_dtypes(dtype, ieee_fp32):
    run_case((2, 8, 11, 11), (16, 4, 3, 3), dtype=dtype, groups=2, padding=1, stride=2)


@pytest.mark.skipif(DEVICE.type != "cuda", reason="TF32 exists only on a GPU")
def test_tf32_follows_cudnn_flag():
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        run_case((2, 64, 13, 13), (64, 64, 3, 3), dtype=torch.float32, padding=1, tol=TF32_TOLERANCE)
    finally:
        torch.backends.cudnn.allow_tf32 = previous


def test_unbatched_input():
    rnd = Inputs()
    x = rnd.randn(3, 8, 9, requires_grad=True)
    w = rnd.randn(4, 3, 3, 3, requires_grad=True)
    y = F.conv2d(x, w, padding=1, activation="relu")
    ref = torch.relu(TF.conv2d(x, w, padding=1))
    assert_close(y, ref, TOLERANCE[torch.float64], "unbatched forward", rnd.seed)
    dy = rnd.randn(*ref.shape)
    for got, want in zip(torch.autograd.grad(y, (x, w), dy), torch.autograd.grad(ref, (x, w), dy)):
        assert_close(got, want, TOLERANCE[torch.float64], "unbatched grad", rnd.seed)


@pytest.mark.parametrize("relu", [True, False])
def test_gradcheck_fast_mode(relu):
    rnd = Inputs()
    x = rnd.randn(2, 4, 6, 5, requires_grad=True)
    w = rnd.randn(6, 2, 3, 2, requires_grad=True)
    b = rnd.randn(6, requires_grad=True)
    fn = lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2,
                                  activation="relu" if relu else None)
    assert torch.autograd.gradcheck(fn, (x, w, b), fast_mode=True)


def test_backward_is_deterministic():
    rnd = Inputs()
    x = rnd.randn(2, 8, 12, 12, dtype=torch.float32, requires_grad=True)
    w = rnd.randn(8, 8, 3, 3, dtype=torch.float32, requires_grad=True)
    b = rnd.randn(8, dtype=torch.float32, requires_grad=True)
    dy = rnd.randn(2, 8, 12, 12, dtype=torch.float32)
    runs = [torch.autograd.grad(F.conv2d(x, w, b, padding=1, activation="relu"), (x, w, b), dy)
            for _ in range(2)]
    for first, second in zip(*runs):
        assert torch.equal(first, second)


def test_only_bias_needs_grad():
    rnd = Inputs()
    x, w = rnd.randn(2, 3, 6, 6), rnd.randn(4, 3, 3, 3)
    b = rnd.randn(4, requires_grad=True)
    dy = rnd.randn(2, 4, 4, 4)
    (got,) = torch.autograd.grad(F.conv2d(x, w, b, activation="relu"), (b,), dy)
    (want,) = torch.autograd.grad(torch.relu(TF.conv2d(x, w, b)), (b,), dy)
    assert_close(got, want, TOLERANCE[torch.float64], "bias-only grad", rnd.seed)


def test_nan_propagates_through_relu():
    x = torch.zeros(1, 1, 3, 3, dtype=torch.float64, device=DEVICE)
    x[0, 0, 1, 1] = float("nan")
    w = torch.ones(1, 1, 1, 1, dtype=torch.float64, device=DEVICE)
    y = F.conv2d(x, w, activation="relu")
    assert torch.equal(torch.isnan(y), torch.isnan(torch.relu(TF.conv2d(x, w))))


def _t(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=DEVICE).to(dtype)


BAD_INPUTS = {
    "2-D input": lambda: ((_t(2, 3), _t(4, 3, 3, 3)), {}),
    "channels not divisible": lambda: ((_t(1, 5, 8, 8), _t(4, 3, 3, 3)), dict(groups=2)),
    "weight rows not divisible": lambda: ((_t(1, 6, 8, 8), _t(3, 3, 3, 3)), dict(groups=2)),
    "dtype mismatch": lambda: ((_t(1, 3, 8, 8, dtype=torch.float64), _t(4, 3, 3, 3)), {}),
    "bias dtype mismatch": lambda: ((_t(1, 3, 8, 8), _t(4, 3, 3, 3), _t(4, dtype=torch.float64)), {}),
    "bias size": lambda: ((_t(1, 3, 8, 8), _t(4, 3, 3, 3), _t(3)), {}),
    "zero stride": lambda: ((_t(1, 3, 8, 8), _t(4, 3, 3, 3)), dict(stride=0)),
    "negative padding": lambda: ((_t(1, 3, 8, 8), _t(4, 3, 3, 3)), dict(padding=-1)),
    "zero dilation": lambda: ((_t(1, 3, 8, 8), _t(4, 3, 3, 3)), dict(dilation=0)),
    "kernel larger than input": lambda: ((_t(1, 3, 2, 2), _t(4, 3, 3, 3)), {}),
    "same with stride": lambda: ((_t(1, 3, 8, 8), _t(4, 3, 3, 3)), dict(padding="same", stride=2)),
    "bad padding string": lambda: ((_t(1, 3, 8, 8), _t(4, 3, 3, 3)), dict(padding="full")),
    "stride of 3 values": lambda: ((_t(1, 3, 8, 8), _t(4, 3, 3, 3)), dict(stride=(1, 1, 1))),
    "zero groups": lambda: ((_t(1, 3, 8, 8), _t(4, 3, 3, 3)), dict(groups=0)),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_like_torch_before_launch(case, monkeypatch):
    args, kwargs = BAD_INPUTS[case]()
    with pytest.raises(Exception) as torch_error:
        TF.conv2d(*args, **kwargs)

    def no_launch(*a, **k):
        raise AssertionError("a kernel was launched for bad input")

    monkeypatch.setattr(DotKernel, "launch", no_launch)
    with pytest.raises(type(torch_error.value)):
        F.conv2d(*args, **kwargs)


def test_integer_input_is_rejected_on_host(monkeypatch):
    monkeypatch.setattr(DotKernel, "launch", lambda *a, **k: pytest.fail("launched"))
    with pytest.raises(RuntimeError, match="float16, bfloat16, float32 or float64"):
        F.conv2d(torch.ones(1, 1, 3, 3, dtype=torch.int64), torch.ones(1, 1, 1, 1, dtype=torch.int64))


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        F.conv2d(_t(1, 1, 3, 3), _t(1, 1, 1, 1), activation="gelu")


def test_device_mismatch_raises_before_launch(monkeypatch):
    monkeypatch.setattr(DotKernel, "launch", lambda *a, **k: pytest.fail("launched"))
    with pytest.raises(RuntimeError, match="same device"):
        F.conv2d(_t(1, 3, 5, 5), torch.empty(2, 3, 3, 3, device="meta"))


@settings(max_examples=12, deadline=None, derandomize=False)
@given(
    batch=st.integers(1, 2), groups=st.integers(1, 3), c_per_group=st.integers(1, 3),
    oc_per_group=st.integers(1, 3), kh=st.integers(1, 4), kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    relu=st.booleans(), bias=st.booleans(), layout=st.sampled_from(["contiguous", "channels_last"]),
)
def test_random_geometry_matches_torch(batch, groups, c_per_group, oc_per_group, kh, kw, stride,
                                       padding, dilation, extra, relu, bias, layout):
    """Any geometry torch accepts: sizes from the kernel extent up, every argument combined."""
    h = dilation[0] * (kh - 1) + 1 + extra[0]
    w = dilation[1] * (kw - 1) + 1 + extra[1]
    run_case((batch, groups * c_per_group, h, w), (groups * oc_per_group, c_per_group, kh, kw),
             relu=relu, bias=bias, layout=layout, stride=stride, padding=padding,
             dilation=dilation, groups=groups)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_reads_fp32_weights_in_the_kernel(dtype):
    """Inside torch.autocast only the input is cast; the fp32 weight is rounded to `dtype` in the
    kernel (as torch's cast would) and the bias added in fp32. The output is in `dtype`, the
    weight and bias gradients come back in fp32, and no parameter cast runs."""
    rnd = Inputs()
    x = rnd.randn(2, 4, 9, 8, dtype=torch.float32).contiguous(memory_format=torch.channels_last)
    w = rnd.randn(6, 2, 3, 3, dtype=torch.float32, requires_grad=True)
    b = rnd.randn(6, dtype=torch.float32, requires_grad=True)
    check_autocast_parameters(
        lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2, activation="relu"),
        lambda x, w, b: TF.conv2d(x, w, b, padding=1, groups=2), x, w, b, dtype, rnd.seed)
    with pytest.raises(RuntimeError, match="should be the same"):  # outside autocast: torch's rule
        F.conv2d(x.to(dtype), w)
    # The rounding passed in (what the compiled net makes for all its convs in one cast): the
    # same results; a rounding of the wrong dtype or shape is refused.
    rounded = w.detach().to(dtype).contiguous(memory_format=torch.channels_last)
    check_autocast_parameters(
        lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2, activation="relu",
                                 rounded_weight=rounded),
        lambda x, w, b: TF.conv2d(x, w, b, padding=1, groups=2), x, w, b, dtype, rnd.seed)
    with torch.autocast(DEVICE.type, dtype=dtype):
        with pytest.raises(RuntimeError, match="rounded_weight must be"):
            F.conv2d(x, w, b, padding=1, groups=2, rounded_weight=rounded.float())
        with pytest.raises(RuntimeError, match="rounded_weight must be"):
            F.conv2d(x, w, b, padding=1, groups=2, rounded_weight=rounded[:3])


def test_compiled_net_rounds_conv_weights_once_and_draws_seeds_once(monkeypatch):
    """Under autocast the compiled net rounds its conv weights in one foreach copy and passes
    them in, and in training draws all dropout seeds in one call: the same logits as each layer
    doing its own (same seeds), and each layer gets its own seed."""
    import tritonalex
    from tritonalex.compiler.lower import CompiledNet

    spec = tritonalex.load_spec("alexnet-small")
    net = tritonalex.compile(spec, backend="triton", devices=DEVICE.type)
    x = torch.randn(2, 3, 32, 32, device=DEVICE)
    inputs_seen = []
    real = CompiledNet._step_inputs

    def spy(self, x):
        inputs_seen.append(real(self, x))
        return inputs_seen[-1]

    monkeypatch.setattr(CompiledNet, "_step_inputs", spy)
    net.eval()
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        ours = net(x)
    rounded = {name: kw["rounded_weight"] for name, kw in inputs_seen[-1].items()
               if "rounded_weight" in kw}
    convs = [name for name, node in net.nodes.items() if node.node.kind == "conv"]
    assert sorted(rounded) == sorted(convs)
    for name in convs:
        assert torch.equal(rounded[name], net.nodes[name].weight.detach().to(torch.bfloat16))
    monkeypatch.setattr(CompiledNet, "_step_inputs", lambda self, x: {})
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):  # each conv rounding its own
        plain = net(x)  # weight, logits in bf16
    assert ours.dtype == torch.float32 and plain.dtype == torch.bfloat16
    assert_close(plain, ours, TOLERANCE[torch.bfloat16], "logits")
    monkeypatch.setattr(CompiledNet, "_step_inputs", spy)
    net.train()
    torch.manual_seed(3)
    net(x)
    seeds = [kw["seed"] for kw in inputs_seen[-1].values() if "seed" in kw]
    dropouts = [name for name, node in net.nodes.items() if node.kind.dropout(node.node) > 0]
    assert len(seeds) == len(dropouts) >= 2 and seeds[0].data_ptr() != seeds[1].data_ptr()


@pytest.mark.parametrize("out_hw, splits", [((3, 3), 1), ((5, 7), 3), ((4, 19), 2)])
def test_weight_gradient_steps_flat_pixels(out_hw, splits, monkeypatch):
    """The weight gradient reduces over the flattened output pixels BLOCK_K at a time, stepping
    each row's (n, oh, ow) with carries: with 16-pixel steps, whole images per step (3 x 3), rows
    and columns carrying (5 x 7) and rows wider than a step (4 x 19), over split ranges."""
    from tritonalex.kernels import conv as conv_kernels
    from tritonalex.kernels import launch

    tile = launch.interpreter_tile
    monkeypatch.setattr(launch, "interpreter_tile", lambda *dims: {**tile(*dims), "BLOCK_K": 16})
    monkeypatch.setattr(conv_kernels, "INTERPRETER_SPLITS", splits)
    oh, ow = out_hw
    run_case((5, 3, oh + 2, ow), (4, 3, 3, 3), padding=(0, 1), need_input_grad=False)
    run_case((3, 3, oh + 2, ow + 2), (4, 3, 3, 3), need_input_grad=False)  # ALL_TAPS
    # NHWC dy and y: their pixels are one flat axis (FLAT_DY), with and without the fused ReLU.
    for relu in (True, False):
        run_case((5, 3, oh + 2, ow), (4, 3, 3, 3), padding=(0, 1), layout="channels_last",
                 grad_layout="channels_last", relu=relu, need_input_grad=False)


@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("rest", [0, 16])
def test_narrow_channel_blocks_and_transposed_weight_gradient(rest, splits, monkeypatch):
    """sm_90's tiles for a group's 96 or 192 output channels (`narrow_part`: 64 + 32 and
    128 + 64), forced here in float64 as 32 + 16 for 48 and, masked, 40 channels: the forward's
    REST_N columns, and the weight gradient's transposed MMA (columns j as its rows, with and
    without REST_M rows): split partials, bias, fused ReLU, padding and no-padding columns,
    the space-to-depth path, both weight layouts."""
    from tritonalex.kernels import conv as conv_kernels

    monkeypatch.setattr(conv_kernels, "INTERPRETER_SPLITS", splits)
    monkeypatch.setattr(conv_kernels, "narrow_part",
                        lambda oc, dtype, device: rest if oc in (40, 48) else 0)
    monkeypatch.setattr(conv_kernels, "weight_grad_tiling", lambda oc, dtype, device: (
        True, conv_kernels.narrow_part(oc, dtype, device)))
    for oc, layout in ((48, "contiguous"), (40, "channels_last")):
        run_case((2, 6, 7, 6), (2 * oc, 3, 3, 2), groups=2, padding=(1, 0), weight_layout=layout,
                 layout=layout, grad_layout=layout, need_input_grad=False)
        run_case((2, 3, 6, 7), (oc, 3, 2, 3), stride=(2, 1), relu=False,
                 weight_layout=layout, need_input_grad=False)  # ALL_TAPS
    run_case((1, 2, 17, 19), (48, 2, 7, 7), stride=3, padding=(1, 3), need_input_grad=False)
    # 2 x 8 x 8 = 128 pixels: whole steps (WHOLE_STEPS: no pixel masks), as at batch 128.
    run_case((2, 4, 10, 10), (48, 2, 3, 3), groups=2, layout="channels_last",
             grad_layout="channels_last", need_input_grad=False)
    run_case((2, 4, 8, 8), (40, 4, 3, 3), padding=1, need_input_grad=False)


@pytest.mark.parametrize("splits", [2, 5])
def test_weight_gradient_split_reduction_in_one_launch(splits, monkeypatch):
    """The GPU splits the weight gradient's pixel reduction across programs; the last to arrive
    at each tile adds the partials in split order. Forced here: equal to torch, bitwise
    reproducible, one launch, and the arrival counters left at zero for the next launch."""
    from tritonalex.kernels import conv as conv_kernels
    from tritonalex.kernels import launch

    monkeypatch.setattr(conv_kernels, "INTERPRETER_SPLITS", splits)
    launches = []
    monkeypatch.setattr(launch, "capture_hook", lambda kernel, **kw: launches.append(kernel))
    run_case((2, 4, 9, 8), (6, 2, 3, 3), groups=2, padding=1, need_input_grad=False)
    assert sum("weight_grad" in str(getattr(k, "fn", k)) for k in launches) == 1
    # No padding: every tap in the image, the columns over all of (kh, kw, c) (ALL_TAPS).
    run_case((2, 4, 9, 8), (6, 2, 3, 2), groups=2, stride=(2, 1), need_input_grad=False)
    # Space-to-depth (conv1's path): the partials summed, then written as the original weight's
    # taps, OIHW and OHWI.
    for layout in ("contiguous", "channels_last"):
        run_case((1, 2, 17, 19), (4, 2, 7, 7), stride=3, padding=(1, 3), weight_layout=layout,
                 need_input_grad=False)
    rnd = Inputs()
    x, dy = rnd.randn(3, 5, 7, 7), rnd.randn(3, 4, 5, 5)
    w = rnd.randn(4, 5, 3, 3, requires_grad=True)
    b = rnd.randn(4, requires_grad=True)
    first = torch.autograd.grad(F.conv2d(x, w, b), (w, b), dy)
    second = torch.autograd.grad(F.conv2d(x, w, b), (w, b), dy)
    assert all(torch.equal(a, c) for a, c in zip(first, second))
    used = [t for t in launch._counters.values() if not t.is_meta]  # (other tests: meta ones)
    assert used and all(int(t.abs().sum()) == 0 for t in used)
