"""The paper's training augmentation of a batch as one kernel: from stored uint8 images to the
network's normalized float input.

For output image n, pixel (oy, ox) and channel c:

    src  = images[index[n], top[n] + oy, left[n] + (crop - 1 - ox if flip[n] else ox), c]
    out  = (src / 255 + shift[n, c] - mean[c]) / std[c]

i.e. a random crop, a horizontal reflection, the PCA lighting shift (computed per image on the
host: a 3x3 product) and the per-channel normalization, reading each stored byte once and writing
each output element once. `index` picks the batch's images out of a larger uint8 tensor (the
whole built-in dataset can live on the GPU), or is 0..N-1 for a loaded batch. The same kernel does
evaluation's center crop and the 10-crop test (one output image per crop). No backward: the input
is data.
"""

import torch
import triton
import triton.language as tl

from .launch import Cost, cdiv, empty, launch, nbytes, tile

BLOCK_GPU = 256  # output pixels per program; each loads 3 strided bytes per pixel
BLOCK_INTERPRETER = 1 << 14  # a whole image per program: the interpreter pays per program
NUM_WARPS = 4


@triton.jit
def augment_forward_kernel(
    src_ptr,  # stored images, uint8 (M, H, W, CHANNELS), any strides
    dst_ptr,  # output, (N, CHANNELS, crop, crop), any strides (NCHW or channels_last)
    index_ptr,  # int64 (N,): which stored image each output image reads
    top_ptr,  # int32 (N,): crop's first row in the stored image
    left_ptr,  # int32 (N,): crop's first column
    flip_ptr,  # int32 (N,): 1 to reflect horizontally
    shift_ptr,  # fp32 (N, CHANNELS) contiguous: lighting shift in [0, 1] pixel units
    mean_ptr,  # fp32 (CHANNELS,): per-channel mean in [0, 1] units
    inv_std_ptr,  # fp32 (CHANNELS,): 1 / per-channel std
    crop,  # output height = width
    s_m, s_h, s_w, s_c,  # source strides (elements)
    d_n, d_c, d_h, d_w,  # output strides (elements)
    CHANNELS: tl.constexpr,  # channels (3 for RGB)
    BLOCK: tl.constexpr,  # output pixels per program
):
    n = tl.program_id(0)
    pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = pix < crop * crop
    oy = pix // crop
    ox = pix % crop
    # Per-image parameters: scalars, loaded once per program.
    image = tl.load(index_ptr + n)
    top = tl.load(top_ptr + n)
    left = tl.load(left_ptr + n)
    flip = tl.load(flip_ptr + n)
    ix = tl.where(flip != 0, crop - 1 - ox, ox) + left
    src = src_ptr + image * s_m + (oy + top).to(tl.int64) * s_h + ix.to(tl.int64) * s_w
    dst = dst_ptr + n.to(tl.int64) * d_n + oy.to(tl.int64) * d_h + ox.to(tl.int64) * d_w
    for c in tl.static_range(CHANNELS):
        value = tl.load(src + c * s_c, mask=mask, other=0).to(tl.float32) * (1.0 / 255.0)
        offset = tl.load(shift_ptr + n * CHANNELS + c) - tl.load(mean_ptr + c)
        out = (value + offset) * tl.load(inv_std_ptr + c)
        tl.store(dst + c * d_c, out.to(dst_ptr.dtype.element_ty), mask=mask)


def augment_forward(images, index, top, left, flip, shift, mean, std, crop, dtype,
                    memory_format=torch.contiguous_format):
    """Launch the kernel; arguments as in the kernel, already checked by the caller
    (tritonalex.data.augment.augment). Returns (N, C, crop, crop) in `dtype` and `memory_format`."""
    n, channels = index.shape[0], images.shape[3]
    out = empty((n, channels, crop, crop), dtype, images.device, memory_format)
    if n == 0:
        return out
    block = min(tile(BLOCK_GPU, BLOCK_INTERPRETER), triton.next_power_of_2(crop * crop))
    grid = (n, cdiv(crop * crop, block))
    # Minimum bytes: the cropped uint8 pixels read once, the output written once.
    cost = Cost(0, n * channels * crop * crop + nbytes(out, index, top, left, flip, shift))
    launch(augment_forward_kernel, grid,
           images, out, index, top, left, flip, shift, mean, 1.0 / std, crop, *images.stride(),
           *out.stride(), CHANNELS=channels, BLOCK=block, num_warps=NUM_WARPS, cost=cost)
    return out
