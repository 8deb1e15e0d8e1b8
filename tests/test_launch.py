"""kernels/launch.py's host-side rules (meta tensors: shapes only, nothing allocated)."""

import pytest
import torch

from tritonalex.kernels.launch import needs_int64


def test_needs_int64_is_bounded_by_the_storage():
    small = torch.empty(1000, device="meta")
    huge = torch.empty(2**31 + 8, dtype=torch.int8, device="meta")
    assert not needs_int64(small, None)
    assert needs_int64(small, huge)
    assert needs_int64(huge[2**31:])  # a small view far into a large storage
    assert not needs_int64(torch.empty(1, device="meta").expand(2**33))  # every offset is 0


def test_split_count_fills_waves_and_weighs_the_serial_tail(monkeypatch):
    """Splits fill the SMs' waves (132 on an H100), and each split adds its partial to the last
    arrival's serial sum: a long reduction takes the count that fills whole waves, a short one
    fewer, and without a reduction length the waves alone decide."""
    from tritonalex.kernels import launch

    monkeypatch.setattr(launch, "_sm_count_override", 132)
    assert launch.split_count(7, None, most=24, reduction=387200) == 18  # 126 programs, one wave
    assert launch.split_count(20, None, most=24, reduction=93312) == 13  # 260: two waves
    assert launch.split_count(20, None, most=24, reduction=2000) == 4  # 80: the tail outweighs
    assert launch.split_count(20, None, most=24) == 13  # 260 programs: 2 rounds of 1/13 each
    assert launch.split_count(20, None, most=5) == 5


def test_a_cpu_tensor_is_refused_where_kernels_run_compiled(monkeypatch):
    """With CUDA available a CPU tensor gets torch's kind of device error, before Triton's launcher
    (whose own error names only an argument number), and never takes the direct path."""
    from tritonalex.kernels import direct, launch

    monkeypatch.setattr(launch, "INTERPRETING", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on a CUDA device.*cpu"):
        launch.check_on_gpu((torch.empty(2, device="meta"), 3, torch.empty(2)))
    launch.check_on_gpu((torch.empty(2, device="meta"), 3))  # meta tensors pass
    cpu_key = direct._key([0], (torch.empty(2),), {}, 0)
    assert cpu_key[0][0][-1] is False  # the device type is part of the direct path's key
