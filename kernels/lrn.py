"""Cross-channel local response normalization (torch's convention), forward and one-kernel backward.

    s_c = k + (alpha / size) * sum_{c' = c - size//2}^{c + (size-1)//2} a_{c'}^2   (zero outside 0..C-1)
    b_c = a_c * s_c^-beta
    da_c = g_c * s_c^-beta - (2 alpha beta / size) * a_c * sum_{j: c in window(j)} g_j a_j s_j^(-beta-1)

The input is viewed as [N, C, S] (all spatial dims flattened).

Forward: each program owns a BLOCK_C x BLOCK_S tile (channels x positions) and forms the window
sums from `size` channel-shifted loads of the same tile: neighbouring tiles and shifts hit the
same cache lines, so DRAM sees each element about once.

Backward, windows of up to 5 channels (AlexNet's): a walk (`lrn_walk_backward_kernel`). Each
position walks its LRN group's channels in runs of 4 (one run per thread and position): it loads
x and dy once, forms each scale s once, and takes every other term from registers
(tiles.lrn_walk_step; fp32 sums, each over its window only, so a NaN reaches only the windows
that hold it, as in torch). By the static model (bf16, sm_90, the unfused alexnet step) it is
memory-bound: lrn1's 76 us, lrn2's 50, 1.15x their bytes. It replaced a kernel that summed the
windows as a 0/1 band matrix times a channel tile on the tensor cores (2026-11-28: that one
faulted on an H200 for 128-channel groups, needed a redo of any tile holding a NaN, and the walk
beat it by the model on both AlexNet layers).
Wider windows: the sliding kernel (`lrn_backward_kernel`), which recomputes every s_j it needs
from the input, its `size` window sums sliding (one summed whole, then +1 channel and -1 channel
per step): 23 tile loads per element for size 5 instead of 42.
Neither backward stores s (or b) in the forward: LRN is memory-bound, and the recompute only costs
cached loads. Minimum bytes: forward reads x and writes y; backward reads x and dy and writes dx.
The window math (`lrn_scale`, `squares`, `pow_neg`, the walk's step, the parameter tensor) lives
in tiles.py: the fused LRN -> max-pool kernels (pool.py) compute it too.
"""

import torch
import triton
import triton.language as tl

from .launch import (
    Cost,
    cdiv,
    launch,
    nbytes,
    needs_int64,
    tile,
    tl_accumulator,
)
from .tiles import (
    channel_group,
    channel_tile,
    lrn_load_params,
    lrn_params,
    lrn_walk_next,
    lrn_scale,
    normal_scale,
    pow_neg,
    squares,
    walk_steps,
    walks,
    widen,
)

# (BLOCK_C, BLOCK_S, warps): channels x positions per program. One GPU config: the kernel is
# memory-bound and the tile only needs to be wide along the contiguous axis.
GPU_TILE = (4, 256, 4)
GPU_WALK_TILE = (128, 4)  # the walk's (BLOCK_S, warps): one position per thread
INTERPRETER_TILE = (64, 4096, 1)


