"""local_response_norm: the autograd Function and torch-compatible argument handling."""

import torch
from torch.autograd.function import once_differentiable

from ..kernels.launch import empty, memory_format_of
from ..kernels.lrn import lrn_backward, lrn_forward
from .._args import check_device, check_float_dtype


def _as_ncs(t):
    """[N, C, *spatial] viewed as [N, C, S] (a view whenever the strides allow, as torch reshapes)."""
    return t.reshape(t.shape[0], t.shape[1], -1)


def _empty_like(x):
    return empty(x.shape, x.dtype, x.device, memory_format=memory_format_of(x))


class LocalResponseNormFunction(torch.autograd.Function):
    """Cross-channel LRN of an (N, C, *) tensor; the backward recomputes from the saved input."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        y = _empty_like(x)
        lrn_forward(_as_ncs(x), _as_ncs(y), size, alpha, beta, k)
        ctx.save_for_backward(x)
        ctx.lrn = (size, alpha, beta, k)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        dx = _empty_like(x)
        lrn_backward(_as_ncs(x), _as_ncs(dy), _as_ncs(dx), *ctx.lrn)
        return dx, None, None, None, None


def check_lrn_args(input, size, op="local_response_norm"):
    if input.dim() < 3:
        raise ValueError(f"Expected 3D or higher dimensionality input (got {input.dim()} dimensions)")
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    check_device(op, input)
    check_float_dtype(input, op)


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    check_lrn_args(input, size)
    if input.numel() == 0:
        return input
    return LocalResponseNormFunction.apply(input, size, float(alpha), float(beta), float(k))
