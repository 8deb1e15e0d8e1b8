"""Elementwise ReLU and dropout, each a single kernel over a dense flat tensor (contiguous or
channels_last: the output takes the input's layout, so offsets line up).

Dropout keeps element i when the Philox uniform tl.rand(seed, i) >= p (the seed read from a
tensor) and scales it by 1/(1-p); dropout is linear in its input, so its backward is the same
kernel with the same seed applied to the output gradient: the mask is never stored. The ReLU
backward reads the saved output (y > 0).
"""

import triton
import triton.language as tl

from .launch import Cost, cdiv, empty, launch, memory_format_of, nbytes, tile

BLOCK_GPU = 1024
BLOCK_INTERPRETER = 1 << 16


@triton.jit
def relu_forward_kernel(
    x_ptr,  # input, contiguous
    y_ptr,  # output, contiguous (may be x_ptr: in place)
    numel,  # number of elements
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    zero = tl.zeros_like(x)
    tl.store(y_ptr + offs, tl.where(x.to(tl.float32) < 0, zero, x), mask=mask)  # NaN stays NaN


@triton.jit
def relu_backward_kernel(
    y_ptr,  # forward output, contiguous
    dy_ptr,  # output gradient, contiguous
    dx_ptr,  # input gradient, contiguous
    numel,  # number of elements
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0)
    tl.store(dx_ptr + offs, tl.where(y > 0, dy, tl.zeros_like(dy)), mask=mask)


@triton.jit
def dropout_kernel(
    x_ptr,  # input (or output gradient), contiguous
    y_ptr,  # output (or input gradient), contiguous (may be x_ptr: in place)
    numel,  # number of elements
    seed_ptr,  # Philox seed: a one-element tensor (drawn on the device, read here)
    p,  # drop probability
    scale,  # 1 / (1 - p), or 0 when p == 1
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    keep = tl.rand(tl.load(seed_ptr), offs) >= p
    y = tl.where(keep, x.to(tl.float32) * scale, 0.0) if x.dtype != tl.float64 else \
        tl.where(keep, x * scale, 0.0)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def _launch(kernel, numel, min_bytes, *args):
    (block,) = tile((BLOCK_GPU,), (BLOCK_INTERPRETER,), fit=(numel,))
    if numel:
        launch(kernel, (cdiv(numel, block),), *args, BLOCK=block, cost=Cost(0, min_bytes))


def relu_forward(x, out=None):
    """relu of a contiguous x into `out` (a new tensor, or x itself for in place)."""
    y = empty(x.shape, x.dtype, x.device, memory_format_of(x)) if out is None else out
    _launch(relu_forward_kernel, x.numel(), nbytes(x, y), x, y, x.numel())
    return y


def relu_backward(y, dy):
    dx = empty(y.shape, dy.dtype, dy.device, memory_format_of(y))
    _launch(relu_backward_kernel, y.numel(), nbytes(y, dy, dx), y, dy, dx, y.numel())
    return dx


def dropout(x, p, seed, out=None):
    """Dropout of a contiguous x with drop probability p, the mask drawn from `seed` (a tensor)."""
    y = empty(x.shape, x.dtype, x.device, memory_format_of(x)) if out is None else out
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    _launch(dropout_kernel, x.numel(), nbytes(x, y), x, y, x.numel(), seed, p, scale)
    return y