@triton.jit
def lrn_forward_kernel(
    x_ptr,  # input viewed as [N, C, S], any strides
    y_ptr,  # output [N, C, S], any strides
    params_ptr,  # [k, alpha/size, beta] in the ACC dtype
    C, S,  # channels, flattened spatial size
    GROUP,  # channels per group: no window crosses a group's edge (C: one group)
    sx_n, sx_c, sx_s,  # input strides
    sy_n, sy_c, sy_s,  # output strides
    SIZE: tl.constexpr,  # window length in channels (the loops over it unroll)
    NORMAL_S: tl.constexpr,  # no scale s is subnormal (tiles.normal_scale)
    ACC: tl.constexpr,  # compute dtype: fp32, or fp64 for fp64 inputs
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,  # tile: channels x positions
):
    n, s, c, s_ok, c_ok = channel_tile(C, S, INDEX_64, BLOCK_C, BLOCK_S)
    lo, hi = channel_group(c, C, GROUP)
    k, alpha_over_size, beta = lrn_load_params(params_ptr)
    x_base = x_ptr + n * sx_n
    col = s * sx_s
    scale, a = lrn_scale(x_base, col, s_ok, c, lo, hi, sx_c, SIZE, k, alpha_over_size, ACC,
                         BLOCK_C, BLOCK_S)
    mask = c_ok[:, None] & s_ok[None, :]
    y = a * pow_neg(scale, beta, NORMAL_S)
    y_off = n * sy_n + (c * sy_c)[:, None] + (s * sy_s)[None, :]
    tl.store(y_ptr + y_off, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def lrn_backward_kernel(
    x_ptr,  # forward input viewed as [N, C, S], any strides
    dy_ptr,  # output gradient [N, C, S], any strides
    dx_ptr,  # input gradient [N, C, S], any strides
    params_ptr,  # [k, alpha/size, beta] in the ACC dtype
    C, S,  # channels, flattened spatial size
    GROUP,  # channels per group: no window crosses a group's edge (C: one group)
    sx_n, sx_c, sx_s,  # input strides
    sdy_n, sdy_c, sdy_s,  # output-gradient strides
    sdx_n, sdx_c, sdx_s,  # input-gradient strides
    SIZE: tl.constexpr,  # window length in channels (the loops over it unroll)
    MASK_INPUT: tl.constexpr,  # x is a ReLU's output: zero dx where x <= 0 (its deferred derivative)
    NORMAL_S: tl.constexpr,  # no scale s is subnormal (tiles.normal_scale)
    ACC: tl.constexpr,  # compute dtype
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,  # tile: channels x positions
):
    n, s, c, s_ok, c_ok = channel_tile(C, S, INDEX_64, BLOCK_C, BLOCK_S)
    lo, hi = channel_group(c, C, GROUP)  # j outside c's group: its window never holds c
    k, alpha_over_size, beta = lrn_load_params(params_ptr)
    x_base = x_ptr + n * sx_n
    dy_base = dy_ptr + n * sdy_n
    col = s * sx_s
    dy_col = s * sdy_s
    mask = c_ok[:, None] & s_ok[None, :]

    # Every output j whose window holds c: j in [c - (size-1)//2, c + size//2]. Their window sums
    # of squares slide: the first is summed whole, each next one adds the channel entering the
    # window and drops the one leaving it (2 loads instead of `size`). The own term g_c s_c^-beta
    # uses the same sum at j == c.
    first = c - (SIZE - 1) // 2
    window = tl.zeros((BLOCK_C, BLOCK_S), dtype=ACC)
    for e in tl.static_range(SIZE):
        window += squares(x_base, first - SIZE // 2 + e, lo, hi, sx_c, col, s_ok, ACC)
    cross = tl.zeros((BLOCK_C, BLOCK_S), dtype=ACC)
    for d in tl.static_range(SIZE):
        j = first + d
        if d > 0:
            window += (squares(x_base, j + (SIZE - 1) // 2, lo, hi, sx_c, col, s_ok, ACC)
                       - squares(x_base, j - SIZE // 2 - 1, lo, hi, sx_c, col, s_ok, ACC))
        j_mask = ((j >= lo) & (j < hi))[:, None] & s_ok[None, :]
        a_j = tl.load(x_base + (j * sx_c)[:, None] + col[None, :], mask=j_mask, other=0.0).to(ACC)
        g_j = tl.load(dy_base + (j * sdy_c)[:, None] + dy_col[None, :], mask=j_mask, other=0.0).to(ACC)
        s_j = k + alpha_over_size * window
        s_j_neg = pow_neg(s_j, beta + 1.0, NORMAL_S)  # s_j^(-beta-1), no division
        cross += g_j * a_j * s_j_neg
        if d == (SIZE - 1) // 2:  # j == c
            a = a_j
            own = g_j * pow_neg(s_j, beta, NORMAL_S)  # g_c s_c^-beta (0 for s_c = inf, as torch)
    dx = own - 2.0 * alpha_over_size * beta * a * cross
    if MASK_INPUT:  # the derivative of the ReLU that produced x, deferred to here by its conv
        dx = tl.where(a > 0, dx, 0.0)
    dx_off = n * sdx_n + (c * sdx_c)[:, None] + (s * sdx_s)[None, :]
    tl.store(dx_ptr + dx_off, dx.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def lrn_walk_backward_kernel(
    x_ptr,  # forward input viewed as [N, C, S], any strides
    dy_ptr,  # output gradient [N, C, S], any strides
    dx_ptr,  # input gradient [N, C, S], any strides
    params_ptr,  # [k, alpha/size, beta] in the ACC dtype
    S,  # flattened spatial size
    GROUP,  # channels per group: no window crosses a group's edge
    sx_n, sx_c, sx_s,  # input strides
    sdy_n, sdy_c, sdy_s,  # output-gradient strides
    sdx_n, sdx_c, sdx_s,  # input-gradient strides
    SIZE: tl.constexpr,  # window length in channels, at most 5
    MASK_INPUT: tl.constexpr,  # x is a ReLU's output: zero dx where x <= 0 (its deferred derivative)
    NORMAL_S: tl.constexpr,  # no scale s is subnormal (tiles.normal_scale)
    ACC: tl.constexpr,  # compute dtype
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    BLOCK_S: tl.constexpr,  # positions per program
):
    """The backward as a walk: each of BLOCK_S positions walks its group's channels in runs of
    4 ([1, BLOCK_S, 4] tiles, one run per thread and position), each x and dy loaded once and
    each scale s formed once (tiles.lrn_walk_step)."""
    # Map program ids: image n, BLOCK_S positions, the channels lo.. of group program_id(1).
    n = tl.program_id(2)
    s = (tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S))[None, :, None]
    lo = tl.program_id(1) * GROUP
    if INDEX_64:
        n, s, lo = n.to(tl.int64), s.to(tl.int64), lo.to(tl.int64)
    r = tl.arange(0, 4)[None, None, :]
    s_ok = s < S
    k, alpha_over_size, beta = lrn_load_params(params_ptr)
    x_at = x_ptr + n * sx_n + s * sx_s + (lo + r) * sx_c  # run 0, a step 4 * sx_c apart
    dy_at = dy_ptr + n * sdy_n + s * sdy_s + (lo + r) * sdy_c
    dx_at = dx_ptr + n * sdx_n + s * sdx_s + (lo + r) * sdx_c

    # Iterate over the runs: step i loads run i + 1 (the last of run i's windows) and writes run
    # i - 1 (the last whose windows' terms it needed; MASK_INPUT: x is a ReLU's output, dx zeroed
    # where it is <= 0).
    x = widen(tl.load(x_at, mask=s_ok & (r < GROUP), other=0.0), ACC)
    g = widen(tl.load(dy_at, mask=s_ok & (r < GROUP), other=0.0), ACC)
    zero = tl.zeros((1, BLOCK_S, 4), dtype=ACC)
    q_prev, q, x_prev, t_prev2, t_prev, own_prev = zero, x * x, zero, zero, zero, zero
    for i in range(0, tl.cdiv(GROUP, 4) + 1):
        next_ok = s_ok & (4 * i + 4 + r < GROUP)
        x_next = widen(tl.load(x_at + (4 * i + 4) * sx_c, mask=next_ok, other=0.0), ACC)
        g_next = widen(tl.load(dy_at + (4 * i + 4) * sdy_c, mask=next_ok, other=0.0), ACC)
        q_prev, q, x_prev, x, g, t_prev2, t_prev, own_prev = lrn_walk_next(
            x_next, g_next, q_prev, q, x_prev, x, g, t_prev2, t_prev, own_prev, 4 * i + r < GROUP,
            dx_at + (4 * i - 4) * sdx_c, s_ok & (i > 0) & (4 * i - 4 + r < GROUP), k,
            alpha_over_size, beta, SIZE, NORMAL_S, MASK_INPUT)


def _tile(dtype, channels, positions):
    """(BLOCK_C, BLOCK_S, warps): the interpreter's large tile, or the GPU tile (half as wide for
    fp64, whose values take twice the registers: the backward's sliding windows spill otherwise)."""
    block_c, block_s, warps = GPU_TILE
    return tile((block_c, block_s // 2, warps) if dtype == torch.float64 else GPU_TILE, INTERPRETER_TILE,
                fit=(channels, positions))


def lrn_forward(x, y, size, alpha, beta, k, groups=1):
    """y = LRN(x) for x and y viewed as [N, C, S] (3-D, any strides), the channels in `groups`
    equal groups that no window crosses; returns y."""
    n, c, s = x.shape
    if y.numel() == 0:
        return y
    params = lrn_params(k, alpha, beta, size, x.dtype, x.device)
    block_c, block_s, warps = _tile(x.dtype, c, s)
    launch(lrn_forward_kernel, (cdiv(s, block_s), cdiv(c, block_c), n),
           x, y, params, c, s, c // groups,
           *x.stride(), *y.stride(), SIZE=size, NORMAL_S=normal_scale(k, alpha),
           ACC=tl_accumulator(x.dtype),
           INDEX_64=needs_int64(x, y), BLOCK_C=block_c, BLOCK_S=block_s, num_warps=warps,
           cost=Cost(0, nbytes(x, y)))
    return y


def lrn_backward(x, dy, dx, size, alpha, beta, k, groups=1, mask_input=False):
    """dx of the LRN above, from its input x and the output gradient dy (all [N, C, S]); returns dx.
    `mask_input`: x is a ReLU's output and dx is zeroed where it is <= 0 (that ReLU's derivative,
    which its producer skips)."""
    n, c, s = x.shape
    if dx.numel() == 0:
        return dx
    params = lrn_params(k, alpha, beta, size, x.dtype, x.device)
    if walks(size):
        block_s, warps = tile(GPU_WALK_TILE, (INTERPRETER_TILE[1], 1), fit=(s,))
        launch(lrn_walk_backward_kernel, (cdiv(s, block_s), groups, n),
               x, dy, dx, params, s, c // groups, *x.stride(), *dy.stride(), *dx.stride(),
               SIZE=size, MASK_INPUT=mask_input, NORMAL_S=normal_scale(k, alpha),
               ACC=tl_accumulator(x.dtype), INDEX_64=needs_int64(x, dy, dx), BLOCK_S=block_s,
               num_warps=warps,
               cost=Cost(0, nbytes(x, dy, dx), trips=lambda meta: walk_steps(c // groups)))
        return dx
    block_c, block_s, warps = _tile(x.dtype, c, s)
    launch(lrn_backward_kernel, (cdiv(s, block_s), cdiv(c, block_c), n),
           x, dy, dx, params, c, s, c // groups,
           *x.stride(), *dy.stride(), *dx.stride(), SIZE=size, MASK_INPUT=mask_input,
           NORMAL_S=normal_scale(k, alpha), ACC=tl_accumulator(x.dtype),
           INDEX_64=needs_int64(x, dy, dx), BLOCK_C=block_c, BLOCK_S=block_s, num_warps=warps,
           cost=Cost(0, nbytes(x, dy, dx)))
    return dx
