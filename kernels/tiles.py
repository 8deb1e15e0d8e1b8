"""Triton helpers shared by several kernel files (each op's file imports these, never another
op's file): the accumulate-dot, the bias+ReLU epilogue, split reductions (the conv weight
gradient's and the FC GEMMs' split-K), window inversion, channel tiles, and the LRN's window
math (the LRN kernels and the fused LRN -> max-pool kernels both compute it).

The LRN's scalar parameters (k, alpha/size, beta) are read from a small tensor in the accumulator
dtype (`lrn_params`, through `launch.scalars`). Powers are exp2(-beta * log2(s)), which works in
the interpreter (libdevice pow does not).
"""

import triton
import triton.language as tl

from .launch import INTERPRETING, accumulator_dtype, scalars


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
def last_arrival(count_ptr, tile, SPLITS):
    """After this program stored its partial sums of output tile `tile`: whether it is the last of
    the tile's SPLITS programs to arrive (launch.arrival_counters), which then adds the partials
    (loaded .cg, from L2, where the other SMs' stores are) and stores 0 at count_ptr + tile for
    the next launch. Every thread's stores happen before the count (release), the last
    arrival's loads after it (acquire)."""
    tl.debug_barrier()
    return tl.atomic_add(count_ptr + tile, 1, sem="acq_rel", scope="gpu") == SPLITS - 1


@triton.jit
def split_range(split, N, STEP: tl.constexpr, SPLITS):
    """[start, end) of a reduction over N that split `split` of SPLITS takes: whole STEPs. One
    split (Triton specializes an argument equal to 1 as a constant): [0, N), so the loop's start
    is a constant 0 (a runtime start cost fp64 and tf32 tiles a spilled register)."""
    if SPLITS == 1:
        start = 0
        end = N
    else:
        per = tl.cdiv(tl.cdiv(N, STEP), SPLITS) * STEP
        start = split * per
        end = tl.minimum(start + per, N)
    return start, end


@triton.jit
def sum_partials(part_ptr, off, mask, stride, SPLITS, ACC: tl.constexpr):
    """The sum, in split order, of SPLITS partial tiles stored `stride` apart at offsets `off`
    (by the last program to arrive: `last_arrival`)."""
    total = tl.zeros(off.shape, dtype=ACC)
    for s in range(SPLITS):
        total += tl.load(part_ptr + s * stride + off, mask=mask, other=0.0, cache_modifier=".cg")
    return total


@triton.jit
def window_source(i, pad, tap, dil, stride, O, ok, DIVISIBLE: tl.constexpr = False):
    """Along one axis, the output position o whose window reads input position i at tap `tap`
    (o*stride = i + pad - tap*dil), and whether there is one: the right side must be a
    non-negative multiple of the stride below O*stride (DIVISIBLE: the caller knows it is a
    multiple, see `stride_class`). The conv input gradient and the max-pool backward invert
    their windows with it."""
    t = i + pad - tap * dil
    o = t // stride
    if DIVISIBLE:
        return o, ok & (t >= 0) & (o < O)
    return o, ok & (t >= 0) & (t % stride == 0) & (o < O)


@triton.jit
def stride_class(cell, pad, E: tl.constexpr, STRIDE: tl.constexpr):
    """Input positions by stride class: cell `cell`'s member of class E is the i with
    (i + pad) % STRIDE == E, i = STRIDE * cell + E - pad % STRIDE. A window tap `tap` (dilation
    dil) reaches an output from every member of class E, or from none: iff
    (E - tap * dil) % STRIDE == 0, known when the kernel is compiled, so a gather over a class's
    positions skips the other taps outright (a 3x3 stride-2 window: 2.25 taps per position, not
    9)."""
    return STRIDE * cell + E - pad % STRIDE


