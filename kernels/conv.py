"""2-D convolution as implicit GEMM, with bias and ReLU fused into the forward epilogue.

Forward, per group g (one GEMM each; AlexNet's towers are groups=2):

    y[m, oc] = sum_k  X[m, k] * Wt[k, oc]     m = (n, oh, ow),  k = (kh, kw, c),  oc in group g
    X[m, k]  = x[n, g*Cg + c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]   (0 outside the image)

X is never built in memory: each BLOCK_M x BLOCK_K tile of it is gathered from x straight into
registers (the "implicit" in implicit GEMM), with the zero padding done by the load mask. The
reduction is one flat loop over (tap, channel chunk), stepped by a counter (no division in the
loop), the tile's rows are output pixels at that tap (one bound check per row) and its
columns BLOCK_K consecutive channels. With channels_last input and OHWI weights (channels_last
weights: what the compiled net keeps) both tiles are contiguous along the reduction, so the loads
vectorize and Triton pipelines them (cp.async stages); any other strides work, slower. Where 64
does not divide the channels per group (AlexNet's conv2 towers and conv1's space-to-depth input:
48; 3-channel images) channel chunks would be partly padding, so the reduction runs over the
whole flattened (kh, kw, c) axis instead (FLAT_C).

Backward, from dy and the saved ReLU output y (dy is zeroed where y <= 0 inside the loads):
* input gradient, a gather GEMM over input pixels: dx[(n, ih, iw), c] = sum over (kh, kw, oc) of
  dy'[n, oc, oh, ow] * w[oc, c, kh, kw] where ih = oh*sh - ph + kh*dh; invalid (oh, ow) are masked.
  Every dx element is written by exactly one program: no atomics. One flat loop over (tap,
  output-channel chunk), as the forward's. With stride s, only 1/s^2 of the taps are valid for a
  given pixel, and the masked rest still costs MMA time (conv1, stride 4, is the case; training
  never needs conv1's input gradient).
* weight gradient, a GEMM whose reduction runs over all N*OH*OW output pixels: dw[oc, (c, kh, kw)]
  = sum_p dy'[p, oc] * X[p, (kh, kw, c)]. The pixel axis is split across programs (enough to
  fill the GPU), each writing its own partial sum; the last program of a tile to arrive (an int32
  counter, atomically incremented) adds them in split order: deterministic, no float atomics, and
  no second launch. On sm_90 a group of 96 or 192 output channels is one tile, the MMA computing
  it transposed (`weight_grad_tiling`). The bias gradient (sum_p dy'[p, oc]) is a second, lighter
  pass over dy' by the programs of the first column tile, after their weight tile is stored (so
  the main loop holds no bias registers), reduced the same way. The static model times the main
  loop only: those programs' second pass (about a third of a main-loop step per step) is not in
  its estimate.

The ReLU's derivative can leave both backward kernels (the compiler moves it where it can: pass
`defer_relu_grad`): the consumer of the conv's output zeroes the gradient it returns where its
input, the ReLU output, is <= 0 (MASK_INPUT here, and in the LRN and max-pool backwards), and
the conv's backward runs without the mask (APPLY_RELU off) and without saving its output. The
mask on dy cost the weight gradient a third of its main loop (the loads of y, compares and
selects between shared memory and the tensor cores: 354 -> 230 SASS instructions per step at
128x64x64 on sm_90) and the input gradient half of its (239 -> 113), and without it the
128 x 128 weight-gradient tile compiles without spills.
"""

import torch
import triton
import triton.language as tl

from .launch import (
    INTERPRETING,
    Cost,
    DotKernel,
    accumulator_dtype,
    arrival_counters,
    cdiv,
    config,
    empty,
    memory_format_of,
    nbytes,
    needs_int64,
    split_count,
    target_arch,
    with_strides_of,
)
from .geometry import out_size
from .tiles import (
    bias_relu_epilogue,
    dot_acc,
    last_arrival,
    split_range,
    sum_partials,
    window_source,
)

# GPU tile configs (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages) per dot class, autotuned per layer
# shape; the first of each list is offered everywhere (TRITONALEX_AUTOTUNE=0 runs it); the
# interpreter uses one large tile instead. `tritonalex kernels` compiles every one for sm_80 and
# sm_90 as the alexnet step's launches bind them, with Triton 3.6 and 3.9: these are the ones with
# no register spills and shared memory that fits. The large tiles (what makes conv2-5 tensor-core
# bound on Hopper) spill with Ampere's mma.sync, so they are offered on sm_90 only (archs=(90,));
# TF32's fp32 tiles need twice the registers and shared memory and keep the small list.
H = (90,)  # Hopper and later only
# (256 x 128 forward tiles need 16-channel runs to vectorize their gathers: on 3-channel images
# and zfnet's 12-channel space-to-depth input they spilled, hence ALIGNED_C.)
# REST_N launches (a group's 96 or 192 output channels, `narrow_part`) take BLOCK_N + REST_N
# columns: 64 + 32 or 128 + 64.
WHOLE = dict(REST_N=0)
FORWARD_CONFIGS = {
    "tensor_core": [config(128, 64, 32, 8, 3), config(64, 128, 64, 8, 3, when=WHOLE),
                    config(128, 128, 64, 8, 3, archs=H, when=WHOLE),
                    config(256, 64, 16, 8, 3, archs=H, when=WHOLE),
                    config(256, 64, 64, 8, 3, archs=H, when=WHOLE),
                    config(256, 128, 64, 8, 3, archs=H, when=dict(ALIGNED_C=True, **WHOLE)),
                    config(128, 64, 64, 8, 3, archs=H, when=dict(REST_N=32)),
                    config(256, 64, 64, 8, 3, archs=H, when=dict(REST_N=32, ALIGNED_C=True)),
                    config(128, 128, 64, 8, 3, archs=H, when=dict(REST_N=64)),
                    config(128, 128, 32, 8, 4, archs=H, when=dict(REST_N=64))],
    "tf32": [config(128, 64, 32, 8, 3), config(64, 128, 32, 8, 3), config(64, 64, 32, 8, 3)],
    "fma": [config(64, 32, 16, 4, 2), config(32, 32, 16, 4, 2)],
}
UNMASKED = dict(MASK_INPUT=False)  # the epilogue's ReLU mask on x makes these spill
ONE_TILE = dict(REST_N=0)  # the configs for one column tile (see conv2d_input_grad_kernel)
INPUT_GRAD_CONFIGS = {
    "tensor_core": [config(64, 64, 32, 8, 3), config(128, 64, 32, 8, 3, when=ONE_TILE),
                    config(128, 128, 64, 8, 3, archs=H, when=ONE_TILE),
                    config(128, 64, 64, 8, 3, archs=H, when=ONE_TILE),
                    config(256, 64, 64, 8, 3, archs=H, when=ONE_TILE),
                    # 32 + 16 columns (REST_N = 16: channel counts of 48s)
                    config(128, 32, 64, 8, 3, archs=H, when=dict(REST_N=16)),
                    config(256, 32, 64, 8, 3, archs=H, when=dict(REST_N=16)),
                    config(256, 32, 128, 8, 2, archs=H, when=dict(REST_N=16))],
    "tf32": [config(64, 64, 32, 8, 2), config(64, 32, 32, 4, 3, when=UNMASKED)],
    "fma": [config(32, 32, 16, 8, 2)],
}
# The 128 x 128 weight-gradient tile gathers x in 16-channel runs; with fewer channels per group
# (conv1 of a net on 3-channel images without space-to-depth) its loads do not vectorize and spill.
# Transposed tiles (sm_90, `weight_grad_tiling`): BLOCK_M output channels (+ REST_M) are the
# MMA's columns, BLOCK_N columns j its rows, 64 per warpgroup.
PLAIN = dict(TRANSPOSED=False)
WEIGHT_GRAD_CONFIGS = {
    "tensor_core": [config(64, 64, 32, 8, 3), config(128, 64, 64, 8, 3, archs=H, when=PLAIN),
                    config(128, 128, 64, 8, 3, archs=H, when=dict(ALIGNED_C=True, **PLAIN)),
                    config(128, 128, 128, 8, 3, archs=H, when=dict(ALIGNED_C=True, **PLAIN)),
                    # (No 4-warp tiles with a 32-row rest: on an H200 with Triton 3.6, conv1's
                    # 64 x 64 x 64 one made an illegal memory access that the interpreter,
                    # bounds-checked, does not; its 8-warp 64 x 64 x 32 ran. Triton issue 11366
                    # reports the like for 32-wide dots on 4 warps.)
                    config(64, 64, 64, 8, 3, archs=H, when=dict(REST_M=32)),
                    # 128 pixels a step: conv1's weight gradient 75 -> 63 us by the static model
                    # (issue-bound: the step's fixed instructions over twice the pixels).
                    config(64, 64, 128, 8, 3, archs=H, when=dict(REST_M=32)),
                    config(128, 64, 64, 4, 3, archs=H, when=dict(REST_M=64))],
    "tf32": [config(64, 64, 32, 8, 3)],
    # 4 warps: on 8, fp64's conv1 and conv2 spilled 12 bytes (one 64-bit value) once the pixel
    # tiles were stepped by a counter; 16 rows: with 32, fp64 spilled 12 bytes on sm_90 once the
    # pixels were flattened (`step_pixels`), and fp32 8 with one stage instead of two.
    "fma": [config(16, 32, 16, 4, 2)],
}

