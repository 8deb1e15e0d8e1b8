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


@pytest.fixture(params=["band", "walk", "sliding"])
def lrn_path(request, monkeypatch):
    """The three LRN backward paths: the band kernels (a group of at most BAND_MAX channels in one
    tile, its window sums on the tensor cores), the walk along each pixel's channels that wider
    groups run for windows of up to 5 (forced here by BAND_MAX = 0), and the sliding-window
    kernels for wider windows (forced by BAND_MAX = 0 and WALK_MAX_SIZE = 0)."""
    from tritonalex.kernels import tiles

    if request.param == "band":  # sm_90's 128-channel band tiles too (off on GPUs for now)
        monkeypatch.setattr(tiles, "BAND_MAX", {80: 64, 90: 128})
    else:
        monkeypatch.setattr(tiles, "BAND_MAX", {80: 0, 90: 0})
    if request.param == "sliding":
        monkeypatch.setattr(tiles, "WALK_MAX_SIZE", 0)
    return request.param
