"""Max-pool 2-D (torch.nn.functional.max_pool2d semantics), and the fused LRN -> max-pool.

Forward: each program owns BLOCK_C channels x BLOCK_P slots, a slot being one output column (two
with PAIR, see `pairs_columns`) of one band of output rows of one image, and each slot walks its
band's rows. Per output it takes
torch's argmax exactly: the first maximum in row-major tap order wins, a NaN always wins (the
last NaN, as in torch's `val > max || isnan(val)`), and a window of -inf reports its first
in-image tap. It gets there row by row: each window row is reduced over its KW taps by that
rule (`row_max`), then the rows in order by the same rule (a later row wins only with a larger
maximum or a NaN, so the first maximum and the last NaN of the whole window survive). That lets
a window's last row be carried as the next window's first where they coincide (CARRY: 3x3
stride 2 reads 6 taps per output, not 9). The argmax is written as its flat index ih*W + iw,
or, when nobody asked for torch's int64 indices, as the winning tap kh*KW + kw (TAP_CODES, see
`tap_code_dtype`): a backward only needs to know which tap won.

Backward (atomic-free, deterministic): each program owns BLOCK_C channels x BLOCK_P *input*
pixels and gathers, over the taps, the output pixels whose window holds that input pixel and whose
saved index points at it (a tap code: whose winning tap is the one that reaches it).
Overlapping windows (3x3 stride 2) just add several terms.

Fused LRN -> max-pool: the forward (the same kernel and walk, LRN=True) normalizes each tap on
the fly and pools the normalized values, so the full-size LRN output is never
written; only the input is saved. Its tile is of channel runs, [BLOCK_C / RUN, BLOCK_P, RUN]:
with RUN = 4 a run's window sums come from one vector load and 2-channel halos
(tiles.lrn_scale_runs), else (RUN = 1) from `size` shifted loads; the plain pool's tile is the
same shape with one channel to a run, so both share the walk (`pool_walk`, `row_max`). The
backward is one kernel where the LRN window is at most 5 channels
(`lrn_walk_max_pool2d_backward_kernel`: each pixel walks its group's channels in runs of 4,
gathering each run's pooled gradient once; see lrn.py), else (tritonalex/ops/pool.py) this
file's backward kernel into an fp32 buffer (the LRN output's gradient), then lrn.py's sliding
backward. By the static model, bf16 on sm_90: lrn1's 75 us, lrn2's 45 (lrn2's two kernels: 182).
"""

import torch
import triton
import triton.language as tl

from .launch import (
    INTERPRETING,
    Cost,
    cdiv,
    empty,
    launch,
    memory_format_of,
    nbytes,
    needs_int64,
    sm_count,
    tile,
    tl_accumulator,
    with_strides_of,
)
from .tiles import (
    FAST_BF16,
    channel_group,
    channel_tile,
    lrn_load_params,
    lrn_params,
    lrn_scale_runs,
    lrn_walk_next,
    normal_scale,
    pow_neg,
    stride_cells,
    stride_class,
    walk_steps,
    walks,
    widen,
    window_source,
)

# (BLOCK_C, BLOCK_P, warps) per kernel. Memory-bound: one GPU config each, the one of a small sweep
# the static model (`tritonalex kernels --step`) estimated fastest on the channels_last step, and
# that compiles without spills for every dtype, with and without the fused LRN.
GPU_TILES = {"backward": (64, 16, 4)}  # re-swept 2026-11-27; the forward's: GPU_FORWARD_TILES
# The fused backward's walk: (BLOCK_P, warps), one pixel per thread (swept 2026-11-28 over 64 x 2,
# 128 x 4 and 256 x 4: 2 warps fill the SMs best).
GPU_WALK_TILE = (64, 2)
INTERPRETER_TILE = (64, 1024, 1)


