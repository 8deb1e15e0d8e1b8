"""Deterministic split-K reduction: sum partial results over their leading (split) axis.

Kernels that split a long reduction across programs (the conv weight gradient) write one partial
result per split instead of using float atomics, whose order, and so whose rounding, changes from
run to run. This kernel then adds the splits in a fixed order and casts to the output dtype.
"""

import triton
import triton.language as tl

from .launch import INTERPRETING, Cost, cdiv, launch

BLOCK_GPU = 1024
BLOCK_INTERPRETER = 65536


@triton.jit
def sum_splits_kernel(
    partial_ptr,  # [SPLITS, L] partial sums, contiguous
    out_ptr,  # [L] result, contiguous, in the output dtype
    SPLITS,  # number of partial results to add
    L,  # length of one partial result
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < L
    acc = tl.load(partial_ptr + offs, mask=mask, other=0.0)
    for s in range(1, SPLITS):
        acc += tl.load(partial_ptr + s * L + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


def sum_splits(partial, out):
    """out.view(-1) = partial.sum(0) for a contiguous [splits, ...] partial and contiguous out."""
    length = out.numel()
    block = BLOCK_INTERPRETER if INTERPRETING else BLOCK_GPU
    # Minimum bytes 0: the partials are this design's overhead, not the operation's (see conv.py).
    launch(sum_splits_kernel, (cdiv(length, block),), partial, out, partial.shape[0], length,
           BLOCK=block, cost=Cost(0, 0, trips=lambda meta: partial.shape[0] - 1))
    return out
