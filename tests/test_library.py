"""The library ops (torch.ops.tritonalex.*): opcheck on every op, torch.compile whole graphs,
meta-device models, and dropout masks that stay random under compilation."""

import pytest
import torch

import tritonalex
from tritonalex import functional as XF
from tritonalex.ops._library import IMPLEMENTATIONS
from reference import DEVICE, Inputs

ops = torch.ops.tritonalex


def _op_samples():
    """(op name, args) for every op: forward ops on float64 inputs that require grad (so opcheck
    also checks the autograd registration), backward ops on what their forward saved."""
    g = Inputs()
    x = g.randn(2, 4, 7, 6, requires_grad=True)
    x_cl = g.randn(2, 4, 7, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = g.randn(6, 2, 3, 3, requires_grad=True)
    b = g.randn(6, requires_grad=True)
    geometry = ([2, 1], [1, 0, 1, 1], [1, 1], 2)  # stride, padding (t, b, l, r), dilation, groups
    y = ops.conv2d(x, w, b, None, *geometry, True, False, False, False).detach()
    dy = g.randn(*y.shape)
    lrn = (5, 1e-3, 0.75, 2.0, 2)  # size, alpha, beta, k, groups
    pool = ([3, 3], [2, 2], [1, 1], [1, 1], [4, 3])  # kernel, stride, padding, dilation, out_hw
    _, idx = ops.max_pool2d_with_indices(x.detach(), *pool, False)
    _, lrn_idx = ops.lrn_max_pool2d_with_indices(x.detach(), *pool, *lrn, False)
    _, codes = ops.max_pool2d_with_indices(x.detach(), *pool, False, False)  # tap codes
    dpool = g.randn(2, 4, 4, 3)
    # A stride-2 conv as space-to-depth (conv1's path): x2 and w2 = the weight's 2x2 blocks.
    xs, ws = g.randn(1, 2, 8, 8), g.randn(4, 2, 4, 4, requires_grad=True)
    x2 = ops.space_to_depth(xs, 2, 0, 0, 4, 4)
    w2 = (ws.detach().reshape(4, 2, 2, 2, 2, 2).permute(0, 2, 4, 3, 5, 1).reshape(4, 2, 2, 8)
          .permute(0, 3, 1, 2).contiguous())
    s2d = ([1, 1], [0, 0, 0, 0], [1, 1], 1)
    a, fw, fb = g.randn(5, 8, requires_grad=True), g.randn(3, 8, requires_grad=True), g.randn(3)
    seed = torch.randint(0, 2**31 - 1, (1,), device=DEVICE)
    fy = ops.linear(a, fw, fb, True, 0.5, seed, False).detach()
    return [
        ("conv2d", (x, w, b, None, *geometry, True, False, False, False)),
        ("conv2d", (x_cl, w, None, None, *geometry, False, False, False, False)),
        ("conv2d", (x, w, b, None, *geometry, True, False, True, True)),  # the deferred ReLU grad
        ("conv2d_input_grad", (dy, y, w.detach(), x.detach(), *geometry, True, False, False)),
        ("conv2d_input_grad", (dy, None, w.detach(), x.detach(), *geometry, False, False, True)),
        ("conv2d_weight_bias_grad", (dy, y, x.detach(), w.detach(), *geometry, True, True, True,
                                     False)),
        ("conv2d_weight_bias_grad", (dy, None, x.detach(), w.detach(), *geometry, False, False,
                                     True, False)),
        ("conv2d", (x.float(), w, b, None, *geometry, True, False, False, False)),  # fp64 weights
        ("conv2d", (x.float(), w, b, w.detach().float(), *geometry, True, False, False, False)),
        ("conv2d", (x2, ws, None, w2, *s2d, False, False, False, False, 2)),
        ("conv2d_weight_bias_grad", (g.randn(1, 4, 3, 3), None, x2, ws.detach(), *s2d, False,
                                     True, False, False, 2)),
        ("local_response_norm", (x, *lrn, False)),
        ("local_response_norm", (g.randn(3, 6, 5, requires_grad=True), *lrn[:4], 1, True)),
        ("local_response_norm_backward", (x.detach(), g.randn(*x.shape), *lrn, False)),
        ("local_response_norm_backward", (x.detach(), g.randn(*x.shape), *lrn, True)),
        ("max_pool2d_with_indices", (x_cl, *pool, False)),
        ("lrn_max_pool2d_with_indices", (x, *pool, *lrn, True)),
        ("max_pool2d_backward", (dpool, idx, x.detach(), *pool[:4], False)),
        ("max_pool2d_backward", (dpool, idx, x.detach(), *pool[:4], True)),
        ("max_pool2d_with_indices", (x_cl, *pool, False, False)),
        ("lrn_max_pool2d_with_indices", (x, *pool, *lrn, False, False)),
        ("max_pool2d_backward", (dpool, codes, x.detach(), *pool[:4], False)),
        ("lrn_max_pool2d_backward", (dpool, lrn_idx, x.detach(), *pool[:4], *lrn, True)),
        ("linear", (a, fw, fb, True, 0.5, seed, False)),
        ("linear", (a, fw, None, False, 0.0, None, False)),
        ("linear_input_grad", (g.randn(5, 3), fy, fw.detach(), True, 0.5, seed, False)),
        ("linear_weight_bias_grad", (g.randn(5, 3), None, a.detach(), fw.detach(), False, 0.5,
                                     seed, True, True, False)),
        ("linear_weight_bias_grad", (g.randn(5, 3).float(), None, a.detach().float(), fw.detach(),
                                     False, 0.0, None, True, False, False)),  # fp64 weight grad
        ("relu", (x_cl,)),
        ("relu_", (g.randn(4, 5),)),
        ("relu_backward", (y, dy)),
        ("space_to_depth", (x, 2, 1, 0, 4, 3)),
        ("space_to_depth", (x_cl, 3, 0, 1, 2, 2)),  # cropped: rows past 3*2 are not read
        ("dropout", (x_cl, 0.3, seed)),
        ("dropout_", (g.randn(4, 5), 0.3, seed)),
    ]


def _samples_of_other_test_files():
    """The ops of later layer kinds keep their opcheck samples beside their own tests: an
    `opcheck_samples()` in any tests/test_*.py."""
    import importlib
    import pathlib

    samples = []
    for path in sorted(pathlib.Path(__file__).parent.glob("test_*.py")):
        if path.stem != __name__.rpartition(".")[2]:
            module = importlib.import_module(path.stem)
            samples += getattr(module, "opcheck_samples", list)()
    return samples


SAMPLES = _op_samples() + _samples_of_other_test_files()


def test_every_op_has_a_sample():
    assert {name for name, _ in SAMPLES} == set(IMPLEMENTATIONS)


@pytest.mark.parametrize("name,args", SAMPLES, ids=[name for name, _ in SAMPLES])
def test_opcheck(name, args):
    """Schema, fake implementation (shapes and strides equal the real outputs'), autograd
    registration, and AOT dispatch with dynamic shapes."""
    torch.library.opcheck(getattr(ops, name), args)


def assert_one_graph_equal_to_eager(model, x):
    """Dynamo traces model(x) as one graph with no break, and torch.compile with the aot_eager
    backend (the CPU one: Dynamo and AOT autograd, no Inductor codegen) gives the eager outputs
    and parameter gradients exactly."""
    explained = torch._dynamo.explain(model)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    results = []
    for run in (model, torch.compile(model, backend="aot_eager", fullgraph=True)):
        model.zero_grad()
        torch.manual_seed(0)  # the same dropout seeds in both
        out = run(x)
        out.square().sum().backward()
        results.append([out.detach()] + [p.grad.clone() for p in model.parameters()])
    for compiled, eager in zip(results[1], results[0]):
        torch.testing.assert_close(compiled, eager, rtol=0, atol=0)


def test_compiled_spec_is_one_graph_equal_to_eager():
    net = tritonalex.compile(tritonalex.load_spec("alexnet-small"), backend="triton", devices="cpu")
    assert_one_graph_equal_to_eager(net, torch.randn(2, 3, 32, 32))


def test_converted_sequential_is_one_graph_equal_to_eager():
    model = tritonalex.convert(torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(inplace=True),
        torch.nn.LocalResponseNorm(5, 1e-3, 0.75, 2.0), torch.nn.MaxPool2d(3, 2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.Linear(16, 4), torch.nn.Dropout(0.2)))
    assert_one_graph_equal_to_eager(model, torch.randn(2, 3, 9, 9))


def test_compiled_dropout_draws_a_new_mask_per_call():
    dropout = torch.compile(lambda t: XF.dropout(t, 0.5), backend="aot_eager", fullgraph=True)
    fused = torch.compile(lambda t, w: XF.linear(t, w, dropout=0.5), backend="aot_eager",
                          fullgraph=True)
    x, w = torch.ones(64, 16), torch.eye(16)
    assert not torch.equal(dropout(x) == 0, dropout(x) == 0)
    assert not torch.equal(fused(x, w) == 0, fused(x, w) == 0)
    torch.manual_seed(3)
    first = dropout(x)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), first)  # torch.manual_seed still reproduces a run


def test_alexnet_on_the_meta_device():
    net = tritonalex.compile(tritonalex.load_spec("alexnet"), backend="triton", devices="meta")
    logits = net(torch.empty(4, 3, 227, 227, device="meta"))
    assert logits.shape == (4, 1000) and logits.device.type == "meta"


def test_in_place_ops_under_autograd_match_torch():
    g = Inputs()
    x = g.randn(3, 5, requires_grad=True)
    y = x * 1.0
    XF.relu(y, inplace=True)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (x > 0).double())
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        XF.relu(x, inplace=True)
    with torch.no_grad():
        z = g.randn(3, 5)
        expected = z.clamp(min=0)
        assert XF.relu(z, inplace=True) is z
        torch.testing.assert_close(z, expected, rtol=0, atol=0)
