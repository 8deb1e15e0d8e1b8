"""Linear layer as a Triton GEMM with bias, ReLU and dropout fused into the epilogue.

Forward:   y = dropout(relu?(x @ w^T + b))     x [M, K], w [N, K], y [M, N]
Dropout keeps element (m, n) when a Philox uniform draw tl.rand(seed, m*N + n) >= p and scales it
(the seed is a one-element tensor read by the kernel: drawn on the device, so CUDA-graph safe)
by 1/(1-p) (0 when p == 1). The mask is never stored: the backward draws the same numbers again
from (seed, offset). With a ReLU, the saved output alone gives the whole mask: y > 0 exactly
where z > 0 and the element was kept (the scale is >= 1, so nothing underflows to 0).

Backward, with dz = dy * mask * scale formed inside the loads:
* input gradient  dx [M, K] = dz @ w        (reduction over N)
* weight gradient dw [N, K] = dz^T @ x      (reduction over M, the batch), and the bias gradient
  db = sum_m dz from the same dz tiles, written by the programs of the first K tile.
No float atomics, deterministic: every output element belongs to one program, or with split-K
(the forward's and the input gradient's reductions shared by several programs where a batch-128
GEMM's tiles would fill a fraction of the GPU: `_splits`) to one tile's programs, each storing
an fp32 partial; the last of them to arrive (an int32 arrival counter) adds the partials in split
order and applies the epilogue, in the same launch.
"""

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
    dot_class,
    dot_precision,
    empty,
    nbytes,
    sm_count,
    split_count,
)
from .tiles import bias_relu_epilogue, dot_acc, last_arrival, split_range, sum_partials


def unsplit(block_m, block_n, block_k, num_warps, num_stages, archs=(80, 90)):
    """A config whose programs never share a reduction (SPLIT=False: grid axis 2 is 1 whatever
    the launch's SPLITS): narrow tiles that fill the GPU by their number, their long reduction
    kept fed by deep pipelines, instead of wide split tiles whose fp32 partials cross memory."""
    cfg = config(block_m, block_n, block_k, num_warps, num_stages, archs)
    cfg.kwargs["SPLIT"] = False
    return cfg


# Tile configs per kernel and dot class (see launch.dot_class), best general choice first: the
# candidates that compile for sm_80 and sm_90 without spills (`tritonalex kernels`). 128x128
# forward tiles spill: the dropout epilogue's Philox rounds need registers beside the accumulator.
# The split-K launches (`_splits`: fc7's and fc8's input gradients, fc8's forward at batch 128)
# also offer unsplit narrow tiles: by the static model fc8's forward 10.8 -> 8.0 us, its input
# gradient 12.5 -> 8.0, fc7's 31.4 -> 25.3 (the partials' bytes gone, 4 stages keeping the
# loads ahead); the autotuner picks between them on the GPU.
FORWARD_CONFIGS = {
    "tensor_core": [config(128, 64, 32, 8, 3), config(64, 128, 32, 8, 3), config(64, 64, 64, 4, 3),
                    config(64, 64, 32, 4, 3), unsplit(64, 32, 128, 4, 4),
                    unsplit(64, 64, 128, 4, 4)],
    "fma": [config(64, 64, 16, 8, 2), config(32, 64, 16, 4, 2), config(64, 32, 16, 4, 2)],
}
INPUT_GRAD_CONFIGS = {
    "tensor_core": [config(128, 128, 32, 8, 3), config(128, 64, 32, 8, 3), config(64, 128, 32, 8, 3),
                    config(64, 64, 32, 4, 3), unsplit(64, 64, 64, 4, 4)],
    "fma": [config(64, 32, 16, 4, 2), config(16, 64, 16, 4, 2)],
}
WEIGHT_GRAD_CONFIGS = {
    "tensor_core": [config(128, 128, 32, 8, 3), config(128, 64, 32, 8, 3), config(64, 128, 32, 8, 3),
                    config(64, 64, 32, 4, 3)],
    "fma": [config(64, 64, 16, 8, 2), config(32, 64, 16, 4, 2), config(32, 32, 16, 4, 2)],
}


