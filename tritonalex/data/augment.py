"""The paper's data augmentation (section 4.1): random crops, horizontal reflections and PCA
lighting, then per-channel normalization; plus the center crop and the 10-crop test.

PCA lighting: with p_i, lambda_i the eigenvectors and eigenvalues of the 3x3 covariance of RGB
pixel values (here in [0, 1] units, over the training set), each image gets the shift
[p1 p2 p3] [a1 lambda1, a2 lambda2, a3 lambda3]^T with a_i ~ N(0, 0.1) drawn once per image per
epoch, added to every pixel. Normalization subtracts the training set's per-channel mean and
divides by its per-channel std (the paper subtracted the mean image; a per-channel mean and std is
today's convention and keeps one shape for every image size).

`augment` runs the fused Triton kernel (kernels/augment.py) on the triton backend and
`augment_reference`, plain torch ops, on the torch backend; the tests hold the two equal.
"""

import dataclasses

import torch

from ..kernels.augment import augment_forward


@dataclasses.dataclass
class ColorStats:
    """Per-channel mean and std and the RGB covariance's eigen-decomposition, in [0, 1] units."""

    mean: list
    std: list
    eigvals: list  # ascending, as torch.linalg.eigh returns them
    eigvecs: list  # eigvecs[c][i]: channel c of eigenvector i (columns are eigenvectors)

    @classmethod
    def from_images(cls, batches):
        """From uint8 (N, H, W, C) tensors (an iterable of batches), in float64."""
        count, total, outer = 0, 0.0, 0.0
        for batch in batches:
            pixels = batch.reshape(-1, batch.shape[-1]).to(torch.float64) / 255.0
            count += pixels.shape[0]
            total = total + pixels.sum(0)
            outer = outer + pixels.T @ pixels
        if count == 0:
            raise ValueError("no readable training image to compute the color statistics from "
                             "(every image sampled for them failed to decode)")
        mean = total / count
        cov = outer / count - torch.outer(mean, mean)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        std = cov.diagonal().clamp_min(1e-12).sqrt()
        return cls(mean.tolist(), std.tolist(), eigvals.clamp_min(0).tolist(), eigvecs.tolist())

    def lighting_shift(self, alphas):
        """(N, C) fp32 shifts for (N, C) magnitudes alpha: eigvecs @ (alpha * eigvals)."""
        eigvals = torch.tensor(self.eigvals, dtype=torch.float64)
        eigvecs = torch.tensor(self.eigvecs, dtype=torch.float64)
        return ((alphas.to(torch.float64) * eigvals) @ eigvecs.T).to(torch.float32)


@dataclasses.dataclass
class Views:
    """Which stored image, crop corner and reflection each output image is."""

    index: torch.Tensor  # int64 (N,)
    top: torch.Tensor  # int32 (N,)
    left: torch.Tensor  # int32 (N,)
    flip: torch.Tensor  # int32 (N,)
    alphas: torch.Tensor  # fp32 (N, C): PCA lighting magnitudes (zero for evaluation)


def random_views(index, stored, crop, generator, channels=3, alpha_std=0.1, flip=True):
    """Training views: uniform random crop corners, reflection with probability 1/2, alphas."""
    n = index.shape[0]
    drawn = dict(generator=generator, device=generator.device)  # where the generator draws
    top = torch.randint(0, stored - crop + 1, (n,), dtype=torch.int32, **drawn)
    left = torch.randint(0, stored - crop + 1, (n,), dtype=torch.int32, **drawn)
    flips = (torch.randint(0, 2, (n,), dtype=torch.int32, **drawn) if flip
             else torch.zeros(n, dtype=torch.int32, device=generator.device))
    alphas = torch.randn(n, channels, generator=generator, device=generator.device) * alpha_std
    return Views(index.to(torch.int64), top, left, flips, alphas)


