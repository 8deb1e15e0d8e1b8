"""kernels/launch.py's host-side rules (meta tensors: shapes only, nothing allocated)."""

import torch

from tritonalex.kernels.launch import needs_int64


def test_needs_int64_is_bounded_by_the_storage():
    small = torch.empty(1000, device="meta")
    huge = torch.empty(2**31 + 8, dtype=torch.int8, device="meta")
    assert not needs_int64(small, None)
    assert needs_int64(small, huge)
    assert needs_int64(huge[2**31:])  # a small view far into a large storage
    assert not needs_int64(torch.empty(1, device="meta").expand(2**33))  # every offset is 0