_SHAPE_KEY = ["C_PER_GROUP", "OC_PER_GROUP", "H", "W", "OH", "OW", "KH", "KW"]


@triton.jit
def conv2d_forward_kernel(
    x_ptr,  # input [N, C, H, W], any strides
    w_ptr,  # weight [OC, C_PER_GROUP, KH, KW], any strides
    b_ptr,  # bias [OC] (not read when HAS_BIAS is False)
    y_ptr,  # output [N, OC, OH, OW], any strides
    M,  # GEMM rows: N * OH * OW output pixels
    H, W, OH, OW,  # input and output spatial sizes
    C_PER_GROUP: tl.constexpr, OC_PER_GROUP: tl.constexpr,  # channels of one group, input and
    # output (constants: no masks on the channels where the tiles divide them)
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,  # convolution geometry (pad = top/left)
    sx_n, sx_c, sx_h, sx_w,  # input strides, in elements
    sw_o, sw_c, sw_h, sw_w,  # weight strides
    sy_n, sy_c, sy_h, sy_w,  # output strides
    KH: tl.constexpr, KW: tl.constexpr,  # kernel size (compile-time loop bounds)
    HAS_BIAS: tl.constexpr,  # add bias[oc] in the epilogue
    APPLY_RELU: tl.constexpr,  # apply ReLU in the epilogue
    ACC: tl.constexpr,  # accumulator dtype: fp32, or fp64 for fp64 inputs
    PRECISION: tl.constexpr,  # tl.dot input precision for fp32 inputs: "ieee" or "tf32"
    DOT_FP32: tl.constexpr,  # upcast tiles before tl.dot (bf16 under the interpreter)
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    FLAT_C: tl.constexpr,  # 0, or C_PER_GROUP: reduce over the flattened (kh, kw, c) axis
    ALL_TAPS: tl.constexpr,  # every tap of every output pixel lies in the image: no bound checks
    ALIGNED_C: tl.constexpr,  # C_PER_GROUP % 16 == 0 (selects configs only: see the config lists)
    FLAT_Y: tl.constexpr,  # y holds pixel m = (n, oh, ow) at m * sy_w (NHWC, dense pixels)
    REST_N: tl.constexpr,  # 0, or a second block of REST_N output channels after the BLOCK_N
    # (96 = 64 + 32, 192 = 128 + 64: `narrow_part`)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # tile sizes
):
    g = tl.program_id(2)
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    if INDEX_64:
        g = g.to(tl.int64)
        m = m.to(tl.int64)
    # Rows: output pixels. Decompose once; the K-loop only adds per-tap offsets to these.
    ow = m % OW
    oh = (m // OW) % OH
    n = m // (OW * OH)
    m_ok = m < M
    ih0 = oh * stride_h - pad_h
    iw0 = ow * stride_w - pad_w
    x_row = n * sx_n + ih0 * sx_h + iw0 * sx_w + g * C_PER_GROUP * sx_c
    # Columns: output channels of group g, BLOCK_N + REST_N per program: a group of 96 or 192
    # channels is one tile without padding columns (two MMAs on one A tile).
    oc0 = g * OC_PER_GROUP + tl.program_id(1) * (BLOCK_N + REST_N)
    oc = oc0 + tl.arange(0, BLOCK_N)
    WHOLE_OC: tl.constexpr = OC_PER_GROUP % (BLOCK_N + REST_N) == 0
    oc_ok = within(oc - g * OC_PER_GROUP, OC_PER_GROUP, WHOLE_OC)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC)
    if REST_N > 0:
        oc_rest = oc0 + BLOCK_N + tl.arange(0, REST_N)
        oc_rest_ok = within(oc_rest - g * OC_PER_GROUP, OC_PER_GROUP, WHOLE_OC)
        acc_rest = tl.zeros((BLOCK_M, REST_N), dtype=ACC)
    if FLAT_C:
        # Channel counts that a BLOCK_K chunk would pad (AlexNet's conv2: 48 per tower; conv1's
        # space-to-depth input: 48; 3-channel images): the reduction runs over the whole
        # flattened (kh, kw, c) axis in BLOCK_K steps, a step spanning taps rather than padding
        # 48 channels to 64. FLAT_C is the channel count as a constant, so a column's tap and
        # channel are divisions by constants and each run of channels is provably contiguous
        # (16 of them for 48 channels: the loads still vectorize, mask and address computed once
        # per vector).
        KK: tl.constexpr = KH * KW * FLAT_C
        for j0 in range(0, KK, BLOCK_K):
            j = j0 + tl.arange(0, BLOCK_K)
            j_ok = j < KK
            tap = j // FLAT_C
            c = j % FLAT_C
            kh = tap // KW
            kw = tap % KW
            # A tile: the im2col matrix, gathered; out-of-image taps read the zero padding.
            a_mask = m_ok[:, None] & j_ok[None, :]
            if not ALL_TAPS:
                ih = ih0[:, None] + (kh * dil_h)[None, :]
                iw = iw0[:, None] + (kw * dil_w)[None, :]
                a_mask &= (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a = tl.load(x_ptr + x_row[:, None] + (c * sx_c + kh * dil_h * sx_h
                                                  + kw * dil_w * sx_w)[None, :],
                        mask=a_mask, other=0.0)
            # B tile: the weights of those columns (OHWI weights: the column index itself).
            w_row = c * sw_c + kh * sw_h + kw * sw_w
            b = weight_tile(w_ptr, w_row, j_ok, oc, oc_ok, sw_o)
            acc = dot_acc(a, b, acc, PRECISION, DOT_FP32, ACC)
            if REST_N > 0:
                b = weight_tile(w_ptr, w_row, j_ok, oc_rest, oc_rest_ok, sw_o)
                acc_rest = dot_acc(a, b, acc_rest, PRECISION, DOT_FP32, ACC)
    else:
        # One flat loop over (tap, channel chunk), its (kh, kw, chunk) stepped by a counter with
        # carries (a runtime division per step was a tenth of the loop's instructions): the loop
        # the pipeliner turns into cp.async stages. A tile's rows are output pixels at one tap,
        # its columns a run of channels: with channels_last input (sx_c == 1, specialized by
        # Triton's binder) and channels_last weights (OHWI in memory, sw_c == 1) both tiles are
        # contiguous along the reduction.
        chunks = tl.cdiv(C_PER_GROUP, BLOCK_K)
        kh = tl.full((), 0, tl.int32)
        kw = tl.full((), 0, tl.int32)
        chunk = tl.full((), 0, tl.int32)
        for _ in range(0, KH * KW * chunks):
            c = chunk * BLOCK_K + tl.arange(0, BLOCK_K)
            c_ok = within(c, C_PER_GROUP, C_PER_GROUP % BLOCK_K == 0)
            ih = ih0 + kh * dil_h
            iw = iw0 + kw * dil_w
            row_ok = m_ok if ALL_TAPS else m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a = tl.load(x_ptr + (x_row + kh * dil_h * sx_h + kw * dil_w * sx_w)[:, None]
                        + (c * sx_c)[None, :], mask=row_ok[:, None] & c_ok[None, :], other=0.0)
            w_row = c * sw_c + kh * sw_h + kw * sw_w
            b = weight_tile(w_ptr, w_row, c_ok, oc, oc_ok, sw_o)
            acc = dot_acc(a, b, acc, PRECISION, DOT_FP32, ACC)
            if REST_N > 0:
                b = weight_tile(w_ptr, w_row, c_ok, oc_rest, oc_rest_ok, sw_o)
                acc_rest = dot_acc(a, b, acc_rest, PRECISION, DOT_FP32, ACC)
            chunk, kw, kh = count_on(chunk, kw, kh, chunks, KW)

    # Write back (each column block). FLAT_Y: the row offsets without (n, oh, ow), which in the
    # store's layout would be divided out of m again (a fifth of conv1's instructions).
    y_row = m * sy_w if FLAT_Y else n * sy_n + oh * sy_h + ow * sy_w
    forward_store(acc, b_ptr, y_ptr, y_row, m_ok, oc, oc_ok, sy_c, HAS_BIAS, APPLY_RELU, ACC)
    if REST_N > 0:
        forward_store(acc_rest, b_ptr, y_ptr, y_row, m_ok, oc_rest, oc_rest_ok, sy_c, HAS_BIAS,
                      APPLY_RELU, ACC)


@triton.jit
def weight_tile(w_ptr, w_row, k_ok, oc, oc_ok, sw_o):
    """The forward's B tile: weights at reduction offsets w_row (kh, kw, c) x output channels oc."""
    return tl.load(w_ptr + w_row[:, None] + (oc * sw_o)[None, :], mask=k_ok[:, None] & oc_ok[None, :],
                   other=0.0)


@triton.jit
def forward_store(acc, b_ptr, y_ptr, y_row, m_ok, oc, oc_ok, sy_c, HAS_BIAS: tl.constexpr,
                  APPLY_RELU: tl.constexpr, ACC: tl.constexpr):
    """y[rows y_row, channels oc] = relu?(acc + bias), rounded once to y's dtype."""
    acc = bias_relu_epilogue(acc, b_ptr, oc, oc_ok, HAS_BIAS, APPLY_RELU, ACC)
    y_off = y_row[:, None] + (oc * sy_c)[None, :]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & oc_ok[None, :])