def center_views(index, stored, crop, channels=3):
    """Evaluation: the center crop, no reflection, no lighting."""
    n, corner = index.shape[0], (stored - crop) // 2
    full = torch.full((n,), corner, dtype=torch.int32)
    return Views(index.to(torch.int64), full, full.clone(), torch.zeros(n, dtype=torch.int32),
                 torch.zeros(n, channels))


def ten_crop_views(index, stored, crop, channels=3):
    """The paper's test: four corner crops and the center crop, each with its reflection;
    output image 10*i + j is view j of image i."""
    far, mid = stored - crop, (stored - crop) // 2
    corners = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]
    top = torch.tensor([t for t, _ in corners] * 2, dtype=torch.int32)
    left = torch.tensor([le for _, le in corners] * 2, dtype=torch.int32)
    flip = torch.tensor([0] * 5 + [1] * 5, dtype=torch.int32)
    n = index.shape[0]
    return Views(index.to(torch.int64).repeat_interleave(10), top.repeat(n), left.repeat(n),
                 flip.repeat(n), torch.zeros(10 * n, channels))


def _check(images, views, crop, stats):
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"augment: images must be a uint8 (N, H, W, C) tensor, got "
                        f"{images.dtype} of shape {tuple(images.shape)}")
    _, h, w, c = images.shape
    if len(stats.mean) != c:
        raise ValueError(f"augment: color statistics have {len(stats.mean)} channels, images {c}")
    if crop > min(h, w) or crop <= 0:
        raise ValueError(f"augment: crop {crop} does not fit stored images of {h}x{w}")
    n = views.index.shape[0]
    if n and (views.index.min() < 0 or views.index.max() >= images.shape[0]):
        raise IndexError(f"augment: image index out of range for {images.shape[0]} images")
    if n and (views.top.min() < 0 or views.left.min() < 0 or views.top.max() > h - crop
              or views.left.max() > w - crop):
        raise ValueError("augment: a crop corner lies outside the stored image")


def augment(images, views, stats, crop, dtype=torch.float32, memory_format=torch.contiguous_format,
            backend="triton"):
    """Normalized float images (N, C, crop, crop) from stored uint8 images (M, H, W, C) on any
    device: the Triton kernel on the triton backend, `augment_reference` on the torch backend."""
    _check(images, views, crop, stats)
    if backend == "torch":
        return augment_reference(images, views, stats, crop, dtype).contiguous(
            memory_format=memory_format)
    device = images.device

    def on_device(t):
        return t.to(device).contiguous()

    shift = stats.lighting_shift(views.alphas)
    mean = torch.tensor(stats.mean, dtype=torch.float32)
    std = torch.tensor(stats.std, dtype=torch.float32)
    return augment_forward(images, on_device(views.index), on_device(views.top),
                           on_device(views.left), on_device(views.flip), on_device(shift),
                           on_device(mean), on_device(std), crop, dtype, memory_format)


def augment_reference(images, views, stats, crop, dtype=torch.float32):
    """The same transformation with plain torch ops (gather, slice, flip, arithmetic)."""
    device = images.device
    rows = views.top.to(device, torch.int64)[:, None] + torch.arange(crop, device=device)
    cols = views.left.to(device, torch.int64)[:, None] + torch.arange(crop, device=device)
    cols = torch.where(views.flip.to(device)[:, None] != 0, cols.flip(1), cols)
    picked = images[views.index.to(device)]  # (N, H, W, C)
    n = picked.shape[0]
    picked = picked[torch.arange(n, device=device)[:, None, None], rows[:, :, None],
                    cols[:, None, :]]  # (N, crop, crop, C)
    x = picked.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    shift = stats.lighting_shift(views.alphas).to(device)[:, :, None, None]
    mean = torch.tensor(stats.mean, dtype=torch.float32, device=device)[None, :, None, None]
    std = torch.tensor(stats.std, dtype=torch.float32, device=device)[None, :, None, None]
    return ((x + shift - mean) / std).to(dtype)
