"""batch_norm: `torch.ops.tritonalex.batch_norm` (it updates the running statistics in place) and
its backward op, with torch's argument rules. The forward saves the per-channel mean and invstd
(batch or running statistics); the backward recomputes xhat from the input."""

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..kernels.batchnorm import batch_norm_backward, batch_norm_forward
from ..kernels.launch import accumulator_dtype
from .._args import check_device, check_float_dtype
from ._library import define, like
from .lrn import as_ncs, empty_like


def _forward(x: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
             weight: Optional[Tensor], bias: Optional[Tensor], training: bool, momentum: float,
             eps: float) -> Tuple[Tensor, Tensor, Tensor]:
    y = empty_like(x)
    mean, invstd = batch_norm_forward(as_ncs(x), as_ncs(y), weight, bias, running_mean,
                                      running_var, training, momentum, eps)
    return y, mean, invstd


def _forward_fake(x, running_mean, running_var, weight, bias, training, momentum, eps):
    stats = accumulator_dtype(x.dtype)
    return like(x), x.new_empty(x.shape[1:2], dtype=stats), x.new_empty(x.shape[1:2], dtype=stats)


def _backward_impl(dy: Tensor, x: Tensor, weight: Optional[Tensor], mean: Tensor, invstd: Tensor,
                   training: bool, output_mask: List[bool]) -> List[Tensor]:
    """[dx, dweight, dbias], each only where output_mask asks for it."""
    dx = empty_like(x) if output_mask[0] else None
    dw = empty_like(weight) if output_mask[1] else None
    db = empty_like(weight if weight is not None else mean) if output_mask[2] else None
    batch_norm_backward(as_ncs(x), as_ncs(dy), None if dx is None else as_ncs(dx), weight, mean,
                        invstd, training, dw, db)
    return [t for t in (dx, dw, db) if t is not None]


def _backward_fake(dy, x, weight, mean, invstd, training, output_mask):
    wanted = (like(x), torch.empty_like(weight) if output_mask[1] else None,
              torch.empty_like(weight if weight is not None else mean) if output_mask[2] else None)
    return [t for t, want in zip(wanted, output_mask) if want]


batch_norm_op = define("batch_norm", _forward, _forward_fake,
                       mutates_args=("running_mean", "running_var"))
batch_norm_backward_op = define("batch_norm_backward", _backward_impl, _backward_fake)


class _BatchNorm(torch.autograd.Function):
    """Autograd around the op: a library op that mutates its inputs (the running statistics)
    cannot take `register_autograd`, so this Function calls it (Dynamo traces both)."""

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, training, momentum, eps):
        y, mean, invstd = batch_norm_op(x, running_mean, running_var, weight, bias, training,
                                        momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.training, ctx.bias_dtype = training, None if bias is None else bias.dtype
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, invstd = ctx.saved_tensors
        wants_weight = weight is not None and ctx.needs_input_grad[3]
        wants_bias = ctx.bias_dtype is not None and ctx.needs_input_grad[4]
        mask = [ctx.needs_input_grad[0], wants_weight, wants_bias]
        grads = iter(batch_norm_backward_op(dy, x, weight, mean, invstd, ctx.training, mask)
                     if any(mask) else ())
        dx, dw, db = (next(grads) if want else None for want in mask)
        if db is not None and db.dtype != ctx.bias_dtype:  # no weight: db came in the stats' dtype
            db = db.to(ctx.bias_dtype)
        return dx, None, None, dw, db, None, None, None


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """torch.nn.functional.batch_norm's checks and messages, then the library op."""
    if training:
        size = input.shape
        values = size[0] if len(size) else 1
        for s in size[2:]:
            values *= s
        if values == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {size}")
    channels = input.shape[1] if input.dim() > 1 else 0
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and t.numel() != channels:
            raise RuntimeError(f"{name} should contain {channels} elements not {t.numel()}")
    if not training:
        for name, t in (("running_mean", running_mean), ("running_var", running_var)):
            if t is None:
                raise RuntimeError(f"{name} must be defined in evaluation mode")
    if (running_mean is None) != (running_var is None):
        raise RuntimeError("running_mean and running_var must be given together")
    check_device("batch_norm", input, running_mean, running_var, weight, bias)
    check_float_dtype(input, "batch_norm")
    if input.numel() == 0:
        return input.clone()
    return _BatchNorm.apply(input, running_mean, running_var, weight, bias, bool(training),
                            float(momentum), float(eps))