@triton.jit
def dropout_keep(seed, row, col, N, p):
    """The dropout keep-mask of a [rows, cols] tile: Philox uniform at offset row*N + col >= p."""
    return tl.rand(seed, row[:, None] * N + col[None, :]) >= p


@triton.jit
def linear_forward_kernel(
    x_ptr,  # input [M, K], any strides
    w_ptr,  # weight [N, K], any strides
    b_ptr,  # bias [N] (not read when HAS_BIAS is False)
    y_ptr,  # output [M, N], any strides
    part_ptr,  # partial sums [SPLITS, M, N], contiguous, ACC dtype (used only when SPLITS > 1)
    count_ptr,  # int32 arrival counter per output tile (launch.arrival_counters)
    M, N, K,  # GEMM sizes
    SPLITS,  # programs sharing the reduction over K of one output tile (grid axis 2)
    sx_m, sx_k, sw_n, sw_k, sy_m, sy_n,  # strides
    seed_ptr,  # dropout Philox seed: a one-element tensor (read only when DROPOUT)
    p,  # dropout probability
    scale,  # 1 / (1 - p), or 0 when p == 1
    HAS_BIAS: tl.constexpr,  # add bias[n]
    APPLY_RELU: tl.constexpr,  # apply ReLU after the bias
    DROPOUT: tl.constexpr,  # apply dropout after the ReLU
    ACC: tl.constexpr,  # accumulator dtype: fp32, or fp64 for fp64 inputs
    PRECISION: tl.constexpr,  # tl.dot input precision for fp32: "ieee" or "tf32"
    DOT_FP32: tl.constexpr,  # upcast tiles before tl.dot (bf16 under the interpreter)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # tile sizes
    SPLIT: tl.constexpr = True,  # False: the config never splits (`unsplit`), whatever SPLITS
):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = rm < M
    n_ok = rn < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC)
    splits = SPLITS if SPLIT else 1
    k_start, k_end = split_range(tl.program_id(2), K, BLOCK_K, splits)  # split-K, as below
    for k0 in range(k_start, k_end, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_ok = rk < K
        a = tl.load(x_ptr + rm[:, None] * sx_m + rk[None, :] * sx_k,
                    mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(w_ptr + rk[:, None] * sw_k + rn[None, :] * sw_n,  # w^T tile, K x N
                    mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        acc = dot_acc(a, b, acc, PRECISION, DOT_FP32, ACC)
    mask = m_ok[:, None] & n_ok[None, :]
    if splits == 1:
        _forward_epilogue(acc, b_ptr, y_ptr, rm, rn, n_ok, mask, N, sy_m, sy_n, seed_ptr, p, scale,
                          HAS_BIAS, APPLY_RELU, DROPOUT, ACC)
    else:  # each split stores its partial; the last to arrive adds them, then the epilogue
        part_off = rm[:, None] * N + rn[None, :]
        tl.store(part_ptr + tl.program_id(2) * M * N + part_off, acc, mask=mask)
        tile = tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)
        if last_arrival(count_ptr, tile, splits):
            total = sum_partials(part_ptr, part_off, mask, M * N, splits, ACC)
            _forward_epilogue(total, b_ptr, y_ptr, rm, rn, n_ok, mask, N, sy_m, sy_n, seed_ptr, p,
                              scale, HAS_BIAS, APPLY_RELU, DROPOUT, ACC)
            tl.store(count_ptr + tile, 0)  # zero again for the next launch (stream-ordered)


@triton.jit
def _forward_epilogue(acc, b_ptr, y_ptr, rm, rn, n_ok, mask, N, sy_m, sy_n, seed_ptr, p, scale,
                      HAS_BIAS: tl.constexpr, APPLY_RELU: tl.constexpr, DROPOUT: tl.constexpr,
                      ACC: tl.constexpr):
    """Bias, ReLU and dropout on the summed tile, rounded once to y's dtype and stored."""
    acc = bias_relu_epilogue(acc, b_ptr, rn, n_ok, HAS_BIAS, APPLY_RELU, ACC)
    if DROPOUT:
        acc = tl.where(dropout_keep(tl.load(seed_ptr), rm, rn, N, p), acc * scale, 0.0)
    tl.store(y_ptr + rm[:, None] * sy_m + rn[None, :] * sy_n, acc.to(y_ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def output_grad_tile(dy_ptr, y_ptr, rm, rn, m_ok, n_ok, N, sdy_m, sdy_n, sy_m, sy_n, seed_ptr, p, scale,
                     APPLY_RELU: tl.constexpr, DROPOUT: tl.constexpr):
    """dz (in fp32 or wider) for rows rm x columns rn: dy through the forward's dropout and ReLU."""
    mask = m_ok[:, None] & n_ok[None, :]
    dz = tl.load(dy_ptr + rm[:, None] * sdy_m + rn[None, :] * sdy_n, mask=mask, other=0.0)
    if dz.dtype != tl.float64:
        dz = dz.to(tl.float32)  # bf16 arithmetic is wrong in the interpreter; free on a GPU
    if APPLY_RELU:
        # y > 0 exactly where z > 0 and the element was kept (see the module docstring).
        y = tl.load(y_ptr + rm[:, None] * sy_m + rn[None, :] * sy_n, mask=mask, other=0.0)
        y = y.to(dz.dtype)
        dz = tl.where(y > 0, dz, 0.0)
        if DROPOUT:
            dz = dz * scale
    elif DROPOUT:
        dz = tl.where(dropout_keep(tl.load(seed_ptr), rm, rn, N, p), dz * scale, 0.0)
    return dz


@triton.jit
def linear_input_grad_kernel(
    dy_ptr,  # output gradient [M, N], any strides
    y_ptr,  # saved output [M, N] (read only when APPLY_RELU)
    w_ptr,  # weight [N, K], any strides
    dx_ptr,  # input gradient [M, K], any strides
    part_ptr,  # partial sums [SPLITS, M, K], contiguous, ACC dtype (used only when SPLITS > 1)
    count_ptr,  # int32 arrival counter per output tile (launch.arrival_counters)
    M, N, K,  # GEMM sizes of the forward
    SPLITS,  # programs sharing the reduction over N of one output tile (grid axis 2)
    sdy_m, sdy_n, sy_m, sy_n, sw_n, sw_k, sdx_m, sdx_k,  # strides
    seed_ptr, p, scale,  # dropout of the forward (seed_ptr read only when DROPOUT)
    APPLY_RELU: tl.constexpr, DROPOUT: tl.constexpr,  # what the forward fused
    ACC: tl.constexpr, PRECISION: tl.constexpr, DOT_FP32: tl.constexpr,  # as in the forward
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # tile: M x K outputs, N steps
    SPLIT: tl.constexpr = True,  # False: the config never splits (`unsplit`), whatever SPLITS
):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rk = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # output columns are K here
    m_ok = rm < M
    k_ok = rk < K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC)
    # Split-K: this program's share of the reduction, whole BLOCK_K steps (fc7's and fc8's
    # input gradients are 32 output tiles of 128 x 128 at batch 128: a quarter of an H100
    # without splits).
    splits = SPLITS if SPLIT else 1
    n_start, n_end = split_range(tl.program_id(2), N, BLOCK_K, splits)
    for n0 in range(n_start, n_end, BLOCK_K):
        rn = n0 + tl.arange(0, BLOCK_K)
        n_ok = rn < N
        dz = output_grad_tile(dy_ptr, y_ptr, rm, rn, m_ok, n_ok, N, sdy_m, sdy_n, sy_m, sy_n,
                              seed_ptr, p, scale, APPLY_RELU, DROPOUT)
        wt = tl.load(w_ptr + rn[:, None] * sw_n + rk[None, :] * sw_k,
                     mask=n_ok[:, None] & k_ok[None, :], other=0.0)
        dz = dz.to(dx_ptr.dtype.element_ty)  # in the activations' dtype, for the tensor cores
        acc = dot_acc(dz, wt, acc, PRECISION, DOT_FP32, ACC)
    mask = m_ok[:, None] & k_ok[None, :]
    if splits == 1:
        tl.store(dx_ptr + rm[:, None] * sdx_m + rk[None, :] * sdx_k,
                 acc.to(dx_ptr.dtype.element_ty), mask=mask)
    else:  # each split stores its partial; the last to arrive adds them in split order
        part_off = rm[:, None] * K + rk[None, :]
        tl.store(part_ptr + tl.program_id(2) * M * K + part_off, acc, mask=mask)
        tile = tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)
        if last_arrival(count_ptr, tile, splits):
            total = sum_partials(part_ptr, part_off, mask, M * K, splits, ACC)
            tl.store(dx_ptr + rm[:, None] * sdx_m + rk[None, :] * sdx_k,
                     total.to(dx_ptr.dtype.element_ty), mask=mask)
            tl.store(count_ptr + tile, 0)  # zero again for the next launch (stream-ordered)


@triton.jit
def linear_weight_grad_kernel(
    dy_ptr,  # output gradient [M, N], any strides
    y_ptr,  # saved output [M, N] (read only when APPLY_RELU)
    x_ptr,  # forward input [M, K], any strides
    dw_ptr,  # weight gradient [N, K], contiguous
    db_ptr,  # bias gradient [N] (written only when COMPUTE_BIAS)
    M, N, K,  # GEMM sizes of the forward
    sdy_m, sdy_n, sy_m, sy_n, sx_m, sx_k,  # strides
    seed_ptr, p, scale,  # dropout of the forward (seed_ptr read only when DROPOUT)
    APPLY_RELU: tl.constexpr, DROPOUT: tl.constexpr,  # what the forward fused
    COMPUTE_WEIGHT: tl.constexpr,  # write dw
    COMPUTE_BIAS: tl.constexpr,  # write db (programs of the first K tile)
    ACC: tl.constexpr, PRECISION: tl.constexpr, DOT_FP32: tl.constexpr,  # as in the forward
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # tile: N x K outputs, M steps
):
    rn = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # output rows are N here
    rk = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # output columns are K
    n_ok = rn < N
    k_ok = rk < K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC)
    # Summed elementwise, reduced once after the loop (no cross-lane sum per step).
    bias_acc = tl.zeros((BLOCK_K, BLOCK_M), dtype=ACC)
    for m0 in range(0, M, BLOCK_K):
        rm = m0 + tl.arange(0, BLOCK_K)
        m_ok = rm < M
        dz = output_grad_tile(dy_ptr, y_ptr, rm, rn, m_ok, n_ok, N, sdy_m, sdy_n, sy_m, sy_n,
                              seed_ptr, p, scale, APPLY_RELU, DROPOUT)  # [BLOCK_K (m), BLOCK_M (n)]
        if COMPUTE_BIAS:
            bias_acc += dz.to(ACC)  # sums the fp32 dz, before any rounding
        if COMPUTE_WEIGHT:
            xt = tl.load(x_ptr + rm[:, None] * sx_m + rk[None, :] * sx_k,
                         mask=m_ok[:, None] & k_ok[None, :], other=0.0)
            dzt = tl.trans(dz.to(xt.dtype))
            acc = dot_acc(dzt, xt, acc, PRECISION, DOT_FP32, ACC)
    if COMPUTE_WEIGHT:
        tl.store(dw_ptr + rn[:, None] * K + rk[None, :], acc.to(dw_ptr.dtype.element_ty),
                 mask=n_ok[:, None] & k_ok[None, :])
    if COMPUTE_BIAS:
        if tl.program_id(1) == 0:
            tl.store(db_ptr + rn, tl.sum(bias_acc, axis=0).to(db_ptr.dtype.element_ty), mask=n_ok)


# TF32 tiles: the 16-bit lists compile clean for fp32 operands too (the compile check's tf32 rows),
# but for the unsplit ones (4 stages of 4-byte tiles: more shared memory than an SM has).
for _configs in (FORWARD_CONFIGS, INPUT_GRAD_CONFIGS, WEIGHT_GRAD_CONFIGS):
    _configs["tf32"] = [c for c in _configs["tensor_core"] if c.kwargs.get("SPLIT", True)]

_KEY = ["M", "N", "K"]
_forward = DotKernel(linear_forward_kernel, FORWARD_CONFIGS, key=_KEY + ["SPLITS"])
_input_grad = DotKernel(linear_input_grad_kernel, INPUT_GRAD_CONFIGS, key=_KEY + ["SPLITS"])
_weight_grad = DotKernel(linear_weight_grad_kernel, WEIGHT_GRAD_CONFIGS, key=_KEY)


INTERPRETER_SPLITS = 1  # the tests raise it to run the split reduction on the CPU
INTERPRETER_SPLIT = True  # the tests clear it to run an `unsplit` config's code beside SPLITS > 1


def _interpreter_split():
    """The SPLIT constexpr the interpreter's launches pass (GPU launches take it from the config)."""
    return {} if not INTERPRETING or INTERPRETER_SPLIT else {"SPLIT": False}


def _splits(rows, cols, reduction, moved_bytes, dtype, allow_tf32, device, tile=(128, 128)):
    """Programs sharing the reduction of each rows x cols output tile (split-K, see
    launch.split_count) where a batch-128 GEMM's tiles would fill under a quarter of the SMs
    (fc7's and fc8's input gradients, fc8's forward), up to one wave of programs. These GEMMs are
    bound by their weight's bytes, and the fp32 partials (written, then read back by the tile's
    last program) are bytes too: the static model counts them (Cost.workspace_bytes), and with
    them splitting fc6's and fc7's 64-tile forwards came out slower. The partials add at most
    the bytes the launch moves anyway (as the conv weight gradient's), each split reduces at
    least 256, and they index in int32. `tile`: the largest tile of the kernel's tensor-core
    configs. The FMA tiles (IEEE fp32, fp64) are small enough to fill the GPU unsplit (and split,
    fp64's spilled with Triton 3.6)."""
    if INTERPRETING:
        return INTERPRETER_SPLITS
    if dot_class(dtype, dot_precision(dtype, allow_tf32)) == "fma":
        return 1
    tiles = cdiv(rows, tile[0]) * cdiv(cols, tile[1])
    if 4 * tiles >= sm_count(device):
        return 1
    partial = 2 * 4 * rows * cols
    most = min(moved_bytes // partial if partial else 1, reduction // 256,
               (2**31 - 1) // max(rows * cols, 1), cdiv(sm_count(device), tiles))
    return split_count(tiles, device, most=most, reduction=reduction)


def _config_splits(splits):
    """The splits a config runs with: the launch's, or 1 for an `unsplit` config."""
    return lambda meta: splits if meta.get("SPLIT", True) else 1


def _split_cost(flops, min_bytes, reduction, runs, workspace):
    """The Cost of a split-K launch, per config (`runs`: its splits, `_config_splits`): its trips
    over its share of the reduction, and with splits the partials' bytes (written and read back)
    and the last arrival's serial read of its tile's partials."""
    return Cost(flops, min_bytes,
                trips=lambda meta: cdiv(cdiv(reduction, meta["BLOCK_K"]), runs(meta)),
                workspace_bytes=lambda meta: workspace if runs(meta) > 1 else 0,
                tail_bytes=lambda meta: 4 * runs(meta) * meta["BLOCK_M"] * meta["BLOCK_N"]
                if runs(meta) > 1 else 0)


def _split_workspace(splits, rows, cols, dtype, device, stand_in):
    """(partials, counters, workspace bytes) of a split-K launch: the fp32 partial sums [splits,
    rows, cols], one arrival counter per output tile of the smallest config (16 x 16 is more
    than enough), and the bytes the partials write and read back (the model's Cost). One split:
    `stand_in` for both tensors (the kernel reads neither) and no workspace."""
    if splits == 1:
        return stand_in, stand_in, 0
    partials = empty((splits, rows, cols), accumulator_dtype(dtype), device)
    return partials, arrival_counters(cdiv(rows, 16) * cdiv(cols, 16), device), 2 * nbytes(partials)


def _seed_or(seed, stand_in):
    """The seed tensor, or without dropout any tensor for the pointer the kernel then never reads."""
    return seed if seed is not None else stand_in


def dropout_scale(p):
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


def linear_forward(x, weight, bias, relu, p, seed, allow_tf32, out_dtype=None):
    """y = dropout_p(relu?(x @ weight^T + bias)) for 2-D x; p == 0 means no dropout. y in
    `out_dtype` (default x's): e.g. fp32 logits straight from the fp32 accumulator."""
    m, k = x.shape
    n = weight.shape[0]
    y = empty((m, n), out_dtype or x.dtype, x.device)
    if y.numel() == 0:
        return y
    splits = _splits(m, n, k, nbytes(x, weight, y), x.dtype, allow_tf32, x.device, tile=(128, 64))
    runs = _config_splits(splits)
    grid = lambda meta: (cdiv(m, meta["BLOCK_M"]), cdiv(n, meta["BLOCK_N"]), runs(meta))
    partials, counters, workspace = _split_workspace(splits, m, n, x.dtype, x.device, y)
    cost = _split_cost(2 * m * n * k, nbytes(x, weight, bias, y), k, runs, workspace)
    _forward.launch(grid, x, weight, bias if bias is not None else weight, y, partials, counters,
                    m, n, k, splits, *x.stride(), *weight.stride(), *y.stride(), _seed_or(seed, x), p,
                    dropout_scale(p),
                    dtype=x.dtype, allow_tf32=allow_tf32, tile_dims=(m, n, k), cost=cost,
                    HAS_BIAS=bias is not None, APPLY_RELU=relu, DROPOUT=p > 0,
                    **_interpreter_split())
    return y


def linear_input_grad(dy, y, weight, relu, p, seed, allow_tf32, dtype=None):
    """dx in `dtype`, the forward input's (default dy's), which the GEMM also computes in: dy of
    an fp32 output (`linear_forward`'s out_dtype) is rounded to it in the loads."""
    m, n = dy.shape
    k = weight.shape[1]
    dtype = dtype or dy.dtype
    dx = empty((m, k), dtype, dy.device)
    if dx.numel() == 0:
        return dx
    splits = _splits(m, k, n, nbytes(dy, weight, dx), dtype, allow_tf32, dy.device)
    runs = _config_splits(splits)
    partials, counters, workspace = _split_workspace(splits, m, k, dtype, dy.device, dx)
    cost = _split_cost(2 * m * n * k, nbytes(dy, y if relu else None, weight, dx), n, runs,
                       workspace)
    y = y if relu else dy
    grid = lambda meta: (cdiv(m, meta["BLOCK_M"]), cdiv(k, meta["BLOCK_N"]), runs(meta))
    _input_grad.launch(grid, dy, y, weight, dx, partials, counters, m, n, k, splits,
                       *dy.stride(), *y.stride(), *weight.stride(), *dx.stride(),
                       _seed_or(seed, dy), p, dropout_scale(p), dtype=dtype,
                       allow_tf32=allow_tf32, tile_dims=(m, k, n), cost=cost, APPLY_RELU=relu,
                       DROPOUT=p > 0, **_interpreter_split())
    return dx


def linear_weight_bias_grad(dy, y, x, relu, p, seed, need_weight, need_bias, allow_tf32,
                            param_dtype=None):
    """(dw, db) in `param_dtype` (the weight's; default dy's); either None when not needed."""
    m, n = dy.shape
    k = x.shape[1]
    param_dtype = param_dtype or dy.dtype
    dw = empty((n, k), param_dtype, dy.device) if need_weight else None
    db = empty((n,), param_dtype, dy.device) if need_bias else None
    if m == 0 or n == 0:
        return tuple(t.zero_() if t is not None else None for t in (dw, db))
    if k == 0:  # dw is empty: nothing to launch for it (a grid of 0 programs would skip db too)
        need_weight = False
        if not need_bias:
            return dw, db
    cost = Cost(2 * m * n * k if need_weight else 0,
                nbytes(dy, y if relu else None, x if need_weight else None, dw, db),
                trips=lambda meta: cdiv(m, meta["BLOCK_K"]))
    y = y if relu else dy
    grid = lambda meta: (cdiv(n, meta["BLOCK_M"]), cdiv(k, meta["BLOCK_N"]) if need_weight else 1)
    _weight_grad.launch(grid, dy, y, x, dw if need_weight else dy, db if need_bias else dy,
                        m, n, k, *dy.stride(), *y.stride(), *x.stride(), _seed_or(seed, dy), p,
                        dropout_scale(p),
                        dtype=x.dtype, allow_tf32=allow_tf32, tile_dims=(n, k, m), cost=cost,
                        APPLY_RELU=relu, DROPOUT=p > 0, COMPUTE_WEIGHT=need_weight,
                        COMPUTE_BIAS=need_bias)
    return dw, db
