"""Space-to-depth: the input rearrangement that turns a strided conv on few channels into a
stride-1 conv on s*s times the channels (AlexNet's conv1: 3 channels, 11x11, stride 4 becomes 3x3
on 48 channels; see tritonalex/ops/conv.py's `_space_to_depth` for the algebra).

    y[n, (i*s + j)*C + c, u, v] = x[n, c, s*u + i - pad_h, s*v + j - pad_w]   (0 outside x)

for u < U, v < V: the zero padding and the crop to s*U x s*V rows and columns in the same pass,
written channels_last (what the conv kernels read best). Minimum bytes: x read once, y written
once.

Channels_last x (RUNS, the compiled net's images): output pixel (u, v)'s channels for block row
i are the s*C elements of input row s*u + i from column s*v - pad_w on, one contiguous run in
memory on both sides. A program owns BLOCK_P output pixels of one output row and copies, per
block row, their runs as a BLOCK_P x BLOCK_T tile (BLOCK_T >= s*C, the rest masked): vector
loads and stores. Any other layout: a program owns BLOCK_P output pixels x all s*s*C output
channels and gathers element by element.
"""

import torch
import triton
import triton.language as tl

from .launch import Cost, cdiv, empty, launch, nbytes, needs_int64, tile

GPU_TILE = (64, 4)  # output pixels per program, warps
INTERPRETER_TILE = (4096, 1)


@triton.jit
def space_to_depth_kernel(
    x_ptr,  # input [N, C, H, W], any strides (RUNS: channels_last)
    y_ptr,  # output [N, S*S*C, U, V], channels_last
    H, W, U, V,  # input and output sizes
    pad_h, pad_w,  # rows and columns of zeros before the input (top, left)
    sx_n, sx_c, sx_h, sx_w,  # input strides
    sy_n, sy_c, sy_h, sy_w,  # output strides
    C: tl.constexpr,  # input channels (a run is S*C elements)
    S: tl.constexpr,  # the block side s
    RUNS: tl.constexpr,  # x is channels_last: copy whole runs (sx_c == 1, sx_w == C)
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    BLOCK_P: tl.constexpr, BLOCK_T: tl.constexpr,  # tile: output pixels x run (or channels)
):
    n = tl.program_id(1)
    if INDEX_64:
        n = n.to(tl.int64)
    if RUNS:
        # Map the program to output row u and BLOCK_P pixels v of it; t indexes a run: (j, c).
        blocks = tl.cdiv(V, BLOCK_P)
        v = (tl.program_id(0) % blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
        u = tl.program_id(0) // blocks + tl.zeros_like(v)  # per pixel (the interpreter's `&`
        # of a tensor and a scalar comes out int32, which its masked loads reject)
        t = tl.arange(0, BLOCK_T)
        if INDEX_64:
            u = u.to(tl.int64)
            v = v.to(tl.int64)
        iw = (S * v - pad_w)[:, None] + (t // C)[None, :]
        ok = (v < V)[:, None] & (t < S * C)[None, :]
        # Iterate over the block rows i: input row S*u + i fills output channels i*S*C + t.
        for i in tl.static_range(S):
            ih = S * u + i - pad_h
            inside = ok & ((ih >= 0) & (ih < H))[:, None] & (iw >= 0) & (iw < W)
            run = (ih * sx_h + (S * v - pad_w) * C)[:, None] + t[None, :]
            val = tl.load(x_ptr + n * sx_n + run, mask=inside, other=0.0)
            out = (u * sy_h + v * sy_w)[:, None] + (i * S * C + t)[None, :]
            tl.store(y_ptr + n * sy_n + out, val, mask=ok)
    else:
        # Map the program to a block of output pixels (u, v); every output channel q.
        p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        q = tl.arange(0, BLOCK_T)
        if INDEX_64:
            p = p.to(tl.int64)
        u = p // V
        v = p % V
        p_ok = p < U * V
        # Output channel q = (i*S + j)*C + c reads input row S*u + i, column S*v + j, channel c.
        c = q % C
        j = (q // C) % S
        i = q // (S * C)
        q_ok = q < S * S * C
        ih = (S * u - pad_h)[:, None] + i[None, :]
        iw = (S * v - pad_w)[:, None] + j[None, :]
        ok = p_ok[:, None] & q_ok[None, :]
        inside = ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        # Gather (zero in the padding), then write back one pixel's channels contiguously.
        val = tl.load(x_ptr + n * sx_n + (c * sx_c)[None, :] + ih * sx_h + iw * sx_w, mask=inside,
                      other=0.0)
        tl.store(y_ptr + n * sy_n + (u * sy_h + v * sy_w)[:, None] + (q * sy_c)[None, :], val,
                 mask=ok)


def space_to_depth(x, s, pad_h, pad_w, u, v):
    """y (see the module docstring) of 4-D x, channels_last, in x's dtype."""
    n, c, h, w = x.shape
    y = empty((n, s * s * c, u, v), x.dtype, x.device, memory_format=torch.channels_last)
    if y.numel() == 0:
        return y
    # Runs need (w, c) contiguous within a row (a dim of size 1 may have any stride).
    runs = ((x.stride(1) == 1 or c == 1) and (x.stride(3) == c or w == 1))
    if runs:
        block_v, warps = tile(GPU_TILE, INTERPRETER_TILE, fit=(v,))
        grid, block_t = (u * cdiv(v, block_v), n), triton.next_power_of_2(s * c)
    else:
        block_v, warps = tile(GPU_TILE, INTERPRETER_TILE, fit=(u * v,))
        grid, block_t = (cdiv(u * v, block_v), n), triton.next_power_of_2(s * s * c)
    launch(space_to_depth_kernel, grid,
           x, y, h, w, u, v, pad_h, pad_w, *x.stride(), *y.stride(), C=c, S=s, RUNS=runs,
           INDEX_64=needs_int64(x, y), BLOCK_P=block_v, BLOCK_T=block_t, num_warps=warps,
           cost=Cost(0, nbytes(x, y)))
    return y