def stride_cells(size, pad, stride):
    """How many cells of `stride_class` cover positions 0..size-1."""
    return (size + pad % stride + stride - 1) // stride


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
def channel_values(x_ptr, cc, lo, hi, sx_c, col, col_ok, ACC: tl.constexpr):
    """x at channels cc (0 outside each row's group lo..hi-1) x columns col, in ACC."""
    ok = (cc >= lo) & (cc < hi)
    return tl.load(x_ptr + (cc * sx_c)[:, None] + col[None, :], mask=ok[:, None] & col_ok[None, :],
                   other=0.0).to(ACC)


@triton.jit
def squares(x_ptr, cc, lo, hi, sx_c, col, col_ok, ACC: tl.constexpr):
    """x^2 at channels cc (0 outside each row's group lo..hi-1) x columns col."""
    v = channel_values(x_ptr, cc, lo, hi, sx_c, col, col_ok, ACC)
    return v * v


@triton.jit
def lrn_scale(x_ptr, col, col_ok, c, lo, hi, sx_c, SIZE: tl.constexpr, k, alpha_over_size,
              ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """(s, x): s = k + alpha/size * (windowed sum of squares) for channels c x columns col
    (offsets), the window cut at each channel's group bounds lo..hi-1 (see `channel_group`), and
    x itself there (the window's middle load; 0 where masked), so callers load nothing twice."""
    acc = tl.zeros((BLOCK_C, BLOCK_S), dtype=ACC)
    for d in tl.static_range(SIZE):
        v = channel_values(x_ptr, c + d - SIZE // 2, lo, hi, sx_c, col, col_ok, ACC)
        if d == SIZE // 2:
            x = v
        acc += v * v
    return k + alpha_over_size * acc, x


@triton.jit
def lrn_scale_runs(x_ptr, c4, off, ok, lo, hi, sx_c, SIZE: tl.constexpr, k, alpha_over_size,
                   ACC: tl.constexpr, RUN: tl.constexpr):
    """(s, x) as `lrn_scale`, on a tile of runs: element (g, p, r) is channel c4[g] + r at offset
    off[p] (c4 [G, 1, 1], the runs' first channels; off and its mask ok [1, P, 1]; lo, hi the
    runs' groups, which hold whole runs).

    RUN == 4 and SIZE <= 5: one vector load of the run's 4 channels and one of 2 channels either
    side (its halo) give the 8 squares the run's 4 windows sum, so each x is loaded and squared
    about 2 times instead of SIZE (the band of AlexNet's size 5). Else (RUN == 1) every window
    channel is its own shifted load, as `lrn_scale`."""
    r = tl.arange(0, RUN)[None, None, :]
    if RUN == 4 and SIZE <= 5:
        # Groups hold whole runs: the run is in its group or not at all, and its halo below
        # (c4 - 2, c4 - 1) exists unless it starts the group, above (c4 + 4, c4 + 5) unless it
        # ends it.
        in_group = (c4 < hi) & ok
        x = widen(tl.load(x_ptr + (c4 + r) * sx_c + off, mask=in_group, other=0.0), ACC)
        j = tl.arange(0, 2)[None, None, :]
        below = widen(tl.load(x_ptr + (c4 - 2 + j) * sx_c + off, mask=in_group & (c4 > lo),
                              other=0.0), ACC)
        above = widen(tl.load(x_ptr + (c4 + 4 + j) * sx_c + off, mask=(c4 + 4 < hi) & ok,
                              other=0.0), ACC)
        q0, q1, q2, q3 = split_run(x * x)
        qm2, qm1 = tl.split(below * below)
        q4, q5 = tl.split(above * above)
        s0, s1, s2, s3 = run_window_sums(qm2, qm1, q0, q1, q2, q3, q4, q5, SIZE)
        return k + alpha_over_size * join_run(s0, s1, s2, s3), x
    acc = tl.zeros((c4 + r + off).shape, dtype=ACC)
    for d in tl.static_range(SIZE):
        cc = c4 + r + d - SIZE // 2
        v = tl.load(x_ptr + cc * sx_c + off, mask=(cc >= lo) & (cc < hi) & ok, other=0.0).to(ACC)
        if d == SIZE // 2:
            x = v
        acc += v * v
    return k + alpha_over_size * acc, x


# `widen`'s inline PTX, on a GPU only (the interpreter cannot run PTX; see FAST_LOG2 below).
FAST_BF16: tl.constexpr = tl.constexpr(not INTERPRETING)


@triton.jit
def widen(v, ACC: tl.constexpr):
    """v in ACC. bf16 -> fp32 on a GPU by moving bits, two values per 32-bit register: one
    instruction each (the compiler's conversion extracts a register's high half, then shifts it
    back: two), the fp32 value being the bf16 bits followed by 16 zeros."""
    if FAST_BF16 and v.dtype == tl.bfloat16 and ACC == tl.float32:
        return tl.inline_asm_elementwise(
            "{ shl.b32 $0, $2, 16; and.b32 $1, $2, 0xffff0000; }", "=r,=r,r", [v],
            dtype=tl.float32, is_pure=True, pack=2)
    return v.to(ACC)


@triton.jit
def split_run(v):
    """The 4 channels of a [G, P, 4] run tile as 4 [G, P] tiles (no data moves: a run is one
    thread's registers)."""
    even, odd = tl.split(tl.reshape(v, (v.shape[0], v.shape[1], 2, 2)))  # r = 2 i + j: j = 0, 1
    v0, v2 = tl.split(even)
    v1, v3 = tl.split(odd)
    return v0, v1, v2, v3


@triton.jit
def join_run(v0, v1, v2, v3):
    """`split_run` undone: 4 [G, P] tiles as one [G, P, 4]."""
    v = tl.join(tl.join(v0, v2), tl.join(v1, v3))  # [G, P, i, j], r = 2 i + j
    return tl.reshape(v, (v0.shape[0], v0.shape[1], 4))


@triton.jit
def run_window_sums(qm2, qm1, q0, q1, q2, q3, q4, q5, SIZE: tl.constexpr):
    """The window sums of a run's 4 channels from values at offsets -2 .. 5 of its first (the
    squares of a scale; the backward's t terms): channel r's window is r - SIZE // 2 ..
    r + (SIZE - 1) // 2. SIZE 5 shares partial sums (11 adds for the 4, not 16), each sum holding
    only its window's values."""
    if SIZE == 5:
        mid = q1 + q2
        u = q0 + mid  # q0 + q1 + q2
        w = mid + q3  # q1 + q2 + q3
        return (qm2 + qm1) + u, (qm1 + q0) + w, u + (q3 + q4), w + (q4 + q5)
    squares = (qm2, qm1, q0, q1, q2, q3, q4, q5)  # channel r's window: r - SIZE // 2 + 2 ..
    return (tuple_sum(squares, 2 - SIZE // 2, 2 + (SIZE - 1) // 2),
            tuple_sum(squares, 3 - SIZE // 2, 3 + (SIZE - 1) // 2),
            tuple_sum(squares, 4 - SIZE // 2, 4 + (SIZE - 1) // 2),
            tuple_sum(squares, 5 - SIZE // 2, 5 + (SIZE - 1) // 2))


@triton.jit
def tuple_sum(v, FIRST: tl.constexpr, LAST: tl.constexpr):
    """v[FIRST] + ... + v[LAST] of a tuple of tiles, in index order."""
    total = v[FIRST]
    for i in tl.static_range(FIRST + 1, LAST + 1):
        total += v[i]
    return total


@triton.jit
def lrn_walk_next(x_next, g_next, q_prev, q, x_prev, x, g, t_prev2, t_prev, own_prev, in_group,
                  dx_ptrs, dx_mask, k, alpha_over_size, beta, SIZE: tl.constexpr,
                  NORMAL_S: tl.constexpr, MASK_INPUT: tl.constexpr):
    """One step of the walk (`lrn_walk_step`) given run i + 1's x and g: stores run i - 1's
    gradient at dx_ptrs under dx_mask (MASK_INPUT: zeroed where its x <= 0, the derivative of the
    ReLU that produced x, deferred to here by its conv) and returns the state of the next step,
    (q_prev, q, x_prev, x, g, t_prev2, t_prev, own_prev)."""
    q_next = x_next * x_next
    t, own, dx = lrn_walk_step(q_prev, q, q_next, x_prev, x, g, t_prev2, t_prev, own_prev,
                               in_group, k, alpha_over_size, beta, SIZE, NORMAL_S)
    if MASK_INPUT:
        dx = tl.where(x_prev > 0, dx, 0.0)
    tl.store(dx_ptrs, dx.to(dx_ptrs.dtype.element_ty), mask=dx_mask)
    return q, q_next, x, x_next, g_next, t_prev, t, own


@triton.jit
def lrn_walk_step(q_prev, q, q_next, x_prev, x, g, t_prev2, t_prev, own_prev, in_group, k,
                  alpha_over_size, beta, SIZE: tl.constexpr, NORMAL_S: tl.constexpr):
    """One step of the LRN backward's walk along each pixel's channels in runs of 4 (tiles
    [1, P, 4], a run in one thread's registers; 0 outside the group):

        da_c = g_c s_c^-beta - (2 alpha beta / size) a_c * sum_{j: c in window(j)} t_j,
        t_j = g_j a_j s_j^(-beta-1).

    With the squares q of runs i-1, i, i+1 (SIZE <= 5: no window reaches further) and run i's x
    and g, it forms run i's s (each once), t and own terms g s^-beta; with the t of runs i-2,
    i-1 and i, run i-1's gradient. Returns (t, own term) of run i, da of run i-1. `in_group`
    ([1, 1, 4]): run i's channels in the group (t is 0 outside: needed only where s may be 0, not
    NORMAL_S).
    Each sum is summed whole (a NaN reaches only the windows that hold it), the 4 of a run
    sharing partial sums (`run_window_sums`)."""
    qs = split_run(q_prev) + split_run(q) + split_run(q_next)  # offset o of run i at o + 4
    w0, w1, w2, w3 = run_window_sums(qs[2], qs[3], qs[4], qs[5], qs[6], qs[7], qs[8], qs[9],
                                     SIZE)
    x0, x1, x2, x3 = split_run(x)
    g0, g1, g2, g3 = split_run(g)
    in0, in1, in2, in3 = split_run(in_group)
    t0, own0 = _walk_term(w0, x0, g0, in0, k, alpha_over_size, beta, NORMAL_S)
    t1, own1 = _walk_term(w1, x1, g1, in1, k, alpha_over_size, beta, NORMAL_S)
    t2, own2 = _walk_term(w2, x2, g2, in2, k, alpha_over_size, beta, NORMAL_S)
    t3, own3 = _walk_term(w3, x3, g3, in3, k, alpha_over_size, beta, NORMAL_S)
    # Run i-1's cross terms: channel c sums the t_j of j in c - (SIZE-1)//2 .. c + SIZE//2, its
    # window mirrored (the same window for odd sizes).
    ts = split_run(t_prev2) + split_run(t_prev) + (t0, t1, t2, t3)  # run i-1's o at o + 4
    if SIZE % 2 == 1:
        c0, c1, c2, c3 = run_window_sums(ts[2], ts[3], ts[4], ts[5], ts[6], ts[7], ts[8], ts[9],
                                         SIZE)
    else:
        c0 = tuple_sum(ts, 4 - (SIZE - 1) // 2, 4 + SIZE // 2)
        c1 = tuple_sum(ts, 5 - (SIZE - 1) // 2, 5 + SIZE // 2)
        c2 = tuple_sum(ts, 6 - (SIZE - 1) // 2, 6 + SIZE // 2)
        c3 = tuple_sum(ts, 7 - (SIZE - 1) // 2, 7 + SIZE // 2)
    cross = join_run(c0, c1, c2, c3)
    dx_prev = own_prev - 2.0 * alpha_over_size * beta * x_prev * cross
    return join_run(t0, t1, t2, t3), join_run(own0, own1, own2, own3), dx_prev


@triton.jit
def _walk_term(window, x, g, in_group, k, alpha_over_size, beta, NORMAL_S: tl.constexpr):
    """(t, g s^-beta) of one channel from its window's sum of squares (see `lrn_walk_step`):
    two powers of one logarithm (an exp2 costs one instruction more than s^(-beta-1) * s, whose
    infinite s would need a select to give torch's 0, three)."""
    log2_s = log2_of(k + alpha_over_size * window, NORMAL_S)
    t = g * x * tl.exp2(-(beta + 1.0) * log2_s)  # s^(-beta-1), no division
    if not NORMAL_S:  # outside the group x = g = 0, but s may be 0: 0 * inf
        t = tl.where(in_group, t, 0.0)
    return t, g * tl.exp2(-beta * log2_s)


@triton.jit
def lrn_load_params(params_ptr):
    """(k, alpha / size, beta) from the parameter tensor made by `lrn_params`."""
    return tl.load(params_ptr), tl.load(params_ptr + 1), tl.load(params_ptr + 2)


# On a GPU, fp32 logarithms are the hardware's approximate lg2 (MUFU.LG2, absolute error about
# 2^-22 in log2 s: a relative error near 1e-7 in s^-beta), as tl.exp2 already is its ex2: tl.log2
# compiles to libdevice's exact log2f, ~14 instructions, and the fused LRN -> max-pool forward
# takes one per tap. fp64 and the interpreter (which cannot run inline PTX) keep tl.log2.
FAST_LOG2: tl.constexpr = tl.constexpr(not INTERPRETING)


@triton.jit
def pow_neg(s, beta, NORMAL_S: tl.constexpr):
    """s ** -beta for s > 0, as exp2(-beta * log2(s))."""
    return tl.exp2(-beta * log2_of(s, NORMAL_S))


@triton.jit
def log2_of(s, NORMAL_S: tl.constexpr):
    """log2(s) (see FAST_LOG2). NORMAL_S: s is never subnormal (see `normal_scale`), so the
    hardware's lg2 needs no rescaling of subnormal inputs (3 fewer instructions; the same
    result)."""
    if FAST_LOG2 and s.dtype == tl.float32:
        return tl.inline_asm_elementwise(
            "lg2.approx.ftz.f32 $0, $1;" if NORMAL_S else "lg2.approx.f32 $0, $1;", "=r,r", [s],
            dtype=tl.float32, is_pure=True, pack=1)
    return tl.log2(s)


WALK_MAX_SIZE = 5  # (the tests lower it to 0 to run the sliding kernels)


def walks(size):
    """Whether the LRN backward walks each pixel's channels in runs of 4 (`lrn_walk_step`): its
    windows reach at most 2 channels beyond a run (AlexNet's 5)."""
    return 1 <= size <= WALK_MAX_SIZE


def walk_steps(group):
    """Steps of a walk over a group of `group` channels (its loop's trips): one per run of 4, and
    one more to finish the last run's gradient."""
    return triton.cdiv(group, 4) + 1


def normal_scale(k, alpha):
    """Whether every LRN scale s = k + alpha/size * (sum of squares) is a normal float: alpha >= 0
    and k >= 2^-125 (s >= k up to the sums' rounding; the kernels' NORMAL_S)."""
    return alpha >= 0 and k >= 2.0 ** -125


def lrn_params(k, alpha, beta, size, dtype, device):
    """[k, alpha/size, beta] as a tensor in the compute dtype of `dtype` (cached: launch.scalars)."""
    return scalars((k, alpha / size, beta), accumulator_dtype(dtype), device)
