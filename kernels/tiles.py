"""Triton helpers shared by several kernel files (each op's file imports these, never another
op's file): the accumulate-dot, the bias+ReLU epilogue, window inversion, channel tiles, and the
LRN's window math (the LRN kernels and the fused LRN -> max-pool kernels both compute it).

The LRN's scalar parameters (k, alpha/size, beta) are read from a small tensor in the accumulator
dtype (`lrn_params`, through `launch.scalars`). Powers are exp2(-beta * log2(s)), which works in
the interpreter (libdevice pow does not).
"""

import triton
import triton.language as tl

from .launch import accumulator_dtype, scalars


@triton.jit
def dot_acc(a, b, acc, PRECISION: tl.constexpr, DOT_FP32: tl.constexpr, ACC: tl.constexpr):
    """acc + a @ b, the one place a kernel calls tl.dot.

    `b` is converted to `a`'s dtype first: a weight stored wider than the activations (fp32
    master weights under bf16/fp16 autocast) is rounded in registers, as torch.autocast's cast
    would round it, instead of by a cast kernel per step. DOT_FP32 upcasts both tiles (bf16
    arithmetic is wrong in the interpreter, see launch.dot_in_fp32); PRECISION is fp32's input
    precision ("ieee" or "tf32").
    """
    b = b.to(a.dtype)
    if DOT_FP32:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=ACC)


@triton.jit
def bias_relu_epilogue(acc, b_ptr, cols, cols_ok, HAS_BIAS: tl.constexpr,
                       APPLY_RELU: tl.constexpr, ACC: tl.constexpr):
    """Bias (one per output column, any float dtype) and ReLU on a GEMM's accumulator tile, before
    its single rounding to the output dtype; the conv and linear forwards share it."""
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=cols_ok, other=0.0).to(ACC)[None, :]
    if APPLY_RELU:
        acc = tl.where(acc < 0, 0.0, acc)  # NaN stays NaN, as in torch.relu
    return acc


@triton.jit
def window_source(i, pad, tap, dil, stride, O, ok):
    """Along one axis, the output position o whose window reads input position i at tap `tap`
    (o*stride = i + pad - tap*dil), and whether there is one: the right side must be a
    non-negative multiple of the stride below O*stride. The conv input gradient and the
    max-pool backward invert their windows with it."""
    t = i + pad - tap * dil
    o = t // stride
    return o, ok & (t >= 0) & (t % stride == 0) & (o < O)


# --- channel tiles ------------------------------------------------------------------------------


@triton.jit
def channel_tile(C, S, INDEX_64: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """This program's image n (grid axis 2), BLOCK_S positions s of S (axis 0) and BLOCK_C
    channels c of C (axis 1), with their in-bounds masks; the LRN and max-pool kernels tile so."""
    n = tl.program_id(2)
    s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if INDEX_64:
        n = n.to(tl.int64)
        s = s.to(tl.int64)
    return n, s, c, s < S, c < C


@triton.jit
def channel_group(c, C, GROUP):
    """(lo, hi): the channels c's window may reach, its group of GROUP channels (GROUP == C: all
    of them; AlexNet's two towers on one device: C / 2 each, so no window crosses a tower)."""
    lo = (c // GROUP) * GROUP
    return lo, tl.minimum(lo + GROUP, C)  # rows c >= C (masked) get an empty range


# --- the LRN's window math -----------------------------------------------------------------------


@triton.jit
def squares(x_ptr, cc, lo, hi, sx_c, col, col_ok, ACC: tl.constexpr):
    """x^2 at channels cc (0 outside each row's group lo..hi-1) x columns col."""
    ok = (cc >= lo) & (cc < hi)
    v = tl.load(x_ptr + (cc * sx_c)[:, None] + col[None, :], mask=ok[:, None] & col_ok[None, :],
                other=0.0).to(ACC)
    return v * v


@triton.jit
def lrn_scale(x_ptr, col, col_ok, c, lo, hi, sx_c, SIZE: tl.constexpr, k, alpha_over_size,
              ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """s = k + alpha/size * (windowed sum of squares) for channels c x columns col (offsets), the
    window cut at each channel's group bounds lo..hi-1 (see `channel_group`)."""
    acc = tl.zeros((BLOCK_C, BLOCK_S), dtype=ACC)
    for d in tl.static_range(SIZE):
        acc += squares(x_ptr, c + d - SIZE // 2, lo, hi, sx_c, col, col_ok, ACC)
    return k + alpha_over_size * acc


@triton.jit
def lrn_load_params(params_ptr):
    """(k, alpha / size, beta) from the parameter tensor made by `lrn_params`."""
    return tl.load(params_ptr), tl.load(params_ptr + 1), tl.load(params_ptr + 2)


@triton.jit
def pow_neg(s, beta):
    """s ** -beta for s > 0, as exp2(-beta * log2(s))."""
    return tl.exp2(-beta * tl.log2(s))


def lrn_params(k, alpha, beta, size, dtype, device):
    """[k, alpha/size, beta] as a tensor in the compute dtype of `dtype` (cached: launch.scalars)."""
    return scalars((k, alpha / size, beta), accumulator_dtype(dtype), device)