@triton.jit
def conv2d_input_grad_kernel(
    dy_ptr,  # output gradient [N, OC, OH, OW], any strides
    y_ptr,  # saved forward output [N, OC, OH, OW] (read only when APPLY_RELU)
    w_ptr,  # weight [OC, C_PER_GROUP, KH, KW], any strides
    x_ptr,  # forward input with dx's strides (read only when MASK_INPUT)
    dx_ptr,  # input gradient [N, C, H, W], any strides
    M,  # GEMM rows: N * H * W input pixels
    H, W, OH, OW,  # input and output spatial sizes
    C_PER_GROUP: tl.constexpr, OC_PER_GROUP: tl.constexpr,  # channels of one group, input and
    # output (constants: no masks on the channels where the tiles divide them)
    pad_h, pad_w, dil_h, dil_w,  # convolution geometry (pad = top/left)
    sdy_n, sdy_c, sdy_h, sdy_w,  # output-gradient strides
    sy_n, sy_c, sy_h, sy_w,  # saved-output strides
    sw_o, sw_c, sw_h, sw_w,  # weight strides
    sdx_n, sdx_c, sdx_h, sdx_w,  # input-gradient strides
    STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr,  # constants: the window inversion's // and %
    KH: tl.constexpr, KW: tl.constexpr,  # kernel size
    APPLY_RELU: tl.constexpr,  # the forward fused a ReLU: zero dy where y <= 0
    MASK_INPUT: tl.constexpr,  # x is a ReLU's output: zero dx where x <= 0 (its deferred derivative)
    ACC: tl.constexpr,  # accumulator dtype
    PRECISION: tl.constexpr,  # tl.dot input precision for fp32
    DOT_FP32: tl.constexpr,  # upcast tiles before tl.dot
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    REST_N: tl.constexpr,  # 0, or a second column tile of REST_N after the BLOCK_N (48 = 32 + 16)
    FLAT_DX: tl.constexpr,  # dx (and x) hold pixel m = (n, ih, iw) at m * sdx_w (NHWC, dense)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # tile sizes
):
    g = tl.program_id(2)
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    if INDEX_64:
        g = g.to(tl.int64)
        m = m.to(tl.int64)
    # Rows: input pixels (n, ih, iw).
    iw = m % W
    ih = (m // W) % H
    n = m // (W * H)
    m_ok = m < M
    # Columns: input channels of group g, BLOCK_N + REST_N per program: channel counts no power
    # of two fits (48: 32 + 16, two MMAs on one A tile) take no padding columns.
    c = tl.program_id(1) * (BLOCK_N + REST_N) + tl.arange(0, BLOCK_N)
    WHOLE_C: tl.constexpr = C_PER_GROUP % (BLOCK_N + REST_N) == 0
    c_ok = within(c, C_PER_GROUP, WHOLE_C)
    if REST_N > 0:
        c_rest = tl.program_id(1) * (BLOCK_N + REST_N) + BLOCK_N + tl.arange(0, REST_N)
        c_rest_ok = within(c_rest, C_PER_GROUP, WHOLE_C)
        acc_rest = tl.zeros((BLOCK_M, REST_N), dtype=ACC)

    # Reduction: one flat loop over (tap, output-channel chunk), its (kh, kw, chunk) stepped by
    # a counter with carries, as the forward's: the loop the pipeliner turns into cp.async
    # stages across taps (with the chunks in a loop of their own inside loops over kh and kw,
    # conv2's one chunk per tap restarted the pipeline at every tap, and each tap's setup ran
    # outside the main loop, where the static model did not count it per tap). For a fixed tap,
    # input pixel (ih, iw) receives from at most one output pixel: the one with
    # oh*sh = ih + ph - kh*dh (a non-negative multiple of the stride, below OH*sh); rows without
    # one are masked, so each tap costs a vector of bounds checks, not a tile.
    # UNIT_STRIDE (stride 1, at most 32 taps: conv2-5): a row's valid taps are a bit mask made
    # before the loop, and its dy row at a tap is its row at tap (0, 0) minus the tap's offset
    # (a scalar), so a trip costs a shift and a test per row instead of the window inversion.
    UNIT_STRIDE: tl.constexpr = STRIDE_H == 1 and STRIDE_W == 1 and KH * KW <= 32
    if UNIT_STRIDE:
        # Tap kh*KW + kw is valid iff its row kh and its column kw are: the rows' bits sit at
        # kh*KW and the columns' below KW, so their product is the mask (KH + KW tests per row,
        # not KH * KW).
        rows = tl.zeros((BLOCK_M,), dtype=tl.int32)
        for kh in tl.static_range(KH):
            th = ih + pad_h - kh * dil_h
            rows |= ((th >= 0) & (th < OH)).to(tl.int32) << (kh * KW)
        cols = tl.zeros((BLOCK_M,), dtype=tl.int32)
        for kw in tl.static_range(KW):
            tw = iw + pad_w - kw * dil_w
            cols |= ((tw >= 0) & (tw < OW)).to(tl.int32) << kw
        valid_taps = tl.where(m_ok, rows * cols, 0)
        dy_row0 = n * sdy_n + (ih + pad_h) * sdy_h + (iw + pad_w) * sdy_w
        y_row0 = n * sy_n + (ih + pad_h) * sy_h + (iw + pad_w) * sy_w
    chunks = tl.cdiv(OC_PER_GROUP, BLOCK_K)
    kh = tl.full((), 0, tl.int32)
    kw = tl.full((), 0, tl.int32)
    chunk = tl.full((), 0, tl.int32)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC)
    ONE_CHUNK: tl.constexpr = OC_PER_GROUP <= BLOCK_K  # (chunk is always 0)
    for _ in range(0, KH * KW * chunks):
        if ONE_CHUNK:
            k = tl.arange(0, BLOCK_K)
        else:
            k = chunk * BLOCK_K + tl.arange(0, BLOCK_K)
        k_ok = within(k, OC_PER_GROUP, OC_PER_GROUP % BLOCK_K == 0)
        oc = g * OC_PER_GROUP + k
        if UNIT_STRIDE:
            row_ok = (valid_taps & (1 << (kh * KW + kw))) != 0  # (one LOP3 a row)
            # The tap's offset moves the (scalar) base, not every row: with one chunk a row's
            # offsets are the same every trip, kept in registers.
            dy_at = dy_ptr - (kh * dil_h * sdy_h + kw * dil_w * sdy_w)
            y_at = y_ptr - (kh * dil_h * sy_h + kw * dil_w * sy_w)
            dy_off = dy_row0[:, None] + (oc * sdy_c)[None, :]
            y_off = y_row0[:, None] + (oc * sy_c)[None, :]
        else:
            oh, h_ok = window_source(ih, pad_h, kh, dil_h, STRIDE_H, OH, m_ok)
            ow, row_ok = window_source(iw, pad_w, kw, dil_w, STRIDE_W, OW, h_ok)
            dy_at, y_at = dy_ptr, y_ptr
            dy_off = (n * sdy_n + oh * sdy_h + ow * sdy_w)[:, None] + (oc * sdy_c)[None, :]
            y_off = (n * sy_n + oh * sy_h + ow * sy_w)[:, None] + (oc * sy_c)[None, :]
        a_mask = row_ok[:, None] & k_ok[None, :]
        dy = tl.load(dy_at + dy_off, mask=a_mask, other=0.0)
        if APPLY_RELU:
            y = tl.load(y_at + y_off, mask=a_mask, other=0.0)
            dy = tl.where(y > 0, dy, 0.0)
        w_row = oc * sw_o + kh * sw_h + kw * sw_w
        wt = tl.load(w_ptr + w_row[:, None] + (c * sw_c)[None, :],
                     mask=k_ok[:, None] & c_ok[None, :], other=0.0)
        acc = dot_acc(dy, wt, acc, PRECISION, DOT_FP32, ACC)
        if REST_N > 0:
            wt = tl.load(w_ptr + w_row[:, None] + (c_rest * sw_c)[None, :],
                         mask=k_ok[:, None] & c_rest_ok[None, :], other=0.0)
            acc_rest = dot_acc(dy, wt, acc_rest, PRECISION, DOT_FP32, ACC)
        chunk, kw, kh = count_on(chunk, kw, kh, chunks, KW)

    # Write back (each column tile).
    dx_row = m * sdx_w if FLAT_DX else n * sdx_n + ih * sdx_h + iw * sdx_w
    input_grad_store(acc, x_ptr, dx_ptr, dx_row, m_ok, g * C_PER_GROUP + c, c_ok, sdx_c,
                     MASK_INPUT)
    if REST_N > 0:
        input_grad_store(acc_rest, x_ptr, dx_ptr, dx_row, m_ok, g * C_PER_GROUP + c_rest,
                         c_rest_ok, sdx_c, MASK_INPUT)


