import pytest
import torch

import tritonalex  # noqa: F401  (turns on the interpreter without CUDA before kernels load)
from tritonalex.kernels import launch


@pytest.fixture(autouse=True)
def poison_outputs():
    """Every kernel output buffer starts as NaN, so an unwritten element fails its comparison."""
    previous = launch.set_poison(True)
    yield
    launch.set_poison(previous)


@pytest.fixture
def ieee_fp32():
    """Compare fp32 at IEEE precision: turn off TF32 (on by default for convs on a GPU)."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = previous


@pytest.fixture(params=["walk", "sliding"])
def lrn_path(request, monkeypatch):
    """Both LRN backward paths: the walk along each pixel's channels (windows of up to 5
    channels) and the sliding-window kernels of wider windows (forced here by WALK_MAX_SIZE = 0)."""
    from tritonalex.kernels import tiles

    if request.param == "sliding":
        monkeypatch.setattr(tiles, "WALK_MAX_SIZE", 0)
    return request.param
