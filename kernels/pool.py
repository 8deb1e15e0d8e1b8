"""Max-pool 2-D (torch.nn.functional.max_pool2d semantics), and the fused LRN -> max-pool.

Forward: each program owns BLOCK_C channels x BLOCK_P slots, a slot being one output column of
one band of output rows of one image, and each slot walks its band's rows. Per output it takes
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

Fused LRN -> max-pool (LRN=True): the forward normalizes each tap on the fly (lrn.py's window sum
of squares over `size` channels) and pools the normalized values, so the full-size LRN output is
never written; only the input is saved. Its backward is one kernel where an LRN group has at most
BAND_MAX channels (`lrn_band_max_pool2d_backward_kernel`: the pooled gradient gathered once per
element, then the LRN backward by band sums, see lrn.py), else (tritonalex/ops/pool.py) this
file's backward kernel into an fp32 buffer (the LRN output's gradient), then lrn.py's backward.
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
    band_splits,
    band_tile,
    channel_group,
    channel_tile,
    group_tile,
    lrn_band_backward,
    lrn_load_params,
    lrn_params,
    lrn_scale,
    lrn_terms,
    nonfinite_probe,
    normal_scale,
    pow_neg,
    stride_cells,
    stride_class,
    window_source,
)

# (BLOCK_C, BLOCK_P, warps) per kernel. Memory-bound: one GPU config each, the one of a small sweep
# the static model (`tritonalex kernels --step`) estimated fastest on the channels_last step, and
# that compiles without spills for every dtype, with and without the fused LRN.
GPU_TILES = {"forward": (16, 32, 4), "backward": (64, 16, 4)}  # backward re-swept 2026-11-27
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
    LRN_SIZE: tl.constexpr,  # LRN window in channels (used only when LRN)
    LRN: tl.constexpr,  # normalize across channels before pooling (the fused LRN -> max-pool)
    NORMAL_S: tl.constexpr,  # no LRN scale s is subnormal (tiles.normal_scale)
    ACC: tl.constexpr,  # compute dtype: fp32, or fp64 for fp64 inputs
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    TAP_CODES: tl.constexpr,  # write the argmax as its tap kh*KW + kw, not ih*W + iw
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,  # tile: channels x slots (n, band, ow)
):
    # Map program ids: each of BLOCK_P slots is one output column ow of one band of ROWS output
    # rows of one image (slots numbered image by image, band by band, so a tile is full whatever
    # OW is), and walks that band's rows top to bottom.
    v = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if INDEX_64:
        v = v.to(tl.int64)
    ow = v % OW
    band = (v // OW) % BANDS
    n = v // (OW * BANDS)
    p_ok = n < N
    c_ok = c < C
    x_n = n * sx_n
    iw0 = ow * stride_w - pad_w
    if LRN:
        k, alpha_over_size, beta = lrn_load_params(params_ptr)
        lo, hi = channel_group(c, C, LRN_GROUP)
    else:
        k, alpha_over_size, beta, lo, hi = 0.0, 0.0, 0.0, c, c

    # Iterate: the window's rows one at a time, each reduced over its KW taps by `row_max`, then
    # the rows in order (the same first maximum in row-major tap order, and the same last NaN,
    # as a walk over all taps). With CARRY the last row of one output's window is the first of
    # the next's (AlexNet's 3x3 stride-2 pools): each output normalizes and compares 6 taps,
    # not 9, and only a band's first output computes its first row.
    oh = band * ROWS
    ih0 = oh * stride_h - pad_h
    if CARRY:
        top, top_tap = row_max(x_ptr, x_n, ih0, iw0, p_ok, c, c_ok, lo, hi, H, W, sx_c, sx_h, sx_w,
                               dil_w, k, alpha_over_size, beta, KW, LRN_SIZE, LRN, NORMAL_S, ACC,
                               BLOCK_C, BLOCK_P)
    for _ in range(ROWS):
        if CARRY:
            best, best_tap = top, top_tap
        else:
            best = tl.full((BLOCK_C, BLOCK_P), float("-inf"), dtype=ACC)
            best_tap = tl.full((BLOCK_C, BLOCK_P), -1, dtype=tl.int32)
        for kh in tl.static_range(1 if CARRY else 0, KH):
            row, tap = row_max(x_ptr, x_n, ih0 + kh * dil_h, iw0, p_ok, c, c_ok, lo, hi, H, W, sx_c,
                               sx_h, sx_w, dil_w, k, alpha_over_size, beta, KW, LRN_SIZE, LRN,
                               NORMAL_S, ACC, BLOCK_C, BLOCK_P)
            # torch's rule, row by row: a larger row maximum or a NaN, or the first row in the
            # image (a row with no tap in it has tap -1 and never wins).
            take = (tap >= 0) & ((row > best) | (row != row) | (best_tap < 0))
            best = tl.where(take, row, best)
            best_tap = tl.where(take, kh * KW + tap, best_tap)
            if CARRY:
                top, top_tap = row, tap  # the last row (kh = KH - 1): the next window's first

        # Write back this output row of the band.
        out_mask = c_ok[:, None] & (p_ok & (oh < OH))[None, :]
        y_off = (c * sy_c)[:, None] + (n * sy_n + oh * sy_h + ow * sy_w)[None, :]
        tl.store(y_ptr + y_off, best.to(y_ptr.dtype.element_ty), mask=out_mask)
        if TAP_CODES:
            tl.store(idx_ptr + y_off, best_tap.to(idx_ptr.dtype.element_ty), mask=out_mask)
        else:
            ih = ih0 + (best_tap // KW) * dil_h
            iw = iw0[None, :] + (best_tap % KW) * dil_w
            tl.store(idx_ptr + y_off, (ih * W + iw).to(tl.int64), mask=out_mask)
        oh += 1
        ih0 += stride_h


@triton.jit
def row_max(x_ptr, x_n, ih, iw0, p_ok, c, c_ok, lo, hi, H, W, sx_c, sx_h, sx_w, dil_w, k,
            alpha_over_size, beta, KW: tl.constexpr, LRN_SIZE: tl.constexpr, LRN: tl.constexpr,
            NORMAL_S: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr,
            BLOCK_P: tl.constexpr):
    """(max, tap) over one window row, input row ih, of channels c x the slots' windows (image
    offset x_n, first column iw0): torch's rule over its KW taps (a larger value or a NaN wins;
    the first tap in the image seeds), tap -1 where none is in the image. LRN: each tap
    normalized on the fly (the window's middle channel is x itself, loaded once with it)."""
    best = tl.full((BLOCK_C, BLOCK_P), float("-inf"), dtype=ACC)
    best_tap = tl.full((BLOCK_C, BLOCK_P), -1, dtype=tl.int32)
    h_ok = p_ok & (ih >= 0) & (ih < H)
    for kw in tl.static_range(KW):
        iw = iw0 + kw * dil_w
        tap_ok = h_ok & (iw >= 0) & (iw < W)
        col = x_n + ih * sx_h + iw * sx_w
        mask = c_ok[:, None] & tap_ok[None, :]
        if LRN:
            scale, v = lrn_scale(x_ptr, col, tap_ok, c, lo, hi, sx_c, LRN_SIZE, k,
                                 alpha_over_size, ACC, BLOCK_C, BLOCK_P)
            v = tl.where(mask, v * pow_neg(scale, beta, NORMAL_S), float("-inf"))
        else:
            v = tl.load(x_ptr + (c * sx_c)[:, None] + col[None, :], mask=mask,
                        other=float("-inf")).to(ACC)
        take = mask & ((v > best) | (v != v) | (best_tap < 0))
        best = tl.where(take, v, best)
        best_tap = tl.where(take, kw, best_tap)
    return best, best_tap


@triton.jit
def pool_grad_gather(dy_base, idx_base, ch, ch_ok, ih, iw, pix_ok, W, OH, OW, pad_h, pad_w,
                     sdy_c, sdy_h, sdy_w, KH: tl.constexpr, KW: tl.constexpr,
                     STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr, DIL_H: tl.constexpr,
                     DIL_W: tl.constexpr, CLASS_H: tl.constexpr, CLASS_W: tl.constexpr,
                     TAP_CODES: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                     BLOCK_P: tl.constexpr):
    """Gradient reaching input pixels (ih, iw) of channels ch through the max-pool: the sum of dy
    over the output pixels whose window holds the pixel and whose saved argmax is that pixel
    (TAP_CODES: whose argmax tap is the tap that reaches the pixel, a compile-time constant).
    CLASS_H, CLASS_W >= 0: every pixel is of that stride class (tiles.stride_class), and only
    the taps that reach an output from it are gathered; -1: any pixels, every tap."""
    # Compared in the pixels' index type (int32 unless the launch indexes in int64): one compare.
    target = ih * W + iw
    g = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    for kh in tl.static_range(KH):
        if CLASS_H < 0 or (CLASS_H - kh * DIL_H) % STRIDE_H == 0:
            oh, h_ok = window_source(ih, pad_h, kh, DIL_H, STRIDE_H, OH, pix_ok, CLASS_H >= 0)
            for kw in tl.static_range(KW):
                if CLASS_W < 0 or (CLASS_W - kw * DIL_W) % STRIDE_W == 0:
                    ow, ok = window_source(iw, pad_w, kw, DIL_W, STRIDE_W, OW, h_ok, CLASS_W >= 0)
                    off = (ch * sdy_c)[:, None] + (oh * sdy_h + ow * sdy_w)[None, :]
                    mask = ch_ok[:, None] & ok[None, :]
                    if TAP_CODES:  # compared with a constant
                        hit = tl.load(idx_base + off, mask=mask, other=0) == kh * KW + kw
                    else:
                        hit = tl.load(idx_base + off, mask=mask, other=-1).to(target.dtype) \
                            == target[None, :]
                    # dy under the tap's mask (the same for a pixel's channels: the load
                    # vectorizes), then kept where the argmax is this pixel.
                    dy = tl.load(dy_base + off, mask=mask, other=0.0)
                    g += tl.where(hit, dy.to(ACC), 0.0)
    return g


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
    g = pool_grad_gather(dy_ptr + n * sdy_n, idx_ptr + n * sdy_n, c, c_ok, ih, iw, q_ok, W, OH,
                         OW, pad_h, pad_w, sdy_c, sdy_h, sdy_w, KH, KW, STRIDE_H, STRIDE_W, DIL_H,
                         DIL_W, CLASS_H, CLASS_W, TAP_CODES, ACC, BLOCK_C, BLOCK_P)
    dx_off = n * sdx_n + (c * sdx_c)[:, None] + (ih * sdx_h + iw * sdx_w)[None, :]
    dx_mask = c_ok[:, None] & q_ok[None, :]
    if MASK_INPUT:  # the derivative of the ReLU that produced x, deferred to here by its conv
        g = tl.where(tl.load(x_ptr + dx_off, mask=dx_mask, other=0.0) > 0, g, 0.0)
    tl.store(dx_ptr + dx_off, g.to(dx_ptr.dtype.element_ty), mask=dx_mask)


@triton.jit
def lrn_band_max_pool2d_backward_kernel(
    dy_ptr,  # output gradient [N, C, OH, OW], with the strides of idx
    idx_ptr,  # argmax indices saved by the forward (int64 positions, or tap codes)
    x_ptr,  # forward input [N, C, H, W], any strides
    dx_ptr,  # input gradient [N, C, H, W], any strides
    params_ptr,  # LRN [k, alpha/size, beta] in the ACC dtype
    H, W, OH, OW,  # input and output spatial sizes
    CELLS_W, CELLS,  # stride-class cells per row and per image (used only when CLASSES)
    GROUP,  # LRN channels per group (at most BLOCK_G)
    pad_h, pad_w,  # pooling geometry
    sdy_n, sdy_c, sdy_h, sdy_w,  # output-gradient and index strides
    sx_n, sx_c, sx_h, sx_w,  # input strides
    sdx_n, sdx_c, sdx_h, sdx_w,  # input-gradient strides
    KH: tl.constexpr, KW: tl.constexpr,  # window size (the tap loops unroll)
    STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr,  # constants: inverting a window divides by them
    DIL_H: tl.constexpr, DIL_W: tl.constexpr,  # dilation (constants: which taps reach a class)
    CLASSES: tl.constexpr,  # pixels by stride class (as in max_pool2d_backward_kernel)
    TAP_CODES: tl.constexpr,  # idx holds tap codes (see the forward)
    LRN_SIZE: tl.constexpr,  # LRN window in channels
    MASK_INPUT: tl.constexpr,  # x is a ReLU's output: zero dx where x <= 0 (its deferred derivative)
    SPLITS: tl.constexpr,  # how band sums keep their precision (tiles.band_splits)
    NORMAL_S: tl.constexpr,  # no LRN scale s is subnormal (tiles.normal_scale)
    REDO_NONFINITE: tl.constexpr,  # redo tiles where a NaN or inf spread (False: the model only)
    ACC: tl.constexpr,  # compute dtype
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr,  # tile: a group's channels x pixels (or cells)
):
    """The fused LRN -> max-pool's backward in one pass for LRN groups of at most BAND_MAX
    channels: the pooled gradient gathered once per element (the LRN output's gradient, never
    written), then the LRN backward from it and x by band sums; tiles where a NaN or an infinity
    may have spread through the band sums are redone by plain sums (tiles.lrn_band_backward: a
    call finite data never makes)."""
    spread = _lrn_pool_backward_program(
        dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, H, W, OH, OW, CELLS_W, CELLS, GROUP, pad_h,
        pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sx_n, sx_c, sx_h, sx_w, sdx_n, sdx_c, sdx_h, sdx_w, KH,
        KW, STRIDE_H, STRIDE_W, DIL_H, DIL_W, CLASSES, TAP_CODES, LRN_SIZE, MASK_INPUT, SPLITS,
        NORMAL_S, False, ACC, INDEX_64, BLOCK_G, BLOCK_P)
    if REDO_NONFINITE:
        if tl.sum(spread) != 0:  # the cold path: a NaN or infinity may have spread
            tl.debug_barrier()  # every thread's first stores land before any second one
            _lrn_pool_backward_redo(
                dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, H, W, OH, OW, CELLS_W, CELLS, GROUP,
                pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sx_n, sx_c, sx_h, sx_w, sdx_n, sdx_c,
                sdx_h, sdx_w, KH, KW, STRIDE_H, STRIDE_W, DIL_H, DIL_W, CLASSES, TAP_CODES,
                LRN_SIZE, MASK_INPUT, NORMAL_S, ACC, INDEX_64, BLOCK_G, BLOCK_P)


@triton.jit
def _lrn_pool_backward_program(dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, H, W, OH, OW, CELLS_W,
                               CELLS, GROUP, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sx_n, sx_c,
                               sx_h, sx_w, sdx_n, sdx_c, sdx_h, sdx_w, KH: tl.constexpr,
                               KW: tl.constexpr, STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr,
                               DIL_H: tl.constexpr, DIL_W: tl.constexpr, CLASSES: tl.constexpr,
                               TAP_CODES: tl.constexpr, LRN_SIZE: tl.constexpr,
                               MASK_INPUT: tl.constexpr, SPLITS: tl.constexpr,
                               NORMAL_S: tl.constexpr, PLAIN: tl.constexpr, ACC: tl.constexpr,
                               INDEX_64: tl.constexpr, BLOCK_G: tl.constexpr,
                               BLOCK_P: tl.constexpr, part=0, PARTS: tl.constexpr = 1):
    """The program's tile, every dx written: one group's channels x BLOCK_P cells of stride
    classes (each class one after another) or pixels of one image (part `part` of PARTS, see
    tiles.group_tile); returns `nonfinite_probe`'s tile, summed over the classes. PLAIN: by plain
    sums, not band sums."""
    lo = tl.program_id(1) * GROUP  # the group's channels: lo .. lo + GROUP - 1
    if CLASSES:  # cells of stride classes, as in max_pool2d_backward_kernel
        n, cell, c, cell_ok, c_ok = group_tile(CELLS, GROUP, INDEX_64, BLOCK_G, BLOCK_P, part,
                                               PARTS)
        spread = tl.zeros((BLOCK_G, BLOCK_P), dtype=ACC)
        for e_h in tl.static_range(STRIDE_H):
            for e_w in tl.static_range(STRIDE_W):
                ih, iw, q_ok = class_pixels(cell, cell_ok, CELLS_W, H, W, pad_h, pad_w, e_h, e_w,
                                            STRIDE_H, STRIDE_W)
                spread += _lrn_pool_backward_tile(
                    dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, n, c, c_ok, lo, lo + GROUP, ih,
                    iw, q_ok, W, OH, OW, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sx_n, sx_c,
                    sx_h, sx_w, sdx_n, sdx_c, sdx_h, sdx_w, KH, KW, STRIDE_H, STRIDE_W, DIL_H,
                    DIL_W, e_h, e_w, TAP_CODES, LRN_SIZE, MASK_INPUT, SPLITS, NORMAL_S, PLAIN, ACC,
                    BLOCK_G, BLOCK_P)
    else:
        n, q, c, q_ok, c_ok = group_tile(H * W, GROUP, INDEX_64, BLOCK_G, BLOCK_P, part, PARTS)
        spread = _lrn_pool_backward_tile(
            dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, n, c, c_ok, lo, lo + GROUP, q // W, q % W,
            q_ok, W, OH, OW, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sx_n, sx_c, sx_h, sx_w,
            sdx_n, sdx_c, sdx_h, sdx_w, KH, KW, STRIDE_H, STRIDE_W, DIL_H, DIL_W, -1, -1,
            TAP_CODES, LRN_SIZE, MASK_INPUT, SPLITS, NORMAL_S, PLAIN, ACC, BLOCK_G, BLOCK_P)
    return spread


@triton.jit(noinline=True)
def _lrn_pool_backward_redo(dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, H, W, OH, OW, CELLS_W,
                            CELLS, GROUP, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sx_n, sx_c,
                            sx_h, sx_w, sdx_n, sdx_c, sdx_h, sdx_w, KH: tl.constexpr,
                            KW: tl.constexpr, STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr,
                            DIL_H: tl.constexpr, DIL_W: tl.constexpr, CLASSES: tl.constexpr,
                            TAP_CODES: tl.constexpr, LRN_SIZE: tl.constexpr,
                            MASK_INPUT: tl.constexpr, NORMAL_S: tl.constexpr, ACC: tl.constexpr,
                            INDEX_64: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr):
    """The program's tile again by plain sums, for a tile where a NaN or an infinity spread
    through the band sums. A function of its own (not inlined): the cold path's code and
    registers stay out of the fast path's; it takes scalars only and recomputes the tile from the
    program ids, in halves (no dot needs a wide tile here; half the registers)."""
    for part in range(2):
        _lrn_pool_backward_program(
            dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, H, W, OH, OW, CELLS_W, CELLS, GROUP, pad_h,
            pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sx_n, sx_c, sx_h, sx_w, sdx_n, sdx_c, sdx_h, sdx_w,
            KH, KW, STRIDE_H, STRIDE_W, DIL_H, DIL_W, CLASSES, TAP_CODES, LRN_SIZE, MASK_INPUT, 0,
            NORMAL_S, True, ACC, INDEX_64, BLOCK_G, BLOCK_P // 2, part, 2)


@triton.jit
def _lrn_pool_backward_tile(dy_ptr, idx_ptr, x_ptr, dx_ptr, params_ptr, n, c, c_ok, lo, hi, ih,
                            iw, q_ok, W, OH, OW, pad_h, pad_w, sdy_n, sdy_c, sdy_h, sdy_w, sx_n,
                            sx_c, sx_h, sx_w, sdx_n, sdx_c, sdx_h, sdx_w, KH: tl.constexpr,
                            KW: tl.constexpr, STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr,
                            DIL_H: tl.constexpr, DIL_W: tl.constexpr, CLASS_H: tl.constexpr,
                            CLASS_W: tl.constexpr, TAP_CODES: tl.constexpr,
                            LRN_SIZE: tl.constexpr, MASK_INPUT: tl.constexpr,
                            SPLITS: tl.constexpr, NORMAL_S: tl.constexpr, PLAIN: tl.constexpr,
                            ACC: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr):
    """dx for one group's channels c (the group: lo..hi-1) x input pixels (ih, iw) of image n:
    the pooled gradient gathered, the LRN backward by band sums (or, PLAIN, by plain sums over the
    outputs j whose window holds c, each with its own gathered gradient), written back; returns
    `nonfinite_probe`'s tile."""
    k, alpha_over_size, beta = lrn_load_params(params_ptr)
    dy_base, idx_base, x_base = dy_ptr + n * sdy_n, idx_ptr + n * sdy_n, x_ptr + n * sx_n
    col = ih * sx_h + iw * sx_w
    if PLAIN:
        # A loop, not unrolled: one output j's loads and gathers live at a time (cold code).
        cross = tl.zeros((BLOCK_G, BLOCK_P), dtype=ACC)
        a, own = tl.zeros((BLOCK_G, BLOCK_P), dtype=ACC), tl.zeros((BLOCK_G, BLOCK_P), dtype=ACC)
        for d in range(LRN_SIZE):
            j = c - (LRN_SIZE - 1) // 2 + d
            a_j, u_j, own_j = lrn_terms(x_base, col, q_ok, j, lo, hi, sx_c, LRN_SIZE, k,
                                        alpha_over_size, beta, NORMAL_S, ACC, BLOCK_G, BLOCK_P)
            g_j = pool_grad_gather(dy_base, idx_base, j, (j >= lo) & (j < hi), ih, iw, q_ok, W,
                                   OH, OW, pad_h, pad_w, sdy_c, sdy_h, sdy_w, KH, KW, STRIDE_H,
                                   STRIDE_W, DIL_H, DIL_W, CLASS_H, CLASS_W, TAP_CODES, ACC,
                                   BLOCK_G, BLOCK_P)
            cross += g_j * a_j * u_j
            a = tl.where(d == (LRN_SIZE - 1) // 2, a_j, a)  # j == c
            own = tl.where(d == (LRN_SIZE - 1) // 2, g_j * own_j, own)
        dx = own - 2.0 * alpha_over_size * beta * a * cross
    else:
        g = pool_grad_gather(dy_base, idx_base, c, c_ok, ih, iw, q_ok, W, OH, OW, pad_h, pad_w,
                             sdy_c, sdy_h, sdy_w, KH, KW, STRIDE_H, STRIDE_W, DIL_H, DIL_W,
                             CLASS_H, CLASS_W, TAP_CODES, ACC, BLOCK_G, BLOCK_P)
        a = tl.load(x_base + (c * sx_c)[:, None] + col[None, :],
                    mask=c_ok[:, None] & q_ok[None, :], other=0.0).to(ACC)
        dx = lrn_band_backward(a, g, k, alpha_over_size, beta, LRN_SIZE, BLOCK_G, SPLITS, NORMAL_S,
                               ACC)
    if MASK_INPUT:  # the derivative of the ReLU that produced x, deferred to here by its conv
        dx = tl.where(a > 0, dx, 0.0)
    dx_off = n * sdx_n + (c * sdx_c)[:, None] + (ih * sdx_h + iw * sdx_w)[None, :]
    tl.store(dx_ptr + dx_off, dx.to(dx_ptr.dtype.element_ty), mask=c_ok[:, None] & q_ok[None, :])
    return nonfinite_probe(dx)


def keeps_flat_indices(x, lrn):
    """Whether a max-pool of x (`lrn`: fused after an LRN) saves torch's int64 positions rather
    than tap codes (`tap_code_dtype`: a quarter of the bytes for 16-bit inputs, half for fp32).
    Codes everywhere but one place they spill in the compile check: the fused LRN -> max-pool's
    backward on a 32-channel band tile with Triton 3.6 on sm_90 (its 16-bit codes' loads beside
    the band sums). AlexNet's lrn2 with codes: forward 78 -> 71 us, backward 127 -> 120 by the
    static model (bf16, sm_90)."""
    if lrn is None:
        return False
    band = band_tile(x.shape[1] // lrn[4], x.shape[2] * x.shape[3], x.dtype, x.device)
    return band is not None and band[0] == 32


def tap_code_dtype(dtype):
    """The integer type of tap codes for inputs of `dtype`: as wide as a 16-bit input (int16), so
    the backward loads codes and gradients in one register layout (a uint8 code took a shared-
    memory round trip per tap to meet the bf16 gradient's layout), int32 otherwise (int64 means
    flat indices). Windows of up to 32768 taps."""
    return torch.int16 if dtype in (torch.float16, torch.bfloat16) else torch.int32


def _tile(kernel, channels, pixels):
    return tile(GPU_TILES[kernel], INTERPRETER_TILE, fit=(channels, pixels))


INTERPRETER_BANDS = 1  # the tests raise it to walk several bands on the CPU


def _bands(n, c, oh, ow, block_c, block_p, device):
    """(bands, rows): the forward's output rows in bands of `rows`, each walked top to bottom by
    its slots, carrying a row from window to window. Long walks pay the band's first row once:
    the fewest bands that still give the GPU 4 programs per SM, among up to twice that many the
    split with the fewest idle rows (AlexNet: lrn1 and lrn2 one band per image, 27 and 13 rows;
    pool5 2 of 3). Under the interpreter, INTERPRETER_BANDS (every program costs time there)."""
    def programs(bands):
        return cdiv(n * bands * ow, block_p) * cdiv(c, block_c)

    if INTERPRETING:
        bands = min(INTERPRETER_BANDS, oh)
        return bands, cdiv(oh, bands)
    fewest, enough = 1, 4 * sm_count(device)
    while fewest < oh and programs(fewest) < enough:
        fewest += 1
    bands = min(range(fewest, min(oh, 2 * fewest) + 1), key=lambda b: b * cdiv(oh, b) - oh)
    return bands, cdiv(oh, bands)


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
    params = lrn_params(lrn[3], lrn[1], lrn[2], lrn[0], x.dtype, x.device) if lrn else x
    block_c, block_p, warps = _tile("forward", c, n * oh * ow)
    bands, rows = _bands(n, c, oh, ow, block_c, block_p, x.device)
    slots = n * bands * ow
    launch(max_pool2d_forward_kernel, (cdiv(slots, block_p), cdiv(c, block_c)),
           x, y, idx, params, n, c, h, w, oh, ow, bands, rows, c // lrn[4] if lrn else c, *stride,
           *padding, *dilation, *x.stride(), *y.stride(), KH=kernel[0], KW=kernel[1],
           CARRY=(kernel[0] - 1) * dilation[0] == stride[0], LRN_SIZE=lrn[0] if lrn else 0,
           LRN=lrn is not None, NORMAL_S=lrn is not None and normal_scale(lrn[3], lrn[1]),
           ACC=tl_accumulator(x.dtype), INDEX_64=needs_int64(x, idx),
           TAP_CODES=not flat_indices, BLOCK_C=block_c, BLOCK_P=block_p, num_warps=warps,
           cost=Cost(0, nbytes(x, y, idx), trips=lambda meta: rows))
    return y, idx


# The backward kernels take input pixels by stride class (tiles.stride_class) where a window has
# at most this many classes: each class's code is unrolled (the LRN's band math with it).
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
    None when an LRN group is wider than a band tile holds (tiles.band_max; ops/pool.py then runs
    the pool's backward into an fp32 buffer and the LRN's backward from it)."""
    n, c, h, w = x.shape
    oh, ow = idx.shape[2:]
    size, alpha, beta, k, groups = lrn
    cells_w, cells, positions = _cells(h, w, stride, padding)
    band = band_tile(c // groups, positions, x.dtype, x.device)
    if band is None:
        return None
    dy = with_strides_of(dy, idx)
    dx = empty(x.shape, x.dtype, x.device, memory_format=memory_format_of(x))
    if dx.numel() == 0:
        return dx
    block_g, block_p, warps = band
    launch(lrn_band_max_pool2d_backward_kernel, (cdiv(positions, block_p), groups, n),
           dy, idx, x, dx, lrn_params(k, alpha, beta, size, x.dtype, x.device), h, w, oh, ow,
           cells_w, cells, c // groups, *padding, *dy.stride(), *x.stride(), *dx.stride(),
           KH=kernel[0], KW=kernel[1], STRIDE_H=stride[0], STRIDE_W=stride[1],
           DIL_H=dilation[0], DIL_W=dilation[1], CLASSES=cells > 0,
           TAP_CODES=idx.dtype != torch.int64, LRN_SIZE=size,
           MASK_INPUT=mask_input, SPLITS=band_splits(x.dtype, block_g),
           NORMAL_S=normal_scale(k, alpha), REDO_NONFINITE=True,
           ACC=tl_accumulator(x.dtype), INDEX_64=needs_int64(dy, idx, x, dx), BLOCK_G=block_g,
           BLOCK_P=block_p, num_warps=warps,
           cost=Cost(0, nbytes(dy, idx, x, dx), common_path=dict(REDO_NONFINITE=False)))
    return dx
