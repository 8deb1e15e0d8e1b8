"""The ReLU derivative moved from a conv's backward into its consumer's (`defer_relu_grad` on the
conv, `relu_input` on conv2d, local_response_norm, max_pool2d and lrn_max_pool2d), and the
compiler pass that pairs them: equal to torch's conv -> ReLU -> consumer in float64."""

import pytest
import torch
import torch.nn.functional as TF

import tritonalex
import tritonalex.functional as F
from tritonalex.compiler import stages
from reference import TOLERANCE, Inputs, as_layout, assert_close

LRN = (5, 0.05, 0.75, 2.0)  # size, alpha, beta, k: alpha large enough that the cross term counts

# name -> (ours(y, relu_input), torch's(y)), each consuming a ReLU output y with 8 channels.
CONSUMERS = {
    "conv": (lambda y, r, w: F.conv2d(y, w, stride=2, padding=1, groups=2, relu_input=r),
             lambda y, w: TF.conv2d(y, w, stride=2, padding=1, groups=2)),
    "lrn": (lambda y, r, w: F.local_response_norm(y, *LRN, groups=2, relu_input=r),
            lambda y, w: torch.cat([TF.local_response_norm(t, *LRN) for t in y.chunk(2, 1)], 1)),
    "maxpool": (lambda y, r, w: F.max_pool2d(y, 3, 2, padding=1, relu_input=r),
                lambda y, w: TF.max_pool2d(y, 3, 2, padding=1)),
    "lrn_maxpool": (lambda y, r, w: F.lrn_max_pool2d(y, *LRN, 3, 2, relu_input=r),
                    lambda y, w: TF.max_pool2d(TF.local_response_norm(y, *LRN), 3, 2)),
}


def _leaves(rnd, layout, dtype=torch.float64):
    """Input, conv weight and bias (the conv's output is about half zeros after its ReLU), and
    the consumer conv's weight."""
    x = as_layout(rnd.randn(2, 5, 11, 10, dtype=dtype), layout).requires_grad_()
    w = as_layout(rnd.randn(8, 5, 3, 3, dtype=dtype), layout).requires_grad_()
    b = rnd.randn(8, dtype=dtype, requires_grad=True)
    return x, w, b, rnd.randn(6, 4, 3, 3, dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_deferred_pair_equals_torch(consumer, layout):
    """conv(defer_relu_grad) -> consumer(relu_input): output and the gradients of every leaf
    (the conv's input, weight and bias, the consumer conv's weight) equal torch's conv -> ReLU ->
    consumer."""
    ours, theirs = CONSUMERS[consumer]
    rnd = Inputs()
    x, w, b, w2 = _leaves(rnd, layout)
    y = ours(F.conv2d(x, w, b, padding=1, activation="relu", defer_relu_grad=True), True, w2)
    ref = theirs(torch.relu(TF.conv2d(x, w, b, padding=1)), w2)
    assert_close(y, ref, TOLERANCE[torch.float64], "forward", rnd.seed)
    dy = rnd.randn(*ref.shape)
    leaves = (x, w, b, w2) if consumer == "conv" else (x, w, b)
    for name, got, want in zip("x w b w2".split(), torch.autograd.grad(y, leaves, dy),
                               torch.autograd.grad(ref, leaves, dy)):
        assert_close(got, want, TOLERANCE[torch.float64], f"grad {name}", rnd.seed)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_consumer_zeroes_its_input_gradient_where_the_input_is_not_positive(consumer, layout,
                                                                            lrn_path):
    """relu_input=True alone: the input gradient is torch's, zeroed where the input is <= 0 (zeros
    and negatives included, any layout: a non-dense input is read through a copy)."""
    ours, theirs = CONSUMERS[consumer]
    rnd = Inputs()
    w2 = rnd.randn(6, 4, 3, 3)
    y = rnd.randn(2, 8, 9, 8).clamp_min(0) - 0.1 * rnd.randn(2, 8, 9, 8).clamp_min(0)
    y = as_layout(y, layout).requires_grad_()
    out, ref = ours(y, True, w2), theirs(y, w2)
    dy = rnd.randn(*ref.shape)
    (got,), (want,) = torch.autograd.grad(out, y, dy), torch.autograd.grad(ref, y, dy)
    assert (got[y <= 0] == 0).all()
    assert_close(got, want * (y > 0), TOLERANCE[torch.float64], "input gradient", rnd.seed)


def test_deferring_conv_skips_its_relu_mask():
    """defer_relu_grad=True: the backward takes dy as given (no ReLU mask), which is what a
    consumer that already masked it needs; without one the gradients are the pre-ReLU conv's."""
    rnd = Inputs()
    x, w, b, _ = _leaves(rnd, "channels_last")
    y = F.conv2d(x, w, b, padding=1, activation="relu", defer_relu_grad=True)
    assert (y == 0).any()
    dy = rnd.randn(*y.shape)
    want = torch.autograd.grad(TF.conv2d(x, w, b, padding=1), (x, w, b), dy)
    for name, got, ref in zip("xwb", torch.autograd.grad(y, (x, w, b), dy), want):
        assert_close(got, ref, TOLERANCE[torch.float64], f"grad {name}", rnd.seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_deferred_pair_equals_the_undeferred_in_low_precision(consumer, dtype):
    """In fp32 and bf16 the pair gives the gradients of the same ops without it (the ReLU mask is
    the same one, applied at another place): equal to rounding."""
    ours, _ = CONSUMERS[consumer]
    rnd = Inputs()
    x, w, b, w2 = _leaves(rnd, "channels_last", dtype)
    w2 = w2.detach().to(dtype).requires_grad_()
    results = []
    for defer in (False, True):
        y = ours(F.conv2d(x, w, b, padding=1, activation="relu", defer_relu_grad=defer), defer, w2)
        results.append(torch.autograd.grad(y, (x, w, b), torch.ones_like(y)))
    for name, got, want in zip("xwb", *results):
        assert_close(got, want, 4 * TOLERANCE[torch.float32], f"grad {name}", rnd.seed)


def test_defer_needs_a_fused_relu():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="defer_relu_grad=True needs activation='relu'"):
        F.conv2d(x, w, defer_relu_grad=True)


def test_pass_pairs_each_conv_relu_with_its_consumer():
    """alexnet: every conv+relu defers to the node after it (lrn1+pool1, lrn2+pool2, conv4,
    conv5, pool5); conv3 reads a pool's output and masks nothing; `--passes` can leave it out."""
    spec = tritonalex.load_spec("alexnet")
    *_, (_, graph) = stages(spec)
    nodes = {node.label: node for node in graph}
    assert [n.label for n in graph if n.defer_relu_grad] == \
        ["conv1+relu1", "conv2+relu2", "conv3+relu3", "conv4+relu4", "conv5+relu5"]
    assert [n.label for n in graph if n.relu_input] == \
        ["lrn1+pool1", "lrn2+pool2", "conv4+relu4", "conv5+relu5", "pool5"]
    assert "relu grad in next" in nodes["conv1+relu1"].describe()
    without = [p for p in tritonalex.compiler.FUSION_PASSES if p != "defer_relu_grad"]
    *_, (_, graph) = stages(spec, passes=without)
    assert not any(n.defer_relu_grad or n.relu_input for n in graph)
