"""tritonalex.nn.Conv2d: a drop-in torch.nn.Conv2d."""

import pytest
import torch

import tritonalex.nn as tnn
from reference import DEVICE, TOLERANCE, Inputs, assert_close


def test_is_a_torch_conv_with_the_same_state_dict():
    torch_conv = torch.nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2)
    ours = tnn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2, activation="relu")
    assert isinstance(ours, torch.nn.Conv2d)
    assert list(ours.state_dict()) == list(torch_conv.state_dict())
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in torch_conv.state_dict().items()}
    assert "activation='relu'" in repr(ours)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_matches_torch_module(padding_mode, activation):
    rnd = Inputs()
    kwargs = dict(stride=(1, 2), padding=(1, 2), dilation=1, groups=2, padding_mode=padding_mode)
    torch_conv = torch.nn.Conv2d(4, 6, (3, 2), **kwargs).to(DEVICE, torch.float64)
    ours = tnn.Conv2d(4, 6, (3, 2), activation=activation, **kwargs).to(DEVICE, torch.float64)
    ours.load_state_dict(torch_conv.state_dict())
    x = rnd.randn(2, 4, 7, 9, requires_grad=True)
    want = torch_conv(x)
    want = torch.relu(want) if activation else want
    got = ours(x)
    assert_close(got, want, TOLERANCE[torch.float64], "module forward", rnd.seed)
    dy = rnd.randn(*want.shape)
    got_grads = torch.autograd.grad(got, (x, ours.weight, ours.bias), dy)
    want_grads = torch.autograd.grad(want, (x, torch_conv.weight, torch_conv.bias), dy)
    for name, g, w in zip(("input", "weight", "bias"), got_grads, want_grads):
        assert_close(g, w, TOLERANCE[torch.float64], f"module grad {name}", rnd.seed)


def test_same_padding_string_and_no_bias():
    rnd = Inputs()
    torch_conv = torch.nn.Conv2d(3, 5, 4, padding="same", bias=False).to(DEVICE, torch.float64)
    ours = tnn.Conv2d(3, 5, 4, padding="same", bias=False).to(DEVICE, torch.float64)
    ours.load_state_dict(torch_conv.state_dict())
    x = rnd.randn(1, 3, 6, 7)
    assert_close(ours(x), torch_conv(x), TOLERANCE[torch.float64], "same padding", rnd.seed)


def test_bad_activation_rejected_at_construction():
    with pytest.raises(ValueError, match="activation"):
        tnn.Conv2d(3, 5, 3, activation="tanh")
