"""Batch normalization (torch's batch_norm): training with batch statistics and running-stat
updates, evaluation with the running statistics, and the backward; all reductions deterministic.

    mean_c = sum_{n,s} x[n,c,s] / M,  var_c = sum (x - mean_c)^2 / M,  invstd_c = (var_c + eps)^-1/2
    y = (x - mean_c) * invstd_c * w_c + b_c                                  (M = N * S)
    running_mean <- (1 - m) running_mean + m mean_c,  running_var <- (1 - m) running_var + m var_c M/(M-1)
    dx = w_c invstd_c (dy - sum(dy)/M - xhat sum(dy xhat)/M),  dw_c = sum(dy xhat),  db_c = sum(dy)
    (evaluation: mean and var are the running ones, and dx = w_c invstd_c dy)

The input is viewed as [N, C, S] (spatial dims flattened; any strides, so NCHW and channels_last
alike). Each direction is two launches:
1. a reduction over (images, positions) per channel, split SPLITS ways over the images so the GPU
   fills: program (channel block, split) walks its images' positions in BLOCK_S chunks and writes
   one partial per channel and split (the forward: count, mean and M2 per chunk merged by Chan's
   formula, exact where sum / sum-of-squares cancels; the backward: sum(dy) and sum(dy xhat));
2. an elementwise pass over [BLOCK_C x BLOCK_S] tiles: every program combines its channels'
   SPLITS partials in the same fixed order (deterministic, no atomics; the partials are a few KB,
   read from L2), then normalizes (forward) or forms dx (backward). The programs at position
   block 0 of image 0 also write the per-channel results: mean and invstd (saved for the
   backward), the running statistics, dw and db.
Minimum bytes: forward reads x and writes y (the reduction reads x once more: 1.5x the floor);
backward reads x and dy and writes dx (the reduction reads both once more).
Scalars (momentum, eps) come in a small tensor in the accumulator dtype, as the LRN's do, so fp64
runs get fp64 constants (a float argument arrives as fp32).
"""

import triton
import triton.language as tl

from .launch import (
    INTERPRETING,
    Cost,
    accumulator_dtype,
    cdiv,
    empty,
    launch,
    nbytes,
    needs_int64,
    scalars,
    sm_count,
    tile,
    tl_accumulator,
)
from .tiles import channel_tile

# (BLOCK_C, BLOCK_S, warps). Wide enough along either contiguous axis (positions in NCHW,
# channels in channels_last) for whole cache lines.
GPU_TILE = (32, 64, 4)
INTERPRETER_TILE = (64, 1024, 1)
INTERPRETER_SPLITS = 3  # more than one, so the tests run the partials' merge


@triton.jit
def _image_offset(n, INDEX_64: tl.constexpr):
    return n.to(tl.int64) if INDEX_64 else n


@triton.jit
def _chunk(base, c, c_ok, s, S, s_c, s_s, ACC: tl.constexpr):
    """One image's [BLOCK_C, BLOCK_S] tile at channels c and positions s (0 outside)."""
    mask = c_ok[:, None] & (s < S)[None, :]
    return tl.load(base + (c * s_c)[:, None] + (s * s_s)[None, :], mask=mask, other=0.0).to(ACC)


@triton.jit
def batch_norm_stats_kernel(
    x_ptr,  # input viewed as [N, C, S], any strides
    part_ptr,  # partials [3, SPLITS, C] in ACC: count, mean, M2 (sum of squared deviations)
    N, C, S, SPLITS,
    sx_n, sx_c, sx_s,
    ACC: tl.constexpr, INDEX_64: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
):
    # Map program ids: BLOCK_C channels (axis 0), images split, split + SPLITS, ... (axis 1).
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    split = tl.program_id(1)
    count = tl.zeros((BLOCK_C,), dtype=ACC)
    mean = tl.zeros((BLOCK_C,), dtype=ACC)
    m2 = tl.zeros((BLOCK_C,), dtype=ACC)
    # Iterate: each chunk's own mean and M2 (exact, from the registers), merged into the running
    # ones by Chan's formula.
    for n in range(split, N, SPLITS):
        base = x_ptr + _image_offset(n, INDEX_64) * sx_n
        for s0 in range(0, S, BLOCK_S):
            s = s0 + tl.arange(0, BLOCK_S)
            x = _chunk(base, c, c_ok, s, S, sx_c, sx_s, ACC)
            k = tl.minimum(S - s0, BLOCK_S).to(ACC)
            chunk_mean = tl.sum(x, 1) / k
            d = tl.where(c_ok[:, None] & (s < S)[None, :], x - chunk_mean[:, None], 0.0)
            total = count + k
            delta = chunk_mean - mean
            mean += delta * (k / total)
            m2 += tl.sum(d * d, 1) + delta * delta * (count * k / total)
            count = total
    # Write back one partial per channel.
    at = split * C + c
    tl.store(part_ptr + at, count, mask=c_ok)
    tl.store(part_ptr + SPLITS * C + at, mean, mask=c_ok)
    tl.store(part_ptr + 2 * SPLITS * C + at, m2, mask=c_ok)