@triton.jit
def max_pool2d_forward_kernel(
    x_ptr,  # input [N, C, H, W], any strides
    y_ptr,  # output [N, C, OH, OW], any strides
    idx_ptr,  # argmax per output, same strides as y: int64 ih*W + iw, or a tap code
    params_ptr,  # LRN [k, alpha/size, beta] in the ACC dtype (read only when LRN)
    N, C, H, W, OH, OW,  # images, channels, input and output spatial sizes
    BANDS, ROWS,  # output rows in bands of ROWS (BANDS per image), a program's slots walk them
    LRN_GROUP,  # LRN channels per group: no window crosses a group's edge (used only when LRN)
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,  # pooling geometry
    sx_n, sx_c, sx_h, sx_w,  # input strides
    sy_n, sy_c, sy_h, sy_w,  # output (and index) strides
    KH: tl.constexpr, KW: tl.constexpr,  # window size (the tap loops unroll)
    CARRY: tl.constexpr,  # (KH - 1) * dil_h == stride_h: a window's last row is the next one's first
    INSIDE: tl.constexpr,  # every window lies inside the image (`windows_inside`)
    PAIR: tl.constexpr,  # a slot is 2 output columns (`pairs_columns`), else 1
    LRN_SIZE: tl.constexpr,  # LRN window in channels (used only when LRN)
    LRN: tl.constexpr,  # normalize across channels before pooling (the fused LRN -> max-pool)
    NORMAL_S: tl.constexpr,  # no LRN scale s is subnormal (tiles.normal_scale)
    ACC: tl.constexpr,  # compute dtype: fp32, or fp64 for fp64 inputs
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    TAP_CODES: tl.constexpr,  # write the argmax as its tap kh*KW + kw, not ih*W + iw
    RUN: tl.constexpr,  # channels to a run (LRN: 4 where LRN_GROUP divides by 4, see lrn_run)
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,  # tile: channels x slots (n, band, ow)
):
    """The max-pool's forward and, LRN, the fused LRN -> max-pool's, each tap normalized on the
    fly, on a [BLOCK_C / RUN, BLOCK_P, RUN] tile of channel runs (the plain pool: one channel to
    a run). Minimum bytes: x read once, y and its argmax written once (the LRN's halos and the
    windows' overlaps are cache hits)."""
    # Map program ids: BLOCK_P slots (`pool_slots`) x BLOCK_C channels, in runs of RUN.
    n, band, ow, p_ok = pool_slots(N, OW, BANDS, PAIR, INDEX_64, BLOCK_P)
    c4 = (tl.program_id(1) * BLOCK_C + RUN * tl.arange(0, BLOCK_C // RUN))[:, None, None]
    if INDEX_64:
        c4 = c4.to(tl.int64)
    c = c4 + tl.arange(0, RUN)[None, None, :]
    if LRN:
        lo, hi = channel_group(c4, C, LRN_GROUP)  # a group holds whole runs
    else:
        lo, hi = c4, c4
    pool_walk(x_ptr, y_ptr, idx_ptr, params_ptr, n, band, ow, p_ok, c4, c < C, lo, hi, H, W, OH,
              OW, ROWS, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, sx_n, sx_c, sx_h, sx_w,
              sy_n, sy_c, sy_h, sy_w, KH, KW, CARRY, PAIR, INSIDE, LRN_SIZE, LRN, NORMAL_S, ACC,
              TAP_CODES, RUN)


@triton.jit
def pool_slots(N, OW, BANDS, PAIR: tl.constexpr, INDEX_64: tl.constexpr, BLOCK_P: tl.constexpr):
    """(n, band, first output column, in range) of the program's BLOCK_P slots, each one output
    column (PAIR: two) of one band of output rows of one image, numbered image by image, band by
    band (tiles full whatever OW is); [1, BLOCK_P, 1]."""
    v = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    if INDEX_64:
        v = v.to(tl.int64)
    v = v[None, :, None]
    slots_w = (OW + 1) // 2 if PAIR else OW
    ow = (v % slots_w) * (2 if PAIR else 1)
    return v // (slots_w * BANDS), (v // slots_w) % BANDS, ow, v < N * BANDS * slots_w


@triton.jit
def pool_walk(x_ptr, y_ptr, idx_ptr, params_ptr, n, band, ow, p_ok, c4, c_ok, lo, hi, H, W, OH,
              OW, ROWS, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, sx_n, sx_c, sx_h, sx_w,
              sy_n, sy_c, sy_h, sy_w, KH: tl.constexpr, KW: tl.constexpr, CARRY: tl.constexpr,
              PAIR: tl.constexpr, INSIDE: tl.constexpr, LRN_SIZE: tl.constexpr,
              LRN: tl.constexpr, NORMAL_S: tl.constexpr, ACC: tl.constexpr,
              TAP_CODES: tl.constexpr, RUN: tl.constexpr):
    """Each slot walks its band's ROWS output rows, channels c4 + 0 .. RUN - 1 (c_ok: in range;
    lo, hi: their LRN group), and writes each output and its argmax: output column ow, and with
    PAIR ow + 1 beside it (a and b below). INSIDE: no window reaches outside the image, so every
    tap is valid and a window's first tap seeds its maximum."""
    x_n = n * sx_n
    iw0 = ow * stride_w - pad_w
    if LRN:
        k, alpha_over_size, beta = lrn_load_params(params_ptr)
    else:
        k, alpha_over_size, beta = 0.0, 0.0, 0.0
    c = c4 + tl.arange(0, RUN)[None, None, :]

    # Iterate: the window's rows one at a time, each reduced over its KW taps by `row_max`, then
    # the rows in order (the same first maximum in row-major tap order, and the same last NaN,
    # as a walk over all taps). With CARRY the last row of one output's window is the first of
    # the next's (AlexNet's 3x3 stride-2 pools): each output reduces 6 taps, not 9, and only a
    # band's first output computes its first row; with PAIR, 5 per 2 outputs of a row, not 6.
    # Loads are masked to the outputs that exist (a band's rows past OH, a pair's second column
    # past OW): INSIDE drops only the image-edge masks, which those outputs' windows need not.
    b_ok = p_ok & (ow + 1 < OW)
    oh = band * ROWS
    ih0 = oh * stride_h - pad_h
    if CARRY:
        top_a, top_tap_a, top_b, top_tap_b = row_max(
            x_ptr, x_n, ih0, iw0, p_ok & (oh < OH), b_ok & (oh < OH), c4, c_ok, lo, hi, H, W,
            sx_c, sx_h, sx_w, dil_w, k, alpha_over_size, beta, KW, PAIR, INSIDE, LRN_SIZE, LRN,
            NORMAL_S, ACC, RUN)
    for _ in range(ROWS):
        row_ok = oh < OH
        if CARRY:
            a, tap_a, b, tap_b = top_a, top_tap_a, top_b, top_tap_b
        else:
            a = tl.full(c_ok.shape, float("-inf"), dtype=ACC)
            tap_a = tl.full(c_ok.shape, -1, dtype=tl.int32)
            b, tap_b = a, tap_a
        for kh in tl.static_range(1 if CARRY else 0, KH):
            row_a, row_tap_a, row_b, row_tap_b = row_max(
                x_ptr, x_n, ih0 + kh * dil_h, iw0, p_ok & row_ok, b_ok & row_ok, c4, c_ok, lo, hi,
                H, W, sx_c, sx_h, sx_w, dil_w, k, alpha_over_size, beta, KW, PAIR, INSIDE,
                LRN_SIZE, LRN, NORMAL_S, ACC, RUN)
            # torch's rule, row by row (a row with no tap in the image has tap -1, never wins).
            a, tap_a = first_max(row_a, kh * KW + row_tap_a, a, tap_a, row_tap_a >= 0, kh == 0,
                                 INSIDE)
            if PAIR:
                b, tap_b = first_max(row_b, kh * KW + row_tap_b, b, tap_b, row_tap_b >= 0,
                                     kh == 0, INSIDE)
            if CARRY:  # the last row (kh = KH - 1): the next window's first
                top_a, top_tap_a, top_b, top_tap_b = row_a, row_tap_a, row_b, row_tap_b

        # Write back this output row of the band.
        y_off = c * sy_c + n * sy_n + oh * sy_h + ow * sy_w
        store_output(y_ptr, idx_ptr, y_off, c_ok & p_ok & row_ok, a, tap_a, ih0, iw0, W, KW,
                     dil_h, dil_w, TAP_CODES)
        if PAIR:
            store_output(y_ptr, idx_ptr, y_off + sy_w, c_ok & b_ok & row_ok, b, tap_b, ih0,
                         iw0 + stride_w, W, KW, dil_h, dil_w, TAP_CODES)
        oh += 1
        ih0 += stride_h


@triton.jit
def first_max(v, tap, best, best_tap, ok, FIRST: tl.constexpr, INSIDE: tl.constexpr):
    """torch's max-pool rule, one candidate at a time: v (at tap) replaces the best so far if it
    is larger or a NaN (so the first maximum and the last NaN win), or if nothing in the image
    came before (best_tap -1); not where ok is false (a tap outside the image). INSIDE: every
    candidate is valid, and the FIRST seeds."""
    if INSIDE:
        take = (v > best) | (v != v) | FIRST  # (folds away for the first)
    else:
        take = ok & ((v > best) | (v != v) | (best_tap < 0))
    return tl.where(take, v, best), tl.where(take, tap, best_tap)


@triton.jit
def store_output(y_ptr, idx_ptr, y_off, mask, best, best_tap, ih0, iw0, W, KW: tl.constexpr,
                 dil_h, dil_w, TAP_CODES: tl.constexpr):
    """Write one output tile and its argmax (a tap code, or torch's ih*W + iw from the window's
    first row ih0 and column iw0)."""
    tl.store(y_ptr + y_off, best.to(y_ptr.dtype.element_ty), mask=mask)
    if TAP_CODES:
        tl.store(idx_ptr + y_off, best_tap.to(idx_ptr.dtype.element_ty), mask=mask)
    else:
        ih = ih0 + (best_tap // KW) * dil_h
        iw = iw0 + (best_tap % KW) * dil_w
        tl.store(idx_ptr + y_off, (ih * W + iw).to(tl.int64), mask=mask)


@triton.jit
def row_max(x_ptr, x_n, ih, iw0, a_ok, b_ok, c4, c_ok, lo, hi, H, W, sx_c, sx_h, sx_w, dil_w, k,
            alpha_over_size, beta, KW: tl.constexpr, PAIR: tl.constexpr, INSIDE: tl.constexpr,
            LRN_SIZE: tl.constexpr, LRN: tl.constexpr, NORMAL_S: tl.constexpr, ACC: tl.constexpr,
            RUN: tl.constexpr):
    """(max, tap) over one window row, input row ih, of the tile's channels x the slots' windows
    (image offset x_n, first column iw0), twice: for output a, and with PAIR for output b, whose
    window starts at a's last column (stride_w == (KW - 1) * dil_w: the shared column is read
    once); a_ok, b_ok: the outputs exist (nothing is loaded for one that does not). torch's rule
    over the KW taps; tap -1 where none is in the image. LRN: each tap normalized on the fly
    (tiles.lrn_scale_runs, which also returns x itself)."""
    a = tl.full(c_ok.shape, float("-inf"), dtype=ACC)
    tap_a = tl.full(c_ok.shape, -1, dtype=tl.int32)
    b, tap_b = a, tap_a
    in_rows = True if INSIDE else (ih >= 0) & (ih < H)
    c = c4 + tl.arange(0, RUN)[None, None, :]
    for j in tl.static_range(2 * KW - 1 if PAIR else KW):  # a's taps, then b's beyond them
        iw = iw0 + j * dil_w
        if j < KW:
            tap_ok = a_ok & in_rows
        else:
            tap_ok = b_ok & in_rows
        if not INSIDE:
            tap_ok = tap_ok & (iw >= 0) & (iw < W)
        col = x_n + ih * sx_h + iw * sx_w
        mask = c_ok & tap_ok
        if LRN:
            scale, v = lrn_scale_runs(x_ptr, c4, col, tap_ok, lo, hi, sx_c, LRN_SIZE, k,
                                      alpha_over_size, ACC, RUN)
            v = v * pow_neg(scale, beta, NORMAL_S)
            if not INSIDE:
                v = tl.where(mask, v, float("-inf"))
        else:
            v = tl.load(x_ptr + c * sx_c + col, mask=mask, other=float("-inf")).to(ACC)
        if j < KW:
            a, tap_a = first_max(v, j, a, tap_a, mask, j == 0, INSIDE)
        if PAIR and j >= KW - 1:
            b, tap_b = first_max(v, j - (KW - 1), b, tap_b, mask, j == KW - 1, INSIDE)
    return a, tap_a, b, tap_b


@triton.jit
def pool_grad_gather(g, dy_base, idx_base, ch_off, ch_ok, ih, iw, pix_ok, W, OH, OW, pad_h, pad_w,
                     sdy_h, sdy_w, KH: tl.constexpr, KW: tl.constexpr, STRIDE_H: tl.constexpr,
                     STRIDE_W: tl.constexpr, DIL_H: tl.constexpr, DIL_W: tl.constexpr,
                     CLASS_H: tl.constexpr, CLASS_W: tl.constexpr, TAP_CODES: tl.constexpr,
                     ACC: tl.constexpr):
    """g plus the gradient reaching input pixels (ih, iw) of some channels through the max-pool:
    the sum of dy over the output pixels whose window holds the pixel and whose saved argmax is
    that pixel (TAP_CODES: whose argmax tap is the tap that reaches the pixel, a compile-time
    constant). The channels come as their offsets ch_off (ch * the channel stride) with ch_ok,
    the pixels as ih, iw, pix_ok, each shaped to broadcast to g's tile ([C, 1] and [1, P]; the
    run kernels' [G, 1, R] and [1, P, 1]).
    CLASS_H, CLASS_W >= 0: every pixel is of that stride class (tiles.stride_class), and only
    the taps that reach an output from it are gathered; -1: any pixels, every tap."""
    # Compared in the pixels' index type (int32 unless the launch indexes in int64): one compare.
    target = ih * W + iw
    for kh in tl.static_range(KH):
        if CLASS_H < 0 or (CLASS_H - kh * DIL_H) % STRIDE_H == 0:
            oh, h_ok = window_source(ih, pad_h, kh, DIL_H, STRIDE_H, OH, pix_ok, CLASS_H >= 0)
            for kw in tl.static_range(KW):
                if CLASS_W < 0 or (CLASS_W - kw * DIL_W) % STRIDE_W == 0:
                    ow, ok = window_source(iw, pad_w, kw, DIL_W, STRIDE_W, OW, h_ok, CLASS_W >= 0)
                    off = ch_off + (oh * sdy_h + ow * sdy_w)
                    mask = ch_ok & ok
                    # dy under the tap's mask (the same for a pixel's channels: the load
                    # vectorizes), then kept where the argmax is this pixel.
                    dy = tl.load(dy_base + off, mask=mask, other=0.0)
                    if TAP_CODES:  # compared with a constant
                        code = tl.load(idx_base + off, mask=mask, other=0)
                        g += tap_gradient(code, dy, kh * KW + kw, ACC)
                    else:
                        hit = tl.load(idx_base + off, mask=mask, other=-1).to(target.dtype) \
                            == target
                        g += tl.where(hit, dy.to(ACC), 0.0)
    return g


@triton.jit
def tap_gradient(code, dy, TAP: tl.constexpr, ACC: tl.constexpr):
    """dy in ACC where the tap code is TAP, else 0. On a GPU, for bf16 dy and int16 codes, two
    channels a time, one instruction a step: a register's two codes compared with TAP as fp16
    pairs (set.eq.u32.f16x2: 0xffff in each equal half; a code, 0 <= code < 2^15, is a finite
    fp16 equal only to itself, and without .ftz the small ones, subnormals, compare exactly), the
    dy pair ANDed with that mask, then widened (shift, and): 4 instructions for 2 channels where
    the compiler's extracts, compares, conversions and selects took 10."""
    if FAST_BF16 and dy.dtype == tl.bfloat16 and code.dtype == tl.int16 and ACC == tl.float32:
        return tl.inline_asm_elementwise(
            "{ .reg .b32 m, s; set.eq.u32.f16x2 m, $2, $4; and.b32 s, $3, m; "
            "shl.b32 $0, s, 16; and.b32 $1, s, 0xffff0000; }",
            "=r,=r,r,r,r", [code, dy, tl.full(code.shape, TAP, tl.int16)], dtype=tl.float32,
            is_pure=True, pack=2)
    return tl.where(code == TAP, dy.to(ACC), 0.0)


@triton.jit
def max_pool2d_backward_kernel(
    dy_ptr,  # output gradient [N, C, OH, OW], with the strides of idx
    idx_ptr,  # argmax indices saved by the forward (int64 positions, or tap codes)
    x_ptr,  # forward input with dx's strides (read only when MASK_INPUT)
    dx_ptr,  # input gradient [N, C, H, W], any strides
    C, H, W, OH, OW,  # channels, input and output spatial sizes
    CELLS_W, CELLS,  # stride-class cells per row and per image (used only when CLASSES)
    pad_h, pad_w,  # pooling geometry
    sdy_n, sdy_c, sdy_h, sdy_w,  # output-gradient and index strides
    sdx_n, sdx_c, sdx_h, sdx_w,  # input-gradient strides
    KH: tl.constexpr, KW: tl.constexpr,  # window size (the tap loops unroll)
    STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr,  # constants: inverting a window divides by them
    DIL_H: tl.constexpr, DIL_W: tl.constexpr,  # dilation (constants: which taps reach a class)
    CLASSES: tl.constexpr,  # pixels by stride class (see below), else any pixels and every tap
    TAP_CODES: tl.constexpr,  # idx holds tap codes (see the forward)
    MASK_INPUT: tl.constexpr,  # x is a ReLU's output: zero dx where x <= 0 (its deferred derivative)
    ACC: tl.constexpr,  # compute dtype
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,  # tile: channels x input pixels (or cells)
):
    if CLASSES:
        # BLOCK_P cells, each STRIDE_H x STRIDE_W input pixels, one of each stride class: the
        # classes run one after another, each gathering only the taps that reach it.
        n, cell, c, cell_ok, c_ok = channel_tile(C, CELLS, INDEX_64, BLOCK_C, BLOCK_P)
        for e_h in tl.static_range(STRIDE_H):
            for e_w in tl.static_range(STRIDE_W):
                ih, iw, q_ok = class_pixels(cell, cell_ok, CELLS_W, H, W, pad_h, pad_w, e_h, e_w,
                                            STRIDE_H, STRIDE_W)
                _pool_backward_tile(dy_ptr, idx_ptr, x_ptr, dx_ptr, n, c, c_ok, ih, iw, q_ok, W,
                                    OH, OW, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sdx_n,
                                    sdx_c, sdx_h, sdx_w, KH, KW, STRIDE_H, STRIDE_W, DIL_H, DIL_W,
                                    e_h, e_w, TAP_CODES, MASK_INPUT, ACC, BLOCK_C, BLOCK_P)
    else:
        n, q, c, q_ok, c_ok = channel_tile(C, H * W, INDEX_64, BLOCK_C, BLOCK_P)  # input pixels
        _pool_backward_tile(dy_ptr, idx_ptr, x_ptr, dx_ptr, n, c, c_ok, q // W, q % W, q_ok, W,
                            OH, OW, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sdx_n, sdx_c, sdx_h,
                            sdx_w, KH, KW, STRIDE_H, STRIDE_W, DIL_H, DIL_W, -1, -1, TAP_CODES,
                            MASK_INPUT, ACC, BLOCK_C, BLOCK_P)


@triton.jit
def class_pixels(cell, cell_ok, CELLS_W, H, W, pad_h, pad_w, E_H: tl.constexpr, E_W: tl.constexpr,
                 STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr):
    """(ih, iw, in image) of the cells' pixels of stride class (E_H, E_W) (tiles.stride_class;
    cells numbered row by row, CELLS_W to a row)."""
    ih = stride_class(cell // CELLS_W, pad_h, E_H, STRIDE_H)
    iw = stride_class(cell % CELLS_W, pad_w, E_W, STRIDE_W)
    return ih, iw, cell_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)


@triton.jit
def _pool_backward_tile(dy_ptr, idx_ptr, x_ptr, dx_ptr, n, c, c_ok, ih, iw, q_ok, W, OH, OW,
                        pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sdx_n, sdx_c, sdx_h, sdx_w,
                        KH: tl.constexpr, KW: tl.constexpr, STRIDE_H: tl.constexpr,
                        STRIDE_W: tl.constexpr, DIL_H: tl.constexpr, DIL_W: tl.constexpr,
                        CLASS_H: tl.constexpr, CLASS_W: tl.constexpr, TAP_CODES: tl.constexpr,
                        MASK_INPUT: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                        BLOCK_P: tl.constexpr):
    """dx for channels c x input pixels (ih, iw) of image n: gather, mask, write back."""
    g = pool_grad_gather(tl.full((BLOCK_C, BLOCK_P), -0.0, ACC), dy_ptr + n * sdy_n,
                         idx_ptr + n * sdy_n, (c * sdy_c)[:, None], c_ok[:, None], ih[None, :],
                         iw[None, :], q_ok[None, :], W, OH, OW, pad_h, pad_w, sdy_h, sdy_w, KH,
                         KW, STRIDE_H, STRIDE_W, DIL_H, DIL_W, CLASS_H, CLASS_W, TAP_CODES, ACC)
    dx_off = n * sdx_n + (c * sdx_c)[:, None] + (ih * sdx_h + iw * sdx_w)[None, :]
    dx_mask = c_ok[:, None] & q_ok[None, :]
    if MASK_INPUT:  # the derivative of the ReLU that produced x, deferred to here by its conv
        g = tl.where(tl.load(x_ptr + dx_off, mask=dx_mask, other=0.0) > 0, g, 0.0)
    tl.store(dx_ptr + dx_off, g.to(dx_ptr.dtype.element_ty), mask=dx_mask)


@triton.jit
def lrn_walk_max_pool2d_backward_kernel(
    dy_ptr,  # output gradient [N, C, OH, OW], with the strides of idx
    idx_ptr,  # argmax indices saved by the forward (int64 positions, or tap codes)
    x_ptr,  # forward input [N, C, H, W], any strides
    dx_ptr,  # input gradient [N, C, H, W], any strides
    params_ptr,  # LRN [k, alpha/size, beta] in the ACC dtype
    N, H, W, OH, OW,  # batch, input and output spatial sizes
    CELLS_W, CELLS,  # stride-class cells per row and per image (used only when CLASSES)
    GROUP,  # LRN channels per group
    pad_h, pad_w,  # pooling geometry
    sdy_n, sdy_c, sdy_h, sdy_w,  # output-gradient and index strides
    sx_n, sx_c, sx_h, sx_w,  # input strides
    sdx_n, sdx_c, sdx_h, sdx_w,  # input-gradient strides
    KH: tl.constexpr, KW: tl.constexpr,  # window size (the tap loops unroll)
    STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr,  # constants: inverting a window divides by them
    DIL_H: tl.constexpr, DIL_W: tl.constexpr,  # dilation (constants: which taps reach a class)
    CLASSES: tl.constexpr,  # pixels by stride class (as in max_pool2d_backward_kernel)
    TAP_CODES: tl.constexpr,  # idx holds tap codes (see the forward)
    LRN_SIZE: tl.constexpr,  # LRN window in channels, at most 5
    MASK_INPUT: tl.constexpr,  # x is a ReLU's output: zero dx where x <= 0 (its deferred derivative)
    NORMAL_S: tl.constexpr,  # no LRN scale s is subnormal (tiles.normal_scale)
    ONE_CLASS: tl.constexpr,  # -1; else only that class's code (the static model's builds)
    ACC: tl.constexpr,  # compute dtype
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    BLOCK_P: tl.constexpr,  # pixels (or cells) per program
):
    """The fused LRN -> max-pool's backward in one pass: each of BLOCK_P pixels walks its LRN
    group's channels in runs of 4, gathering the pooled gradient of each run once (the LRN
    output's gradient, never written) and loading x once, and forms each scale once
    (tiles.lrn_walk_step). With CLASSES a program takes the pixels of one stride class of
    BLOCK_P cells (the class from program_id(0), so that classes run in parallel), gathering
    only the taps that reach it; a program runs one class's code, so the static model averages
    the builds with only one class each (ONE_CLASS; `Cost.paths`). Minimum bytes: dy and idx read
    once, x read once, dx written once."""
    # Map program ids: group program_id(1), BLOCK_P of the batch's pixels (or of its cells, one
    # class of them) numbered image by image: a tile may span two images, so none is left
    # mostly empty where an image's pixels are not a multiple of BLOCK_P (lrn2's 196 cells a
    # class filled 256 lanes, a quarter idle, when tiles were per image).
    lo = tl.program_id(1) * GROUP
    if CLASSES:
        classes: tl.constexpr = STRIDE_H * STRIDE_W
        block, cls = tl.program_id(0) // classes, tl.program_id(0) % classes
        per_image = CELLS
    else:
        block, cls = tl.program_id(0), 0
        per_image = H * W
    if INDEX_64:  # (the batch's pixels may number 2^31 or more)
        lo, block = lo.to(tl.int64), block.to(tl.int64)
    v = (block * BLOCK_P + tl.arange(0, BLOCK_P))[None, :, None]
    n, v = v // per_image, v % per_image
    v_ok = n < N  # (no N * per_image to overflow)
    if CLASSES:
        for e_h in tl.static_range(STRIDE_H):
            for e_w in tl.static_range(STRIDE_W):
                if ONE_CLASS < 0 or ONE_CLASS == e_h * STRIDE_W + e_w:
                    if cls == e_h * STRIDE_W + e_w:
                        _lrn_pool_backward_class(
                            dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, n, lo, GROUP, v, v_ok, H,
                            W, OH, OW, CELLS_W, CELLS, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w,
                            sx_n, sx_c, sx_h, sx_w, sdx_n, sdx_c, sdx_h, sdx_w, KH, KW, STRIDE_H,
                            STRIDE_W, DIL_H, DIL_W, e_h, e_w, TAP_CODES, LRN_SIZE, MASK_INPUT,
                            NORMAL_S, ACC, BLOCK_P)
    else:
        _lrn_pool_backward_walk(
            dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, n, lo, GROUP, v // W, v % W, v_ok,
            W, OH, OW, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sx_n, sx_c, sx_h, sx_w, sdx_n,
            sdx_c, sdx_h, sdx_w, KH, KW, STRIDE_H, STRIDE_W, DIL_H, DIL_W, -1, -1, TAP_CODES,
            LRN_SIZE, MASK_INPUT, NORMAL_S, ACC, BLOCK_P)


@triton.jit
def _lrn_pool_backward_class(dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, n, lo, GROUP, v, v_ok, H,
                             W, OH, OW, CELLS_W, CELLS, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w,
                             sx_n, sx_c, sx_h, sx_w, sdx_n, sdx_c, sdx_h, sdx_w, KH: tl.constexpr,
                             KW: tl.constexpr, STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr,
                             DIL_H: tl.constexpr, DIL_W: tl.constexpr, E_H: tl.constexpr,
                             E_W: tl.constexpr, TAP_CODES: tl.constexpr, LRN_SIZE: tl.constexpr,
                             MASK_INPUT: tl.constexpr, NORMAL_S: tl.constexpr, ACC: tl.constexpr,
                             BLOCK_P: tl.constexpr):
    """The walk over cells v's pixels of stride class (E_H, E_W)."""
    ih, iw, q_ok = class_pixels(v, v_ok, CELLS_W, H, W, pad_h, pad_w, E_H, E_W, STRIDE_H,
                                STRIDE_W)
    _lrn_pool_backward_walk(dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, n, lo, GROUP, ih, iw, q_ok,
                            W, OH, OW, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sx_n, sx_c, sx_h,
                            sx_w, sdx_n, sdx_c, sdx_h, sdx_w, KH, KW, STRIDE_H, STRIDE_W, DIL_H,
                            DIL_W, E_H, E_W, TAP_CODES, LRN_SIZE, MASK_INPUT, NORMAL_S, ACC,
                            BLOCK_P)


@triton.jit
def _lrn_pool_backward_walk(dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, n, lo, GROUP, ih, iw,
                            q_ok, W, OH, OW, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sx_n, sx_c,
                            sx_h, sx_w, sdx_n, sdx_c, sdx_h, sdx_w, KH: tl.constexpr,
                            KW: tl.constexpr, STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr,
                            DIL_H: tl.constexpr, DIL_W: tl.constexpr, CLASS_H: tl.constexpr,
                            CLASS_W: tl.constexpr, TAP_CODES: tl.constexpr,
                            LRN_SIZE: tl.constexpr, MASK_INPUT: tl.constexpr,
                            NORMAL_S: tl.constexpr, ACC: tl.constexpr, BLOCK_P: tl.constexpr):
    """dx of the group's channels lo.. x input pixels (ih, iw) ([1, P, 1]) of image n, walking
    the channels in runs of 4: step i gathers run i + 1's pooled gradient and loads its x, and
    writes run i - 1's dx."""
    r = tl.arange(0, 4)[None, None, :]
    k, alpha_over_size, beta = lrn_load_params(params_ptr)
    dy_base, idx_base = dy_ptr + n * sdy_n, idx_ptr + n * sdy_n
    x_at = x_ptr + n * sx_n + ih * sx_h + iw * sx_w + (lo + r) * sx_c  # run 0
    dx_at = dx_ptr + n * sdx_n + ih * sdx_h + iw * sdx_w + (lo + r) * sdx_c
    zero = tl.zeros((1, BLOCK_P, 4), dtype=ACC)
    # The gathers start from -0.0, the exact additive identity (x + -0.0 == x for every x, where
    # + 0.0 turns -0.0 into 0.0), which the compiler folds: no add for each run's first tap.
    no_sum = tl.full((1, BLOCK_P, 4), -0.0, ACC)

    x = widen(tl.load(x_at, mask=q_ok & (r < GROUP), other=0.0), ACC)
    g = pool_grad_gather(no_sum, dy_base, idx_base, (lo + r) * sdy_c, r < GROUP, ih, iw, q_ok, W,
                         OH, OW, pad_h, pad_w, sdy_h, sdy_w, KH, KW, STRIDE_H, STRIDE_W, DIL_H,
                         DIL_W, CLASS_H, CLASS_W, TAP_CODES, ACC)
    q_prev, q, x_prev, t_prev2, t_prev, own_prev = zero, x * x, zero, zero, zero, zero
    # The steps unrolled by 3: a step's state (the squares, x and t of runs i-1, i, i+1) rotates
    # through three registers each, so three steps a trip leave each value where it was made
    # (one step a trip moved ~25 registers a step, an eighth of its instructions).
    steps = tl.cdiv(GROUP, 4) + 1
    for i3 in range(0, steps // 3):
        for j in tl.static_range(3):
            q_prev, q, x_prev, x, g, t_prev2, t_prev, own_prev = _lrn_pool_walk_step(
                3 * i3 + j, q_prev, q, x_prev, x, g, t_prev2, t_prev, own_prev, r, no_sum,
                dy_base, idx_base, x_at, dx_at, lo, GROUP, ih, iw, q_ok, W, OH, OW, pad_h, pad_w,
                sdy_c, sdy_h, sdy_w, sx_c, sdx_c, k, alpha_over_size, beta, KH, KW, STRIDE_H,
                STRIDE_W, DIL_H, DIL_W, CLASS_H, CLASS_W, TAP_CODES, LRN_SIZE, MASK_INPUT,
                NORMAL_S, ACC)
    for i in range(steps // 3 * 3, steps):
        q_prev, q, x_prev, x, g, t_prev2, t_prev, own_prev = _lrn_pool_walk_step(
            i, q_prev, q, x_prev, x, g, t_prev2, t_prev, own_prev, r, no_sum, dy_base, idx_base,
            x_at, dx_at, lo, GROUP, ih, iw, q_ok, W, OH, OW, pad_h, pad_w, sdy_c, sdy_h, sdy_w,
            sx_c, sdx_c, k, alpha_over_size, beta, KH, KW, STRIDE_H, STRIDE_W, DIL_H, DIL_W,
            CLASS_H, CLASS_W, TAP_CODES, LRN_SIZE, MASK_INPUT, NORMAL_S, ACC)


@triton.jit
def _lrn_pool_walk_step(i, q_prev, q, x_prev, x, g, t_prev2, t_prev, own_prev, r, no_sum, dy_base,
                        idx_base, x_at, dx_at, lo, GROUP, ih, iw, q_ok, W, OH, OW, pad_h, pad_w,
                        sdy_c, sdy_h, sdy_w, sx_c, sdx_c, k, alpha_over_size, beta,
                        KH: tl.constexpr, KW: tl.constexpr, STRIDE_H: tl.constexpr,
                        STRIDE_W: tl.constexpr, DIL_H: tl.constexpr, DIL_W: tl.constexpr,
                        CLASS_H: tl.constexpr, CLASS_W: tl.constexpr, TAP_CODES: tl.constexpr,
                        LRN_SIZE: tl.constexpr, MASK_INPUT: tl.constexpr, NORMAL_S: tl.constexpr,
                        ACC: tl.constexpr):
    """Step i of the walk: load run i + 1's x, gather its pooled gradient, and take the LRN step
    (tiles.lrn_walk_next: run i's scales, run i - 1's dx stored); returns the next state."""
    c_next = 4 * i + 4 + r  # run i + 1, from lo
    x_next = widen(tl.load(x_at + (4 * i + 4) * sx_c, mask=q_ok & (c_next < GROUP), other=0.0),
                   ACC)
    g_next = pool_grad_gather(no_sum, dy_base, idx_base, (lo + c_next) * sdy_c, c_next < GROUP, ih,
                              iw, q_ok, W, OH, OW, pad_h, pad_w, sdy_h, sdy_w, KH, KW, STRIDE_H,
                              STRIDE_W, DIL_H, DIL_W, CLASS_H, CLASS_W, TAP_CODES, ACC)
    return lrn_walk_next(x_next, g_next, q_prev, q, x_prev, x, g, t_prev2, t_prev, own_prev,
                         4 * i + r < GROUP, dx_at + (4 * i - 4) * sdx_c,
                         q_ok & (i > 0) & (4 * i - 4 + r < GROUP), k, alpha_over_size, beta,
                         LRN_SIZE, NORMAL_S, MASK_INPUT)


def tap_code_dtype(dtype):
    """The integer type of tap codes for inputs of `dtype`: as wide as a 16-bit input (int16), so
    the backward loads codes and gradients in one register layout (a uint8 code took a shared-
    memory round trip per tap to meet the bf16 gradient's layout), int32 otherwise (int64 means
    flat indices). Windows of up to 32768 taps."""
    return torch.int16 if dtype in (torch.float16, torch.bfloat16) else torch.int32


def _tile(kernel, channels, pixels):
    return tile(GPU_TILES[kernel], INTERPRETER_TILE, fit=(channels, pixels))


INTERPRETER_BANDS = 1  # the tests raise it to walk several bands on the CPU
# The forward's GPU tiles (BLOCK_C, BLOCK_P, warps), the launcher taking the one whose grid
# divides best among the SMs (`_forward_schedule`).
GPU_FORWARD_TILES = ((16, 32, 4), (16, 16, 2))


def _forward_schedule(n, c, oh, slots_w, carry, device):
    """(block_c, block_p, warps, bands, rows): the forward's tile, and its output rows in bands
    of `rows`, each walked top to bottom by its slots, carrying a row from window to window.

    Long walks pay the band's first row once (half an output row's work with CARRY), but a
    launch takes as long as its busiest SM: among the GPU tiles and band counts that give at
    least 4 programs per SM, the least work on the busiest SM, ceil(programs / SMs) programs of
    block_p slots x (rows + 1/2) (AlexNet, bf16: lrn1 16 x 32 slots in 3 bands of 9 rows, lrn2
    16 x 16 in one band). Under the interpreter, INTERPRETER_BANDS (every program costs time
    there)."""
    if INTERPRETING:
        block_c, block_p, warps = tile(None, INTERPRETER_TILE, fit=(c, n * oh * slots_w))
        bands = min(INTERPRETER_BANDS, oh)
        return block_c, block_p, warps, bands, cdiv(oh, bands)
    sms = sm_count(device)
    best = None
    for block_c, block_p, warps in GPU_FORWARD_TILES:
        for bands in range(1, oh + 1):
            programs = cdiv(n * bands * slots_w, block_p) * cdiv(c, block_c)
            if programs < 4 * sms and bands < oh:
                continue
            rows = cdiv(oh, bands)
            work = cdiv(programs, sms) * block_p * block_c * (rows + (0.5 if carry else 0))
            if best is None or work < best[0]:
                best = (work, (block_c, block_p, warps, bands, rows))
    return best[1]


def windows_inside(hw, kernel, stride, padding, dilation, out_hw):
    """Whether every pooling window lies inside the image (no padding, and the last window,
    ceil_mode's included, ends inside): the forward then needs no tap masks."""
    return all(p == 0 and (o - 1) * s + (k - 1) * d < size for size, k, s, p, d, o
               in zip(hw, kernel, stride, padding, dilation, out_hw))


def pairs_columns(kernel, stride, dilation, ow):
    """Whether a forward slot takes two output columns: where one window's last column is the
    next one's first (AlexNet's 3x3 stride 2: 5 columns read per 2 outputs, not 6)."""
    return PAIR_COLUMNS and ow > 1 and (kernel[1] - 1) * dilation[1] == stride[1]


PAIR_COLUMNS = True  # the tests turn it off to walk single columns too


def lrn_run(group, size, block_c):
    """Channels to a run of the fused forward's tile (tiles.lrn_scale_runs): 4 where groups hold
    whole runs, the window fits a run's halo and the tile whole runs, else 1."""
    return 4 if group % 4 == 0 and size <= 5 and block_c % 4 == 0 else 1


def max_pool2d_forward(x, kernel, stride, padding, dilation, out_hw, lrn=None,
                       flat_indices=True):
    """(y, indices) of a max-pool of 4-D x; `lrn` = (size, alpha, beta, k, groups) fuses an LRN
    before it (its channels in `groups` equal groups that no window crosses).

    Outputs keep the input's memory format; indices are int64 flat positions ih*W + iw (torch's),
    or with `flat_indices=False` tap codes kh*KW + kw (`tap_code_dtype`): what the backward
    needs, at a quarter of the bytes for 16-bit inputs.
    """
    n, c, h, w = x.shape
    oh, ow = out_hw
    fmt = memory_format_of(x)
    y = empty((n, c, oh, ow), x.dtype, x.device, memory_format=fmt)
    idx = empty((n, c, oh, ow), torch.int64 if flat_indices else tap_code_dtype(x.dtype),
                x.device, memory_format=fmt)
    if y.numel() == 0:
        return y, idx
    pair = pairs_columns(kernel, stride, dilation, ow)
    slots_w = cdiv(ow, 2) if pair else ow
    carry = (kernel[0] - 1) * dilation[0] == stride[0]
    block_c, block_p, warps, bands, rows = _forward_schedule(n, c, oh, slots_w, carry, x.device)
    size, alpha, beta, k, groups = lrn or (0, 0.0, 0.0, 0.0, 1)
    launch(max_pool2d_forward_kernel, (cdiv(n * bands * slots_w, block_p), cdiv(c, block_c)),
           x, y, idx, lrn_params(k, alpha, beta, size, x.dtype, x.device) if lrn else x, n, c, h,
           w, oh, ow, bands, rows, c // groups, *stride, *padding, *dilation, *x.stride(),
           *y.stride(), KH=kernel[0], KW=kernel[1], CARRY=carry,
           INSIDE=windows_inside((h, w), kernel, stride, padding, dilation, out_hw), PAIR=pair,
           LRN_SIZE=size, LRN=lrn is not None, NORMAL_S=lrn is not None and normal_scale(k, alpha),
           ACC=tl_accumulator(x.dtype), INDEX_64=needs_int64(x, idx), TAP_CODES=not flat_indices,
           RUN=lrn_run(c // groups, size, block_c) if lrn else 1, BLOCK_C=block_c,
           BLOCK_P=block_p, num_warps=warps,
           cost=Cost(0, nbytes(x, y, idx), trips=lambda meta: rows))
    return y, idx


# The backward kernels take input pixels by stride class (tiles.stride_class) where a window has
# at most this many classes: each class's code is unrolled (the fused walk's with it).
MAX_STRIDE_CLASSES = 4


def _cells(h, w, stride, padding):
    """(cells per row, cells per image, positions a backward program's tile runs over): the
    stride classes' cells, or (0, 0, h * w) where the pixels go one by one."""
    if stride[0] * stride[1] > MAX_STRIDE_CLASSES:
        return 0, 0, h * w
    cells_w = stride_cells(w, padding[1], stride[1])
    cells = stride_cells(h, padding[0], stride[0]) * cells_w
    return cells_w, cells, cells


def max_pool2d_backward(dy, idx, x, kernel, stride, padding, dilation, out_dtype=None,
                        mask_input=False):
    """dx of the max-pool above (in `out_dtype`, default dy's); dy is read with idx's strides.
    The fused LRN -> max-pool's backward is this into fp32, then the LRN backward (ops/pool.py).
    `mask_input`: x is a ReLU's output and dx is zeroed where it is <= 0 (that ReLU's derivative,
    which its producer skips)."""
    n, c, h, w = x.shape
    oh, ow = idx.shape[2:]
    dy = with_strides_of(dy, idx)
    dx = empty(x.shape, out_dtype or dy.dtype, dy.device, memory_format=memory_format_of(x))
    if dx.numel() == 0:
        return dx
    if idx.numel() == 0:
        return dx.zero_()
    masked_by = with_strides_of(x, dx) if mask_input else dx
    cells_w, cells, positions = _cells(h, w, stride, padding)
    block_c, block_p, warps = _tile("backward", c, positions)
    launch(max_pool2d_backward_kernel, (cdiv(positions, block_p), cdiv(c, block_c), n),
           dy, idx, masked_by, dx, c, h, w, oh, ow, cells_w, cells, *padding, *dy.stride(),
           *dx.stride(), KH=kernel[0], KW=kernel[1], STRIDE_H=stride[0], STRIDE_W=stride[1],
           DIL_H=dilation[0], DIL_W=dilation[1], CLASSES=cells > 0,
           TAP_CODES=idx.dtype != torch.int64, MASK_INPUT=mask_input, ACC=tl_accumulator(x.dtype),
           INDEX_64=needs_int64(dy, idx, dx, masked_by), BLOCK_C=block_c, BLOCK_P=block_p,
           num_warps=warps, cost=Cost(0, nbytes(dy, idx, dx, masked_by if mask_input else None)))
    return dx


def lrn_max_pool2d_backward(dy, idx, x, kernel, stride, padding, dilation, lrn, mask_input=False):
    """dx of the fused LRN -> max-pool (lrn = (size, alpha, beta, k, groups)) in one kernel, or
    None when its window is wider than a walk takes (tiles.walks; ops/pool.py then runs the
    pool's backward into an fp32 buffer and the LRN's backward from it)."""
    n, c, h, w = x.shape
    oh, ow = idx.shape[2:]
    size, alpha, beta, k, groups = lrn
    cells_w, cells, positions = _cells(h, w, stride, padding)
    if not walks(size):
        return None
    dy = with_strides_of(dy, idx)
    dx = empty(x.shape, x.dtype, x.device, memory_format=memory_format_of(x))
    if dx.numel() == 0:
        return dx
    block_p, warps = tile(GPU_WALK_TILE, (INTERPRETER_TILE[1], 1), fit=(n * positions,))
    classes = stride[0] * stride[1] if cells else 1
    launch(lrn_walk_max_pool2d_backward_kernel, (cdiv(n * positions, block_p) * classes, groups),
           dy, idx, x, dx, lrn_params(k, alpha, beta, size, x.dtype, x.device), n, h, w, oh, ow,
           cells_w, cells, c // groups, *padding, *dy.stride(), *x.stride(), *dx.stride(),
           KH=kernel[0], KW=kernel[1], STRIDE_H=stride[0], STRIDE_W=stride[1], DIL_H=dilation[0],
           DIL_W=dilation[1], CLASSES=cells > 0, TAP_CODES=idx.dtype != torch.int64,
           LRN_SIZE=size, MASK_INPUT=mask_input, NORMAL_S=normal_scale(k, alpha), ONE_CLASS=-1,
           ACC=tl_accumulator(x.dtype), INDEX_64=needs_int64(dy, idx, x, dx), BLOCK_P=block_p,
           num_warps=warps,
           # The main loop's trips: 3 steps each (a remainder of 1 or 2 runs once after it).
           cost=Cost(0, nbytes(dy, idx, x, dx), trips=lambda meta: walk_steps(c // groups) // 3,
                     paths=[dict(ONE_CLASS=e) for e in range(classes)] if cells else ()))
    return dx
