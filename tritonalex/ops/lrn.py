"""local_response_norm: `torch.ops.tritonalex.local_response_norm` and its backward op, and
torch-compatible argument handling. The backward recomputes from the saved input."""

from torch import Tensor

from ..kernels.launch import empty, memory_format_of
from ..kernels.lrn import lrn_backward, lrn_forward
from .._args import check_device, check_float_dtype
from ._library import define, like


def as_ncs(t):
    """[N, C, *spatial] viewed as [N, C, S] (a view whenever the strides allow, as torch reshapes)."""
    return t.reshape(t.shape[0], t.shape[1], -1)


def empty_like(x, dtype=None):
    """An output shaped and laid out like x (what the fake implementations mirror: `like`)."""
    return empty(x.shape, dtype or x.dtype, x.device, memory_format=memory_format_of(x))


def _forward(x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int,
             relu_input: bool) -> Tensor:
    """`relu_input` only changes the backward: x is a ReLU's output, and the input gradient is
    zeroed where it is <= 0 (the ReLU's derivative, which its conv then skips: ops/conv.py)."""
    y = empty_like(x)
    lrn_forward(as_ncs(x), as_ncs(y), size, alpha, beta, k, groups)
    return y


def _backward_impl(x: Tensor, dy: Tensor, size: int, alpha: float, beta: float, k: float,
                   groups: int, relu_input: bool) -> Tensor:
    dx = empty_like(x)
    lrn_backward(as_ncs(x), as_ncs(dy), as_ncs(dx), size, alpha, beta, k, groups, relu_input)
    return dx


local_response_norm_op = define("local_response_norm", _forward, lambda x, *lrn: like(x))
local_response_norm_backward_op = define("local_response_norm_backward", _backward_impl,
                                         lambda x, dy, *lrn: like(x))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.lrn = inputs[1:]


def _backward(ctx, dy):
    (x,) = ctx.saved_tensors
    return local_response_norm_backward_op(x, dy, *ctx.lrn), None, None, None, None, None, None


local_response_norm_op.register_autograd(_backward, setup_context=_setup_context)


def check_lrn_args(input, size, groups=1, op="local_response_norm"):
    if input.dim() < 3:
        raise ValueError(f"Expected 3D or higher dimensionality input (got {input.dim()} dimensions)")
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if input.shape[1] % groups:
        raise ValueError(f"{op}: {input.shape[1]} channels do not split into {groups} groups")
    check_device(op, input)
    check_float_dtype(input, op)


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0, groups=1, relu_input=False):
    check_lrn_args(input, size, groups)
    if input.numel() == 0:
        return input
    return local_response_norm_op(input, size, float(alpha), float(beta), float(k), groups,
                                  bool(relu_input))
