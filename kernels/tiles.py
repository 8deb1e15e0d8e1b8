"""Triton helpers shared by several kernel files (each op's file imports these, never another
op's file): the accumulate-dot, the bias+ReLU epilogue, window inversion, channel tiles."""

import triton
import triton.language as tl


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
