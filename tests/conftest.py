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


@pytest.fixture(params=["band", "sliding"])
def lrn_path(request, monkeypatch):
    """Both LRN code paths: the band kernels (a group of at most BAND_MAX channels in one tile, its
    window sums on the tensor cores) and the sliding-window kernels that wider groups run (forced
    here by BAND_MAX = 0)."""
    from tritonalex.kernels import tiles

    if request.param == "sliding":
        monkeypatch.setattr(tiles, "BAND_MAX", {80: 0, 90: 0})
    else:  # sm_90's 128-channel band tiles too (off on GPUs for now: see tiles.BAND_MAX)
        monkeypatch.setattr(tiles, "BAND_MAX", {80: 64, 90: 128})
    return request.param
