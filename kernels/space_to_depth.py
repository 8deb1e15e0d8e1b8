"""Space-to-depth: the input rearrangement that turns a strided conv on few channels into a
stride-1 conv on s*s times the channels (AlexNet's conv1: 3 channels, 11x11, stride 4 becomes 3x3
on 48 channels; see tritonalex/ops/conv.py's `_space_to_depth` for the algebra).

    y[n, (i*s + j)*C + c, u, v] = x[n, c, s*u + i - pad_h, s*v + j - pad_w]   (0 outside x)

for u < U, v < V: the zero padding and the crop to s*U x s*V rows and columns in the same pass,
written channels_last (what the conv kernels read best). Minimum bytes: x read once, y written
once. Each program owns BLOCK_P output pixels of one image x all s*s*C output channels: the
stores are contiguous runs of s*s*C elements; the loads gather runs of s*C (j, c) elements.
"""

import torch
import triton
import triton.language as tl

from .launch import Cost, cdiv, empty, launch, nbytes, needs_int64, tile

GPU_TILE = (64, 4)  # output pixels per program, warps
INTERPRETER_TILE = (4096, 1)


@triton.jit
def space_to_depth_kernel(
    x_ptr,  # input [N, C, H, W], any strides
    y_ptr,  # output [N, S*S*C, U, V], any strides
    C, H, W, U, V,  # input channels and size, output size
    pad_h, pad_w,  # rows and columns of zeros before the input (top, left)
    sx_n, sx_c, sx_h, sx_w,  # input strides
    sy_n, sy_c, sy_h, sy_w,  # output strides
    S: tl.constexpr,  # the block side s
    INDEX_64: tl.constexpr,  # compute element offsets in int64
    BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,  # tile: output pixels x output channels
):
    # Map the program to image n and a block of output pixels (u, v); every output channel q.
    n = tl.program_id(1)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    q = tl.arange(0, BLOCK_Q)
    if INDEX_64:
        n = n.to(tl.int64)
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
    block_p, warps = tile(GPU_TILE, INTERPRETER_TILE, fit=(u * v,))
    launch(space_to_depth_kernel, (cdiv(u * v, block_p), n),
           x, y, c, h, w, u, v, pad_h, pad_w, *x.stride(), *y.stride(), S=s,
           INDEX_64=needs_int64(x, y), BLOCK_P=block_p,
           BLOCK_Q=triton.next_power_of_2(s * s * c), num_warps=warps,
           cost=Cost(0, nbytes(x, y)))
    return y