@triton.jit
def _merged_stats(part_ptr, c, c_ok, C, SPLITS, ACC: tl.constexpr, BLOCK_C: tl.constexpr):
    """(count, mean, biased variance) of channels c from the SPLITS partials, in split order."""
    count = tl.zeros((BLOCK_C,), dtype=ACC)
    mean = tl.zeros((BLOCK_C,), dtype=ACC)
    m2 = tl.zeros((BLOCK_C,), dtype=ACC)
    for i in range(0, SPLITS):
        at = i * C + c
        k = tl.load(part_ptr + at, mask=c_ok, other=0.0)
        total = count + k
        share = tl.where(total > 0, k / tl.maximum(total, 1.0), 0.0)
        delta = tl.load(part_ptr + SPLITS * C + at, mask=c_ok, other=0.0) - mean
        mean += delta * share
        m2 += tl.load(part_ptr + 2 * SPLITS * C + at, mask=c_ok, other=0.0) + delta * delta * count * share
        count = total
    return count, mean, m2 / tl.maximum(count, 1.0)


@triton.jit
def batch_norm_forward_kernel(
    x_ptr, y_ptr,  # input and output viewed as [N, C, S], any strides
    w_ptr, b_ptr,  # [C] weight and bias (unused without HAS_WEIGHT / HAS_BIAS)
    part_ptr,  # the stats kernel's partials (TRAINING)
    mean_ptr, invstd_ptr,  # [C] in ACC: written for the backward
    rmean_ptr, rvar_ptr,  # [C] running statistics: read (evaluation) or updated (UPDATE_RUNNING)
    scalars_ptr,  # [momentum, eps] in ACC
    C, S, SPLITS,
    sx_n, sx_c, sx_s, sy_n, sy_c, sy_s,
    TRAINING: tl.constexpr, UPDATE_RUNNING: tl.constexpr,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr, INDEX_64: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
):
    # Map program ids: image n (axis 2), BLOCK_S positions (axis 0), BLOCK_C channels (axis 1).
    n, s, c, s_ok, c_ok = channel_tile(C, S, INDEX_64, BLOCK_C, BLOCK_S)
    momentum, eps = tl.load(scalars_ptr), tl.load(scalars_ptr + 1)
    writer = (tl.program_id(0) == 0) & (tl.program_id(2) == 0)  # one program per channel block
    # The statistics: the batch's (merged from the partials) or the running ones.
    if TRAINING:
        count, mean, var = _merged_stats(part_ptr, c, c_ok, C, SPLITS, ACC, BLOCK_C)
        if UPDATE_RUNNING and writer:
            rm = tl.load(rmean_ptr + c, mask=c_ok, other=0.0).to(ACC)
            rv = tl.load(rvar_ptr + c, mask=c_ok, other=0.0).to(ACC)
            unbiased = var * count / (count - 1.0)
            new_mean = (1.0 - momentum) * rm + momentum * mean
            new_var = (1.0 - momentum) * rv + momentum * unbiased
            tl.store(rmean_ptr + c, new_mean.to(rmean_ptr.dtype.element_ty), mask=c_ok)
            tl.store(rvar_ptr + c, new_var.to(rvar_ptr.dtype.element_ty), mask=c_ok)
    else:
        mean = tl.load(rmean_ptr + c, mask=c_ok, other=0.0).to(ACC)
        var = tl.load(rvar_ptr + c, mask=c_ok, other=1.0).to(ACC)
    invstd = 1.0 / tl.sqrt(var + eps)
    if writer:
        tl.store(mean_ptr + c, mean, mask=c_ok)
        tl.store(invstd_ptr + c, invstd, mask=c_ok)
    # y = x * scale + shift, per channel.
    scale = invstd
    if HAS_WEIGHT:
        scale *= tl.load(w_ptr + c, mask=c_ok, other=0.0).to(ACC)
    shift = -mean * scale
    if HAS_BIAS:
        shift += tl.load(b_ptr + c, mask=c_ok, other=0.0).to(ACC)
    mask = c_ok[:, None] & s_ok[None, :]
    x = tl.load(x_ptr + n * sx_n + (c * sx_c)[:, None] + (s * sx_s)[None, :], mask=mask).to(ACC)
    y = x * scale[:, None] + shift[:, None]
    tl.store(y_ptr + n * sy_n + (c * sy_c)[:, None] + (s * sy_s)[None, :],
             y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def batch_norm_backward_reduce_kernel(
    x_ptr, dy_ptr,  # forward input and output gradient viewed as [N, C, S], any strides
    mean_ptr, invstd_ptr,  # [C] in ACC, from the forward
    part_ptr,  # partials [2, SPLITS, C] in ACC: sum(dy), sum(dy * xhat)
    N, C, S, SPLITS,
    sx_n, sx_c, sx_s, sdy_n, sdy_c, sdy_s,
    ACC: tl.constexpr, INDEX_64: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
):
    # Map program ids as the stats kernel: BLOCK_C channels x every SPLITS-th image.
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    split = tl.program_id(1)
    mean = tl.load(mean_ptr + c, mask=c_ok, other=0.0)
    invstd = tl.load(invstd_ptr + c, mask=c_ok, other=0.0)
    sum_dy = tl.zeros((BLOCK_C,), dtype=ACC)
    sum_dy_xhat = tl.zeros((BLOCK_C,), dtype=ACC)
    for n in range(split, N, SPLITS):
        x_base = x_ptr + _image_offset(n, INDEX_64) * sx_n
        dy_base = dy_ptr + _image_offset(n, INDEX_64) * sdy_n
        for s0 in range(0, S, BLOCK_S):
            s = s0 + tl.arange(0, BLOCK_S)
            x = _chunk(x_base, c, c_ok, s, S, sx_c, sx_s, ACC)
            dy = _chunk(dy_base, c, c_ok, s, S, sdy_c, sdy_s, ACC)
            sum_dy += tl.sum(dy, 1)
            sum_dy_xhat += tl.sum(dy * (x - mean[:, None]) * invstd[:, None], 1)
    at = split * C + c
    tl.store(part_ptr + at, sum_dy, mask=c_ok)
    tl.store(part_ptr + SPLITS * C + at, sum_dy_xhat, mask=c_ok)


@triton.jit
def batch_norm_backward_kernel(
    x_ptr, dy_ptr, dx_ptr,  # [N, C, S] views, any strides
    w_ptr,  # [C] weight (unused without HAS_WEIGHT)
    mean_ptr, invstd_ptr,  # [C] in ACC, from the forward
    part_ptr,  # the reduce kernel's partials
    dw_ptr, db_ptr,  # [C] gradients, written when WRITE_DW / WRITE_DB
    C, S, SPLITS, M,  # M = N * S values per channel
    sx_n, sx_c, sx_s, sdy_n, sdy_c, sdy_s, sdx_n, sdx_c, sdx_s,
    TRAINING: tl.constexpr, HAS_WEIGHT: tl.constexpr, REDUCED: tl.constexpr,
    WRITE_DX: tl.constexpr, WRITE_DW: tl.constexpr, WRITE_DB: tl.constexpr,
    ACC: tl.constexpr, INDEX_64: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
):
    n, s, c, s_ok, c_ok = channel_tile(C, S, INDEX_64, BLOCK_C, BLOCK_S)
    mean = tl.load(mean_ptr + c, mask=c_ok, other=0.0)
    invstd = tl.load(invstd_ptr + c, mask=c_ok, other=0.0)
    # The channel sums, combined in split order (every program gets the same bits).
    sum_dy = tl.zeros((BLOCK_C,), dtype=ACC)
    sum_dy_xhat = tl.zeros((BLOCK_C,), dtype=ACC)
    if REDUCED:
        for i in range(0, SPLITS):
            sum_dy += tl.load(part_ptr + i * C + c, mask=c_ok, other=0.0)
            sum_dy_xhat += tl.load(part_ptr + (SPLITS + i) * C + c, mask=c_ok, other=0.0)
        if (tl.program_id(0) == 0) & (tl.program_id(2) == 0):
            if WRITE_DW:
                tl.store(dw_ptr + c, sum_dy_xhat.to(dw_ptr.dtype.element_ty), mask=c_ok)
            if WRITE_DB:
                tl.store(db_ptr + c, sum_dy.to(db_ptr.dtype.element_ty), mask=c_ok)
    if WRITE_DX:
        scale = invstd
        if HAS_WEIGHT:
            scale *= tl.load(w_ptr + c, mask=c_ok, other=0.0).to(ACC)
        mask = c_ok[:, None] & s_ok[None, :]
        dy = tl.load(dy_ptr + n * sdy_n + (c * sdy_c)[:, None] + (s * sdy_s)[None, :],
                     mask=mask).to(ACC)
        if TRAINING:
            x = tl.load(x_ptr + n * sx_n + (c * sx_c)[:, None] + (s * sx_s)[None, :],
                        mask=mask).to(ACC)
            xhat = (x - mean[:, None]) * invstd[:, None]
            m = M.to(ACC)
            dy = dy - (sum_dy / m)[:, None] - xhat * (sum_dy_xhat / m)[:, None]
        dx = dy * scale[:, None]
        tl.store(dx_ptr + n * sdx_n + (c * sdx_c)[:, None] + (s * sdx_s)[None, :],
                 dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _splits(n, c, block_c, device):
    """Image splits of the reductions: enough programs for two per SM, at most one per image."""
    if INTERPRETING:
        return min(n, INTERPRETER_SPLITS)
    return max(1, min(n, cdiv(2 * sm_count(device), cdiv(c, block_c))))


def batch_norm_forward(x, y, weight, bias, running_mean, running_var, training, momentum, eps):
    """y = batch_norm(x) for x and y viewed as [N, C, S]; returns (mean, invstd), each [C] in the
    accumulator dtype (the batch's in training, the running ones' otherwise). With `training` and
    running statistics given, updates them in place."""
    n, c, s = x.shape
    block_c, block_s, warps = tile(GPU_TILE, INTERPRETER_TILE, fit=(c, s))
    acc = accumulator_dtype(x.dtype)
    mean, invstd = empty((c,), acc, x.device), empty((c,), acc, x.device)
    splits = _splits(n, c, block_c, x.device) if training else 1
    part = empty((3, splits, c), acc, x.device) if training else mean
    index_64 = needs_int64(x, y)
    if training:
        launch(batch_norm_stats_kernel, (cdiv(c, block_c), splits), x, part, n, c, s, splits,
               *x.stride(), ACC=tl_accumulator(x.dtype), INDEX_64=index_64, BLOCK_C=block_c,
               BLOCK_S=block_s, num_warps=warps, cost=Cost(0, nbytes(x, part)))
    update = training and running_mean is not None
    stats = (running_mean, running_var) if running_mean is not None else (mean, invstd)
    launch(batch_norm_forward_kernel, (cdiv(s, block_s), cdiv(c, block_c), n),
           x, y, weight if weight is not None else mean, bias if bias is not None else mean, part,
           mean, invstd, *stats, scalars((float(momentum), float(eps)), acc, x.device), c, s, splits,
           *x.stride(), *y.stride(), TRAINING=training, UPDATE_RUNNING=update,
           HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, ACC=tl_accumulator(x.dtype),
           INDEX_64=index_64, BLOCK_C=block_c, BLOCK_S=block_s, num_warps=warps,
           cost=Cost(0, nbytes(x, y, weight, bias, *((running_mean, running_var) if update else ()))))
    return mean, invstd


def batch_norm_backward(x, dy, dx, weight, mean, invstd, training, dw, db):
    """dx (when given), dw and db (when given) of batch_norm_forward, from its input x, the output
    gradient dy (all [N, C, S]) and its saved mean and invstd."""
    n, c, s = x.shape
    block_c, block_s, warps = tile(GPU_TILE, INTERPRETER_TILE, fit=(c, s))
    acc = accumulator_dtype(x.dtype)
    reduced = training or dw is not None or db is not None
    splits = _splits(n, c, block_c, x.device) if reduced else 1
    part = empty((2, splits, c), acc, x.device) if reduced else mean
    index_64 = needs_int64(x, dy, dx)
    if reduced:
        launch(batch_norm_backward_reduce_kernel, (cdiv(c, block_c), splits), x, dy, mean, invstd,
               part, n, c, s, splits, *x.stride(), *dy.stride(), ACC=tl_accumulator(x.dtype),
               INDEX_64=index_64, BLOCK_C=block_c, BLOCK_S=block_s, num_warps=warps,
               cost=Cost(0, nbytes(x, dy, part)))
    out = dx if dx is not None else dy  # a placeholder pointer when dx is not wanted
    # Without dx, only the per-channel results: one position block of one image.
    grid = (cdiv(s, block_s), cdiv(c, block_c), n) if dx is not None else (1, cdiv(c, block_c), 1)
    launch(batch_norm_backward_kernel, grid, x, dy, out, weight if weight is not None else mean,
           mean, invstd, part, dw if dw is not None else mean, db if db is not None else mean,
           c, s, splits, n * s, *x.stride(), *dy.stride(), *out.stride(), TRAINING=training,
           HAS_WEIGHT=weight is not None, REDUCED=reduced, WRITE_DX=dx is not None,
           WRITE_DW=dw is not None, WRITE_DB=db is not None, ACC=tl_accumulator(x.dtype),
           INDEX_64=index_64, BLOCK_C=block_c, BLOCK_S=block_s, num_warps=warps,
           cost=Cost(0, nbytes(dy, dx, dw, db, *((x,) if training and dx is not None else ()))))
