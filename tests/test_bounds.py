"""Every launch stays inside its tensors with a GPU's choices. Under the interpreter a load or
store past a tensor reads or writes whatever host memory lies there, silently; on a GPU it is an
illegal memory access. So AlexNet's training step runs here as sm_90 would launch it (GPU tiles,
split counts and paths, and each autotune config in turn), every load, store and atomic checked
against the launch's tensors (memcheck.py). Slow (the interpreter runs the GPU's many small
programs: about 8 minutes a step on 2 cores): run with -m slow, or before a GPU session."""

import pytest
import torch
import torch.nn.functional as TF
import triton
import triton.language as tl

import tritonalex
from memcheck import bounds_checked, gpu_choices


@triton.jit
def _copy_one_too_many(x_ptr, y_ptr, N, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < N), mask=offs < N + 1)


def test_memcheck_catches_a_stray_store():
    x, y = torch.randn(10), torch.empty(10)
    _copy_one_too_many[(1,)](x, y, 9, BLOCK=16)  # in bounds: fine
    with bounds_checked(), pytest.raises(Exception, match="store of 1 element"):
        _copy_one_too_many[(1,)](x, y, 10, BLOCK=16)


def _training_step(spec, batch, layout):
    torch.manual_seed(0)
    spec = tritonalex.load_spec(spec)
    model = tritonalex.compile(spec, backend="triton", devices="cpu").train()
    images = torch.randn(batch, spec.channels, spec.size, spec.size).to(memory_format=layout)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images)
    TF.cross_entropy(logits.float(), torch.arange(batch) % 10).backward()
    return model


@pytest.mark.slow
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format],
                         ids=["channels_last", "nchw"])
def test_alexnet_step_stays_in_bounds_with_first_configs(layout):
    """The whole bf16 step at batch 2 with the config TRITONALEX_AUTOTUNE=0 runs."""
    with bounds_checked(), gpu_choices(configs="first"):
        model = _training_step("alexnet", 2, layout)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
def test_alexnet_step_stays_in_bounds_with_every_config():
    with bounds_checked(), gpu_choices(configs="all"):
        _training_step("alexnet", 2, torch.contiguous_format)


@pytest.mark.parametrize("channels", [256, 260])
def test_lrn_walks_stay_in_bounds(channels):
    """The walks along the channels (lrn2's backwards on sm_90, fused with the max-pool and
    alone) with the GPU's tiles: two groups of 128 channels, and of 130 (a last run past the
    group's end, masked). The fused walk on two images, so its 64-pixel tile spans both (5 x 5
    cells an image), its gradient bit for bit the unchecked run's."""
    import tritonalex.functional as F

    torch.manual_seed(0)
    x = torch.randn(2, channels, 9, 9, dtype=torch.bfloat16).to(
        memory_format=torch.channels_last).requires_grad_()
    y = F.lrn_max_pool2d(x, 5, 5e-4, 0.75, 2.0, kernel_size=3, stride=2, groups=2)
    dy = torch.randn_like(y)
    (want,) = torch.autograd.grad(y, x, dy)
    with bounds_checked(), gpu_choices():
        y = F.lrn_max_pool2d(x, 5, 5e-4, 0.75, 2.0, kernel_size=3, stride=2, groups=2)
        (dx,) = torch.autograd.grad(y, x, dy)
        assert torch.isfinite(dx).all() and torch.equal(dx, want)
        y = F.local_response_norm(x[:1], 5, 5e-4, 0.75, 2.0, groups=2)
        (dx,) = torch.autograd.grad(y, x, torch.randn_like(y))
        assert torch.isfinite(dx).all()