@triton.jit
def input_grad_store(acc, x_ptr, dx_ptr, dx_row, m_ok, c_g, c_ok, sdx_c, MASK_INPUT: tl.constexpr):
    """dx[rows dx_row, channels c_g] = acc, zero where x <= 0 when MASK_INPUT."""
    dx_off = dx_row[:, None] + (c_g * sdx_c)[None, :]
    dx_mask = m_ok[:, None] & c_ok[None, :]
    if MASK_INPUT:  # the derivative of the ReLU that produced x, deferred to here by its conv
        x = tl.load(x_ptr + dx_off, mask=dx_mask, other=0.0)
        acc = tl.where(x > 0, acc, 0.0)
    tl.store(dx_ptr + dx_off, acc.to(dx_ptr.dtype.element_ty), mask=dx_mask)


@triton.jit
def conv2d_weight_grad_kernel(
    dy_ptr,  # output gradient [N, OC, OH, OW], any strides
    y_ptr,  # saved forward output (read only when APPLY_RELU)
    x_ptr,  # forward input [N, C, H, W], any strides
    dw_ptr,  # weight gradient [OC, C_PER_GROUP, KH, KW], the weight's dtype and layout
    db_ptr,  # bias gradient [OC]
    part_w_ptr,  # weight-gradient partials [SPLITS, OC, C_PER_GROUP*KH*KW], contiguous, ACC dtype
    part_b_ptr,  # bias-gradient partials [SPLITS, OC], contiguous, ACC dtype
    count_ptr,  # int32 arrival counter per output tile: zero before the launch and after it
    N,  # images: the reduction runs over N * OH * OW output pixels
    SPLITS,  # programs sharing the reduction of one output tile (each a share of its BLOCK_K-pixel steps)
    GROUPS, OC,  # number of groups, total output channels
    H, W, OH, OW,  # input and output spatial sizes
    C_PER_GROUP,  # input channels of one group
    OC_PER_GROUP: tl.constexpr,  # output channels of one group (a constant: no mask on the rows
    # where the tiles divide it)
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,  # convolution geometry (pad = top/left)
    KH0, KW0,  # the weight's own kernel size (read only with S2D)
    sdy_n, sdy_c, sdy_h, sdy_w,  # output-gradient strides
    sy_n, sy_c, sy_h, sy_w,  # saved-output strides
    sx_n, sx_c, sx_h, sx_w,  # input strides
    KH: tl.constexpr, KW: tl.constexpr,  # kernel size
    S2D: tl.constexpr,  # 0, or s: x is a space-to-depth input and dw is written as the weight of
    # the strided conv it came from (KH0 x KW0 taps, S2D_C = C_PER_GROUP / s^2 channels; needs
    # ALL_TAPS)
    S2D_C: tl.constexpr,
    DW_OHWI: tl.constexpr,  # write dw laid out OHWI (channels_last weights), else OIHW (contiguous)
    ALIGNED_C: tl.constexpr,  # C_PER_GROUP % 16 == 0 (selects configs only: see the config lists)
    FLAT_DY: tl.constexpr,  # dy (and y) hold pixel (n, oh, ow) at ((n*OH + oh)*OW + ow) * sdy_w
    ALL_TAPS: tl.constexpr,  # every tap of every output pixel lies in the image (no padding read):
    # the columns run over all of (kh, kw, c) and need no bound on ih, iw
    WHOLE_STEPS: tl.constexpr,  # 128 divides N * OH * OW: every BLOCK_K-pixel step is whole
    # (no mask on the pixels; AlexNet's at batch 128)
    TRANSPOSED: tl.constexpr,  # the MMA computes the tile transposed: its rows are the columns j,
    # its columns the output channels (see `weight_grad_tiling`)
    REST_M: tl.constexpr,  # 0, or a second block of REST_M output channels after the BLOCK_M
    # (96 = 64 + 32, 192 = 128 + 64; needs TRANSPOSED: they are the MMA's narrow side)
    APPLY_RELU: tl.constexpr,  # the forward fused a ReLU: zero dy where y <= 0
    COMPUTE_WEIGHT: tl.constexpr,  # write the weight gradient
    COMPUTE_BIAS: tl.constexpr,  # write the bias gradient (programs with pid 1 == 0)
    ACC: tl.constexpr,  # accumulator dtype
    PRECISION: tl.constexpr,  # tl.dot input precision for fp32
    DOT_FP32: tl.constexpr,  # upcast tiles before tl.dot
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # tile sizes
):
    tl.static_assert(REST_M == 0 or TRANSPOSED, "REST_M rows are the MMA's columns (TRANSPOSED)")
    split = tl.program_id(2) // GROUPS
    g = tl.program_id(2) % GROUPS
    if INDEX_64:
        g = g.to(tl.int64)
        split = split.to(tl.int64)
    # Rows: output channels of group g, BLOCK_M + REST_M per program: a group of 96 or 192
    # channels is one tile without padding rows (two MMAs on one tile of x).
    oc0 = g * OC_PER_GROUP + tl.program_id(0) * (BLOCK_M + REST_M)
    oc = oc0 + tl.arange(0, BLOCK_M)
    WHOLE_OC: tl.constexpr = OC_PER_GROUP % (BLOCK_M + REST_M) == 0
    oc_ok = within(oc - g * OC_PER_GROUP, OC_PER_GROUP, WHOLE_OC)
    if REST_M > 0:
        oc_rest = oc0 + BLOCK_M + tl.arange(0, REST_M)
        oc_rest_ok = within(oc_rest - g * OC_PER_GROUP, OC_PER_GROUP, WHOLE_OC)
    # Columns: one tap row kh per program, and a BLOCK_N chunk of its flattened (kw, c) axis
    # (per-tap columns were tried: as many instructions per step, and 48-channel groups pad a
    # 128-wide tile to 2.7x the work). ALL_TAPS: a chunk of the whole flattened (kh, kw, c) axis
    # (conv1 after space-to-depth: 3 x 144 columns are 7 tiles of 64, not 3 x 3; its taps never
    # leave the image, so the rows need no bound on ih and a column's kh costs nothing).
    KWC = KW * C_PER_GROUP
    CKK = C_PER_GROUP * KH * KW
    if ALL_TAPS:
        kh = 0
        j = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # the (kh, kw, c) column
        j_ok = j < CKK
        kw = j // C_PER_GROUP  # the flat tap kh * KW + kw, taken apart below
        c = j % C_PER_GROUP
        x_col = ((g * C_PER_GROUP + c) * sx_c + (kw // KW) * dil_h * sx_h
                 + (kw % KW) * dil_w * sx_w)
    else:
        col_tiles = tl.cdiv(KWC, BLOCK_N)
        kh = tl.program_id(1) // col_tiles
        j = (tl.program_id(1) % col_tiles) * BLOCK_N + tl.arange(0, BLOCK_N)
        j_ok = j < KWC
        c = j % C_PER_GROUP
        kw = j // C_PER_GROUP
        x_col = (g * C_PER_GROUP + c) * sx_c + kh * dil_h * sx_h + kw * dil_w * sx_w

    # The reduction runs over the N * OH * OW output pixels flattened, BLOCK_K per step, so a
    # step's tile is full whatever the output size (13 x 13 in 16 x 16 tiles left a third of
    # conv3-5's MMA work on padding). Each row's (n, oh, ow) is divided out once, before the loop;
    # the loop steps it by BLOCK_K pixels with two carries (`step_pixels`), no division.
    P = N * OH * OW
    p_start, p_end = split_range(split, P, BLOCK_K, SPLITS)
    step_n, step_h, step_w = pixel_step(BLOCK_K, OH, OW)
    if TRANSPOSED:  # dw^T = X^T dy': the columns j are the MMA's rows (a multiple of 64 on sm_90)
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=ACC)
        if REST_M > 0:
            acc_rest = tl.zeros((BLOCK_N, REST_M), dtype=ACC)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC)
    if COMPUTE_WEIGHT:
        pix = p_start + tl.arange(0, BLOCK_K)
        n, oh, ow = first_pixels(pix, OH, OW)
        for _ in range(p_start, p_end, BLOCK_K):
            p_ok = within(n, N, WHOLE_STEPS)
            if FLAT_DY:  # dy's pixel offsets are pix * sdy_w: nothing to take apart
                dy_pix = pix * sdy_w
                y_pix = pix * sy_w
                pix += BLOCK_K
            else:
                dy_pix = n * sdy_n + oh * sdy_h + ow * sdy_w
                y_pix = n * sy_n + oh * sy_h + ow * sy_w
            dz = output_grad_tile(dy_ptr, y_ptr, oc, dy_pix, y_pix, oc_ok, p_ok, sdy_c, sy_c,
                                  APPLY_RELU)
            # B tile: the im2col matrix transposed, gathered from x; the bound on ih is per row.
            iw0 = ow * stride_w - pad_w
            if ALL_TAPS:
                x_mask = p_ok[:, None] & j_ok[None, :]
            else:
                ih = oh * stride_h - pad_h + kh * dil_h
                iw = iw0[:, None] + (kw * dil_w)[None, :]
                x_mask = ((p_ok & (ih >= 0) & (ih < H))[:, None] & j_ok[None, :] & (iw >= 0)
                          & (iw < W))
            x_row = n * sx_n + (oh * stride_h - pad_h) * sx_h + iw0 * sx_w
            xt = tl.load(x_ptr + x_row[:, None] + x_col[None, :], mask=x_mask, other=0.0)
            if TRANSPOSED:
                acc = dot_acc(tl.trans(xt), tl.trans(dz), acc, PRECISION, DOT_FP32, ACC)
                if REST_M > 0:
                    dz = output_grad_tile(dy_ptr, y_ptr, oc_rest, dy_pix, y_pix, oc_rest_ok, p_ok,
                                          sdy_c, sy_c, APPLY_RELU)
                    acc_rest = dot_acc(tl.trans(xt), tl.trans(dz), acc_rest, PRECISION, DOT_FP32,
                                       ACC)
            else:
                acc = dot_acc(dz, xt, acc, PRECISION, DOT_FP32, ACC)
            n, oh, ow = step_pixels(n, oh, ow, step_n, step_h, step_w, OH, OW)

    # Write back in the weight's layout (OHWI, channels_last, in the compiled net; or OIHW). One
    # split: the result. Several: each program writes its partial sums, and the last of a tile's
    # SPLITS programs to arrive adds them all, in split order (deterministic, no float atomics).
    # Partials are laid out as the GEMM's columns. With S2D the result goes to the original
    # weight: each column (kh, kw, c) of the space-to-depth weight to its tap, c = (i*s + j)*C0 +
    # c0 being channel c0 at (s*kh + i, s*kw + j), the taps padding KH0 x KW0 to whole blocks
    # dropped (no torch copies of the gradient after the launch). That mapping is made only
    # where the result is stored, by the last arrival, even for one split (with the accumulator
    # or the partials' offsets still live it spilled): an S2D launch always writes partials.
    if COMPUTE_WEIGHT:
        if TRANSPOSED:
            acc = tl.trans(acc)
        store_weight_grad_rows(acc, dw_ptr, part_w_ptr, split, oc, oc_ok, c, kw, kh, j, j_ok,
                               OC, CKK, KWC, KH, KW, SPLITS, S2D, DW_OHWI)
        if REST_M > 0:
            store_weight_grad_rows(tl.trans(acc_rest), dw_ptr, part_w_ptr, split, oc_rest,
                                   oc_rest_ok, c, kw, kh, j, j_ok, OC, CKK, KWC, KH, KW, SPLITS,
                                   S2D, DW_OHWI)

    # The bias gradient, by the programs of the first column tile only, in a second pass over
    # their pixels once the accumulator is stored: summing it in the main loop held a
    # BLOCK_M x BLOCK_K tile of registers through it and cost every program its additions (the
    # second pass re-reads dy, for 1 program in KH*ceil(KW*C/BLOCK_N)).
    if COMPUTE_BIAS:
        if tl.program_id(1) == 0:
            bias_grad_rows(dy_ptr, y_ptr, db_ptr, part_b_ptr, split, oc, oc_ok, p_start, p_end, N,
                           OC, OH, OW, step_n, step_h, step_w, sdy_n, sdy_c, sdy_h, sdy_w, sy_n,
                           sy_c, sy_h, sy_w, SPLITS, APPLY_RELU, ACC, BLOCK_M, BLOCK_K)
            if REST_M > 0:
                bias_grad_rows(dy_ptr, y_ptr, db_ptr, part_b_ptr, split, oc_rest, oc_rest_ok,
                               p_start, p_end, N, OC, OH, OW, step_n, step_h, step_w, sdy_n,
                               sdy_c, sdy_h, sdy_w, sy_n, sy_c, sy_h, sy_w, SPLITS, APPLY_RELU,
                               ACC, REST_M, BLOCK_K)

    if SPLITS > 1 or S2D:
        # The last of the tile's programs to arrive sums the partials (its loads .cg: from L2,
        # where the other SMs' stores are).
        tile = (g * tl.num_programs(0) + tl.program_id(0)) * tl.num_programs(1) + tl.program_id(1)
        if last_arrival(count_ptr, tile, SPLITS):
            if COMPUTE_WEIGHT:
                # S2D: in halves of the rows for 128-row tiles (the mapped offsets beside a
                # whole-tile sum spilled with Triton 3.6)
                HALVES: tl.constexpr = 2 if S2D and BLOCK_M >= 128 else 1
                for half in tl.static_range(HALVES):
                    rows = oc0 + half * (BLOCK_M // HALVES) + tl.arange(0, BLOCK_M // HALVES)
                    rows_ok = rows < (g + 1) * OC_PER_GROUP
                    sum_weight_grad_rows(dw_ptr, part_w_ptr, rows, rows_ok,
                                         c, kw, kh, j, j_ok, OC, CKK, KWC, KH, KW, S2D_C, KH0,
                                         KW0, SPLITS, S2D, DW_OHWI, ACC)
                if REST_M > 0:
                    sum_weight_grad_rows(dw_ptr, part_w_ptr, oc_rest, oc_rest_ok, c, kw, kh, j,
                                         j_ok, OC, CKK, KWC, KH, KW, S2D_C, KH0, KW0, SPLITS, S2D,
                                         DW_OHWI, ACC)
            if COMPUTE_BIAS and SPLITS > 1:  # (one split stored it above)
                if tl.program_id(1) == 0:
                    sum_bias_partials(db_ptr, part_b_ptr, oc, oc_ok, OC, SPLITS, ACC)
                    if REST_M > 0:
                        sum_bias_partials(db_ptr, part_b_ptr, oc_rest, oc_rest_ok, OC, SPLITS, ACC)
            tl.store(count_ptr + tile, 0)  # zero again for the next launch (stream-ordered)


@triton.jit
def store_weight_grad_rows(acc, dw_ptr, part_w_ptr, split, rows, rows_ok, c, kw, kh, j, j_ok, OC,
                           CKK, KWC, KH: tl.constexpr, KW: tl.constexpr, SPLITS,
                           S2D: tl.constexpr, DW_OHWI: tl.constexpr):
    """A program's weight-gradient tile for output channels `rows`: the result (one split, no
    space-to-depth) or its split's partial sums, laid out as the GEMM's columns."""
    part_off, w_mask = weight_grad_offsets(rows, rows_ok, c, kw, kh, j, j_ok, CKK, KWC, KH, KW, 0,
                                           0, 0, 0, DW_OHWI or S2D)
    if SPLITS == 1 and not S2D:
        tl.store(dw_ptr + part_off, acc.to(dw_ptr.dtype.element_ty), mask=w_mask)
    else:
        tl.store(part_w_ptr + split * OC * CKK + part_off, acc, mask=w_mask)


@triton.jit
def sum_weight_grad_rows(dw_ptr, part_w_ptr, rows, rows_ok, c, kw, kh, j, j_ok, OC, CKK, KWC,
                         KH: tl.constexpr, KW: tl.constexpr, S2D_C: tl.constexpr, KH0, KW0,
                         SPLITS, S2D: tl.constexpr, DW_OHWI: tl.constexpr, ACC: tl.constexpr):
    """The last arrival's sum of a tile's partials for output channels `rows`, stored as dw (with
    S2D: mapped to the original weight's taps)."""
    part_off, part_mask = weight_grad_offsets(rows, rows_ok, c, kw, kh, j, j_ok, CKK, KWC, KH, KW,
                                              S2D_C, KH0, KW0, 0, DW_OHWI or S2D)
    total = sum_partials(part_w_ptr, part_off, part_mask, OC * CKK, SPLITS, ACC)
    if S2D:
        dw_off, dw_mask = weight_grad_offsets(rows, rows_ok, c, kw, kh, j, j_ok, CKK, KWC, KH, KW,
                                              S2D_C, KH0, KW0, S2D, DW_OHWI)
        tl.store(dw_ptr + dw_off, total.to(dw_ptr.dtype.element_ty), mask=dw_mask)
    else:
        tl.store(dw_ptr + part_off, total.to(dw_ptr.dtype.element_ty), mask=part_mask)


@triton.jit
def bias_grad_rows(dy_ptr, y_ptr, db_ptr, part_b_ptr, split, rows, rows_ok, p_start, p_end, N, OC,
                   OH, OW, step_n, step_h, step_w, sdy_n, sdy_c, sdy_h, sdy_w, sy_n, sy_c, sy_h,
                   sy_w, SPLITS, APPLY_RELU: tl.constexpr, ACC: tl.constexpr,
                   ROWS: tl.constexpr, BLOCK_K: tl.constexpr):
    """The bias gradient of output channels `rows` over this split's pixels (sum of dy'), stored
    as the result (one split) or the split's partial."""
    bias_acc = tl.zeros((ROWS, BLOCK_K), dtype=ACC)  # reduced once, after the loop
    n, oh, ow = first_pixels(p_start + tl.arange(0, BLOCK_K), OH, OW)
    for _ in range(p_start, p_end, BLOCK_K):
        bias_acc += output_grad_tile(dy_ptr, y_ptr, rows, n * sdy_n + oh * sdy_h + ow * sdy_w,
                                     n * sy_n + oh * sy_h + ow * sy_w, rows_ok, n < N, sdy_c, sy_c,
                                     APPLY_RELU).to(ACC)
        n, oh, ow = step_pixels(n, oh, ow, step_n, step_h, step_w, OH, OW)
    bias = tl.sum(bias_acc, axis=1)
    if SPLITS == 1:
        tl.store(db_ptr + rows, bias.to(db_ptr.dtype.element_ty), mask=rows_ok)
    else:
        tl.store(part_b_ptr + split * OC + rows, bias, mask=rows_ok)


@triton.jit
def sum_bias_partials(db_ptr, part_b_ptr, rows, mask, OC, SPLITS, ACC: tl.constexpr):
    """The last arrival's sum of the bias partials of output channels `rows`, in split order."""
    total = tl.zeros(rows.shape, dtype=ACC)
    for s in range(SPLITS):
        total += tl.load(part_b_ptr + s * OC + rows, mask=mask, other=0.0, cache_modifier=".cg")
    tl.store(db_ptr + rows, total.to(db_ptr.dtype.element_ty), mask=mask)


@triton.jit
def weight_grad_offsets(oc, oc_ok, c, kw, kh, j, j_ok, CKK, KWC, KH: tl.constexpr,
                        KW: tl.constexpr, C0: tl.constexpr, KH0, KW0, S2D: tl.constexpr,
                        DW_OHWI: tl.constexpr):
    """Offsets and mask in dw (OHWI or OIHW) of the weight gradient's rows oc x columns: column j
    is channel c at tap (kh, kw) (ALL_TAPS: kh 0 and kw the flat tap). S2D: the columns are the
    space-to-depth weight's, channel c = (i*S2D + jj)*C0 + c0 at flat tap kw being channel c0 of
    the original weight (KH0 x KW0 taps) at (S2D*kh + i, S2D*kw + jj); taps past KH0 x KW0 (the
    padding to whole blocks) are masked off."""
    if S2D:
        c0 = c % C0
        kh0 = (kw // KW) * S2D + c // (S2D * C0)
        kw0 = (kw % KW) * S2D + (c // C0) % S2D
        if DW_OHWI:
            col = (kh0 * KW0 + kw0) * C0 + c0
        else:
            col = c0 * (KH0 * KW0) + kh0 * KW0 + kw0
        ok = j_ok & (kh0 < KH0) & (kw0 < KW0)
        return (oc * (C0 * KH0 * KW0))[:, None] + col[None, :], oc_ok[:, None] & ok[None, :]
    if DW_OHWI:  # the columns' flattened (kw, c) index is the layout's own: contiguous stores
        return (oc * CKK)[:, None] + (kh * KWC + j)[None, :], oc_ok[:, None] & j_ok[None, :]
    return ((oc * CKK)[:, None] + (c * (KH * KW) + kh * KW + kw)[None, :],
            oc_ok[:, None] & j_ok[None, :])


@triton.jit
def within(i, n, ALWAYS: tl.constexpr):
    """i < n, or a constant True where the caller knows it always holds (so the masks that use it
    fold away)."""
    if ALWAYS:
        return tl.full(i.shape, True, tl.int1)
    return i < n


@triton.jit
def count_on(low, mid, high, LOWS, MIDS):
    """(low, mid, high) one step on, as a counter whose low digit runs to LOWS and middle one to
    MIDS: how the forward steps its (tap, channel chunk) position
    (a runtime division per step was a tenth of a loop's instructions)."""
    low += 1
    carry = low == LOWS
    low = tl.where(carry, 0, low)
    mid = tl.where(carry, mid + 1, mid)
    carry = mid == MIDS
    mid = tl.where(carry, 0, mid)
    return low, mid, tl.where(carry, high + 1, high)


@triton.jit
def first_pixels(p, OH, OW):
    """(n, oh, ow) of flat output pixels p: divided once, before a loop that `step_pixels`."""
    ow = p % OW
    t = p // OW
    return t // OH, t % OH, ow


@triton.jit
def pixel_step(STEP: tl.constexpr, OH, OW):
    """STEP flat pixels as (images, rows, columns): STEP = images*OH*OW + rows*OW + columns with
    rows < OH and columns < OW (scalars, divided once)."""
    return STEP // (OH * OW), (STEP // OW) % OH, STEP % OW


@triton.jit
def step_pixels(n, oh, ow, step_n, step_h, step_w, OH, OW):
    """(n, oh, ow) of pixels `pixel_step` further on, by adds with a carry from each digit (the
    digits stay below 2*OW and 2*OH before their carry, so one subtraction each)."""
    ow += step_w
    carry = ow >= OW
    ow = tl.where(carry, ow - OW, ow)
    oh += tl.where(carry, step_h + 1, step_h)
    carry = oh >= OH
    oh = tl.where(carry, oh - OH, oh)
    return tl.where(carry, n + step_n + 1, n + step_n), oh, ow


@triton.jit
def output_grad_tile(dy_ptr, y_ptr, oc, dy_pix, y_pix, oc_ok, p_ok, sdy_c, sy_c,
                     APPLY_RELU: tl.constexpr):
    """dy' for output channels oc x the pixels at offsets dy_pix in dy (y_pix in y): dy, zeroed
    where a fused ReLU's saved output is <= 0."""
    mask = oc_ok[:, None] & p_ok[None, :]
    dy = tl.load(dy_ptr + (oc * sdy_c)[:, None] + dy_pix[None, :], mask=mask, other=0.0)
    if APPLY_RELU:
        y = tl.load(y_ptr + (oc * sy_c)[:, None] + y_pix[None, :], mask=mask, other=0.0)
        dy = tl.where(y > 0, dy, 0.0)
    return dy


_forward = DotKernel(conv2d_forward_kernel, FORWARD_CONFIGS, key=["M"] + _SHAPE_KEY)
_input_grad = DotKernel(conv2d_input_grad_kernel, INPUT_GRAD_CONFIGS, key=["M"] + _SHAPE_KEY)
_weight_grad = DotKernel(conv2d_weight_grad_kernel, WEIGHT_GRAD_CONFIGS,
                         key=["N", "SPLITS"] + _SHAPE_KEY)


def output_size(h, w, kernel, stride, padding, dilation):
    """(OH, OW) for `padding` given as ((top, bottom), (left, right))."""
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = kernel, stride, padding, dilation
    return (out_size(h, kh, sh, pt, dh, padding_after=pb), out_size(w, kw, sw, pl, dw, padding_after=pr))


def _all_taps(hw, out_hw, kernel, stride, padding, dilation):
    """Whether every tap of every output pixel lies in the image (no padding is read)."""
    return (padding[0][0] == padding[1][0] == 0
            and all((o - 1) * s + (k - 1) * d < i
                    for i, o, k, s, d in zip(hw, out_hw, kernel, stride, dilation)))


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, relu, allow_tf32):
    """y = relu?(conv2d(x, weight) + bias) for a 4-D x; padding is ((top, bottom), (left, right)).

    The output keeps the input's memory format (channels_last in, channels_last out), as torch does.
    """
    n, c, h, w = x.shape
    oc, c_per_group, kh, kw = weight.shape
    oh, ow = output_size(h, w, (kh, kw), stride, padding, dilation)
    y = empty((n, oc, oh, ow), x.dtype, x.device, memory_format=memory_format_of(x))
    m = n * oh * ow
    if y.numel() == 0:
        return y
    rest_n = narrow_part(oc // groups, x.dtype, x.device)
    grid = lambda meta: (cdiv(m, meta["BLOCK_M"]), cdiv(oc // groups, meta["BLOCK_N"] + rest_n),
                         groups)
    # Channel counts a 64-channel chunk does not divide run the flattened (kh, kw, c) loop.
    flat = c_per_group % 64 != 0
    reduction = kh * kw * c_per_group if flat else c_per_group
    cost = Cost(2 * m * oc * c_per_group * kh * kw, nbytes(x, weight, bias, y),
                trips=lambda meta: (1 if flat else kh * kw) * cdiv(reduction, meta["BLOCK_K"]))
    _forward.launch(
        grid, x, weight, bias if bias is not None else weight, y,
        m, h, w, oh, ow, c_per_group, oc // groups,
        stride[0], stride[1], padding[0][0], padding[1][0], dilation[0], dilation[1],
        *x.stride(), *weight.stride(), *y.stride(),
        dtype=x.dtype, allow_tf32=allow_tf32, tile_dims=(m, oc // groups - rest_n, reduction),
        cost=cost,
        INDEX_64=needs_int64(x, weight, y), KH=kh, KW=kw, HAS_BIAS=bias is not None, APPLY_RELU=relu,
        FLAT_C=c_per_group if flat else 0,
        ALL_TAPS=_all_taps((h, w), (oh, ow), (kh, kw), stride, padding, dilation),
        ALIGNED_C=c_per_group % 16 == 0, FLAT_Y=flat_pixels(y), REST_N=rest_n,
    )
    return y


def conv2d_input_grad(dy, y, weight, x_like, stride, padding, dilation, groups, relu, allow_tf32,
                      mask_input=False):
    """dx for the forward above, shaped and laid out like `x_like` (the forward input).

    `y` is the saved output, read for the ReLU mask when `relu`. `mask_input`: x_like is a ReLU's
    output and dx is zeroed where it is <= 0 (that ReLU's derivative, which its producer skips).
    """
    n, c, h, w = x_like.shape
    oc, c_per_group, kh, kw = weight.shape
    oh, ow = dy.shape[2:]
    dx = empty(x_like.shape, dy.dtype, dy.device, memory_format=memory_format_of(x_like))
    m = n * h * w
    if dx.numel() == 0:
        return dx
    if dy.numel() == 0:
        return dx.zero_()
    y = y if relu else dy
    x = with_strides_of(x_like, dx) if mask_input else dx
    rest_n = _rest_columns(c_per_group, dy.dtype, dy.device)
    grid = lambda meta: (cdiv(m, meta["BLOCK_M"]), cdiv(c_per_group, meta["BLOCK_N"] + rest_n),
                         groups)
    cost = Cost(2 * n * oh * ow * oc * c_per_group * kh * kw,
                nbytes(dy, y if relu else None, weight, dx, x if mask_input else None),
                trips=lambda meta: kh * kw * cdiv(oc // groups, meta["BLOCK_K"]))
    _input_grad.launch(
        grid, dy, y, weight, x, dx,
        m, h, w, oh, ow, c_per_group, oc // groups,
        padding[0][0], padding[1][0], dilation[0], dilation[1],
        *dy.stride(), *y.stride(), *weight.stride(), *dx.stride(),
        dtype=dy.dtype, allow_tf32=allow_tf32, tile_dims=(m, c_per_group - rest_n, oc // groups),
        cost=cost,
        INDEX_64=needs_int64(dy, y, weight, dx, x), STRIDE_H=stride[0], STRIDE_W=stride[1], KH=kh,
        KW=kw, APPLY_RELU=relu, MASK_INPUT=mask_input, REST_N=rest_n, FLAT_DX=flat_pixels(dx),
    )
    return dx


def _rest_columns(c_per_group, dtype, device):
    """The input gradient's REST_N: 16 where a group's channels are multiples of 48 but not of 64
    on sm_90's tensor cores (conv2's: the 48 of conv1's towers, 32 + 16 columns per program
    instead of 48 in a 64-column tile, a quarter of the MMA work padding), else 0 (on sm_80 its
    tiles spilled with mma.sync)."""
    tensor_core = dtype in (torch.float16, torch.bfloat16) and target_arch(device) >= 90
    return 16 if tensor_core and c_per_group % 48 == 0 and c_per_group % 64 else 0


INTERPRETER_SPLITS = 1  # the tests raise it to run the multi-split reduction on the CPU


def conv2d_weight_bias_grad(dy, y, x, weight_shape, stride, padding, dilation, groups, relu,
                            need_weight, need_bias, allow_tf32, param_dtype=None,
                            weight_format=torch.contiguous_format, space_to_depth=0):
    """(dw, db) for the forward above, in `param_dtype` (the weight's: fp32 master weights under
    autocast get fp32 gradients straight from the fp32 sums) and dw in `weight_format` (the
    weight's, so autograd accumulates it without a layout copy); either is None when not needed.
    `space_to_depth` = s: x is the space-to-depth input of a stride-s conv whose weight has
    `weight_shape`; the GEMM runs the stride-1 conv on x, and dw is the original weight's."""
    n, c, h, w = x.shape
    dw_shape = weight_shape
    if space_to_depth:
        s = space_to_depth
        weight_shape = (weight_shape[0], weight_shape[1] * s * s, -(-weight_shape[2] // s),
                        -(-weight_shape[3] // s))
    oc, c_per_group, kh, kw = weight_shape
    oh, ow = dy.shape[2:]
    acc = accumulator_dtype(dy.dtype)
    ckk = c_per_group * kh * kw
    pixels = n * oh * ow
    param_dtype = param_dtype or dy.dtype
    dw = empty(dw_shape, param_dtype, dy.device, memory_format=weight_format) if need_weight else None
    db = empty((oc,), param_dtype, dy.device) if need_bias else None
    if pixels == 0 or oc == 0:
        return tuple(t.zero_() if t is not None else None for t in (dw, db))

    # Columns per program: one kh row's flattened (kw, c) axis, or all of (kh, kw, c) when no
    # tap of any output pixel leaves the image (no padding read; see the kernel's ALL_TAPS).
    all_taps = _all_taps((h, w), (oh, ow), (kh, kw), stride, padding, dilation)
    if space_to_depth and not all_taps:
        raise ValueError("a space-to-depth weight gradient reads no padding (stride 1, padding 0)")
    columns = kw * c_per_group
    if all_taps:
        col_tiles = lambda block_n: cdiv(ckk, block_n) if need_weight else 1
    else:
        col_tiles = lambda block_n: kh * cdiv(columns, block_n) if need_weight else 1
    # Tiles: 128 x 128 (output channels x columns), or transposed with 64 columns and a group's
    # 96 or 192 channels in one tile (`weight_grad_tiling`); the split count is chosen for them.
    transposed, rest_m = weight_grad_tiling(oc // groups, dy.dtype, dy.device)
    oc_tile = 3 * rest_m if rest_m else 128
    tiles = cdiv(oc // groups, oc_tile) * col_tiles(64 if transposed else 128) * groups
    # Each split beyond one writes and re-reads an fp32 partial of dw (and db): at most twice
    # the bytes the launch must move anyway (dy and x once; much of it stays in L2).
    partial_bytes = 2 * 4 * oc * (ckk + 1)
    splits = (INTERPRETER_SPLITS if INTERPRETING else
              split_count(tiles, dy.device, most=min(2 * nbytes(dy, x) // partial_bytes,
                                                     cdiv(pixels, 512)), reduction=pixels))
    # Partials only when the pixels are split (one-split launches write the result directly).
    # (a space-to-depth launch writes partials even for one split: its mapping is done there)
    partials = need_weight and (splits > 1 or space_to_depth)
    dw_part = empty((splits, oc, ckk), acc, dy.device) if partials else None
    db_part = empty((splits, oc), acc, dy.device) if need_bias and splits > 1 else None
    # The last program to arrive at a tile reads its SPLITS partial tiles after its main loop:
    # a serial tail (`Cost.tail_bytes`).
    tail = lambda meta: (splits * (meta["BLOCK_M"] + rest_m) * meta["BLOCK_N"] * dw_part.element_size()
                         if partials else 0)
    cost = Cost(2 * pixels * oc * ckk if need_weight else 0,
                nbytes(dy, y if relu else None, x if need_weight else None, dw, db),
                trips=lambda meta: cdiv(cdiv(pixels, meta["BLOCK_K"]), splits),
                workspace_bytes=2 * nbytes(dw_part, db_part), tail_bytes=tail)
    y = y if relu else dy
    grid = lambda meta: (cdiv(oc // groups, meta["BLOCK_M"] + rest_m),
                         col_tiles(meta["BLOCK_N"]), groups * splits)
    # One counter per output tile of the smallest tile any config uses (more than enough).
    counters = arrival_counters(cdiv(oc // groups, 32) * col_tiles(32) * groups,
                                 dy.device) if splits > 1 or space_to_depth else dy
    _weight_grad.launch(
        grid, dy, y, x, dw if need_weight else dy, db if need_bias else dy,
        dw_part if dw_part is not None else dy, db_part if db_part is not None else dy, counters,
        n, splits, groups, oc, h, w, oh, ow, c_per_group, oc // groups,
        stride[0], stride[1], padding[0][0], padding[1][0], dilation[0], dilation[1],
        dw_shape[2], dw_shape[3], *dy.stride(), *y.stride(), *x.stride(),
        dtype=dy.dtype, allow_tf32=allow_tf32,
        tile_dims=(oc // groups - rest_m, ckk if all_taps else columns, cdiv(pixels, splits)),
        cost=cost, INDEX_64=needs_int64(dy, y, x, dw_part), KH=kh, KW=kw, S2D=space_to_depth,
        S2D_C=dw_shape[1] if space_to_depth else 0,
        DW_OHWI=weight_format == torch.channels_last, ALIGNED_C=c_per_group % 16 == 0,
        ALL_TAPS=all_taps, FLAT_DY=flat_pixels(dy) and (not relu or flat_pixels(y)),
        WHOLE_STEPS=pixels % 128 == 0, TRANSPOSED=transposed, REST_M=rest_m,
        APPLY_RELU=relu, COMPUTE_WEIGHT=need_weight, COMPUTE_BIAS=need_bias,
    )
    return dw, db


def weight_grad_tiling(oc_per_group, dtype, device):
    """(TRANSPOSED, REST_M) of a weight-gradient launch: on sm_90's tensor cores (wgmma: an MMA's
    rows come in 64s, its columns in 8s) a group of 96 or 192 output channels is one tile of
    64 + 32 or 128 + 64 channels, the MMA's columns (conv1's 96 in 128 rows and conv4's 192 in
    256 left a quarter of the work padding), and the (kh, kw, c) columns its rows, 64 per tile
    (conv1's 432 after space-to-depth: 448, not 512). Elsewhere (False, 0): 128 x 128 tiles, the
    channels the MMA's rows. (The kernel also runs transposed without REST_M rows, as the tests
    force; conv5's 576 columns per kh came out 34.0 -> 33.4 us so, not worth its configs.)"""
    rest_m = narrow_part(oc_per_group, dtype, device)
    return bool(rest_m), rest_m


def narrow_part(oc_per_group, dtype, device):
    """The second, narrower block of a group's output channels where one tile takes them all as
    two MMAs on sm_90's tensor cores: 32 of 96 (64 + 32) and 64 of 192 (128 + 64), which a
    power-of-two tile would pad to 128 and 256 (conv1's 96 channels and conv4's 192 per tower);
    else 0. The forward's REST_N, the weight gradient's REST_M."""
    tensor_core = dtype in (torch.float16, torch.bfloat16) and target_arch(device) >= 90
    return oc_per_group // 3 if tensor_core and oc_per_group in (96, 192) else 0


def flat_pixels(t):
    """Whether 4-D t's pixels (n, h, w) sit at one stride apart in order (NHWC, contiguous)."""
    n, _, h, w = t.shape
    return t.stride(2) == w * t.stride(3) and (n == 1 or t.stride(0) == h * t.stride(2))
