"""The model checked on a published figure: a plain Triton matmul against a published H100 time.

`matmul_kernel` is the classic tiled GEMM of Triton's matrix-multiplication tutorial (row-major A
and B, fp32 accumulator, BLOCK_K steps; no grouped ordering, which changes L2 reuse, not the
model's terms). `published_check` estimates it at the bf16 GEMM 4224 x 2048 x 8192 that Horace He
timed on an H100 at 780 TFLOP/s (gist.github.com/Chillee/2ec89696db8b7ed1c24461159e325405,
"H100 peak matmul FLOPS", torch.compile max-autotune; 181 us), with the tutorial's first Hopper
config (128 x 256 x 64, 8 warps, 3 stages). The published kernel is a tuned library GEMM, so a
plain Triton kernel should land at or above it; `tests/test_perf.py` holds the estimate within a
factor of 1.5 of it either way.

Run with TRITON_INTERPRET=0, like everything in tritonalex.perf.
"""

import math

import triton
import triton.language as tl

from . import model
from .capture import PointerArg
from .sass import analyze, compile_launch

PUBLISHED = dict(m=4224, n=2048, k=8192, us=2 * 4224 * 2048 * 8192 / 780e12 * 1e6,
                 source="gist.github.com/Chillee/2ec89696db8b7ed1c24461159e325405 (780 TFLOP/s)")


@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K, sa_m, sa_k, sb_k, sb_n, sc_m, sc_n,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    a = a_ptr + rm[:, None] * sa_m + rk[None, :] * sa_k
    b = b_ptr + rk[:, None] * sb_k + rn[None, :] * sb_n
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        acc = tl.dot(tl.load(a, mask=(k0 + rk)[None, :] < K, other=0.0),
                     tl.load(b, mask=(k0 + rk)[:, None] < K, other=0.0), acc)
        a += BLOCK_K * sa_k
        b += BLOCK_K * sb_k
    c = c_ptr + rm[:, None] * sc_m + rn[None, :] * sc_n
    tl.store(c, acc.to(c_ptr.dtype.element_ty), mask=(rm < M)[:, None] & (rn < N)[None, :])


def estimate_matmul(m, n, k, block=(128, 256, 64), warps=8, stages=3, arch=90):
    """The model's estimate (a dict, as `model.estimate`) of `matmul_kernel` at m x n x k, bf16."""
    import torch

    card = model.CARDS[model.CARD_FOR_ARCH[arch]]
    ptr = PointerArg(torch.bfloat16, 0)
    bm, bn, bk = block
    compiled = compile_launch(matmul_kernel, (ptr, ptr, ptr, m, n, k, k, 1, n, 1, n, 1),
                              dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps,
                                   num_stages=stages), arch)
    facts = analyze(compiled, arch)
    ctas = math.ceil(m / bm) * math.ceil(n / bn)
    flops, min_bytes = 2 * m * n * k, 2 * (m * k + k * n + m * n)
    est = model.estimate(card, facts, ctas, warps, math.ceil(k / bk), flops, min_bytes, "bf16")
    est.update(facts=facts, floor_us=model.floor_us(card, flops, min_bytes, "bf16"))
    return est


def published_check():
    """(estimate in us, published us): the model against the published figure."""
    est = estimate_matmul(PUBLISHED["m"], PUBLISHED["n"], PUBLISHED["k"])
    return est["estimate_us"], PUBLISHED["us"]
