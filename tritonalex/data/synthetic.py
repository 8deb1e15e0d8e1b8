"""The built-in dataset: procedurally drawn shapes, no download, the same images for the same seed.

Ten classes, one shape each (disk, square, triangle, ring, plus, horizontal bars, vertical bars,
X, checkerboard, hollow square), drawn at a random position and scale in a random color over a
random two-color gradient background with pixel noise. Telling them apart needs shape, not color:
a small convnet learns it in a few CPU minutes, chance is 10%.
"""

import numpy as np
import torch

CLASSES = ["disk", "square", "triangle", "ring", "plus", "hbars", "vbars", "x", "checker", "frame"]


def _mask(kind, yy, xx, r):
    """Boolean mask of shape `kind` centred at 0 with radius r, on coordinate grids yy, xx."""
    ay, ax = np.abs(yy), np.abs(xx)
    if kind == "disk":
        return yy ** 2 + xx ** 2 <= r ** 2
    if kind == "square":
        return np.maximum(ay, ax) <= r * 0.85
    if kind == "triangle":
        return (yy <= r * 0.8) & (yy >= -r * 0.8 + 2 * ax)  # apex up, base at the bottom
    if kind == "ring":
        d = np.sqrt(yy ** 2 + xx ** 2)
        return (d <= r) & (d >= r * 0.6)
    if kind == "plus":
        return ((ay <= r * 0.25) & (ax <= r)) | ((ax <= r * 0.25) & (ay <= r))
    if kind == "hbars":
        return (np.maximum(ay, ax) <= r) & (np.floor((yy + r) / (r * 0.5)) % 2 == 0)
    if kind == "vbars":
        return (np.maximum(ay, ax) <= r) & (np.floor((xx + r) / (r * 0.5)) % 2 == 0)
    if kind == "x":
        return (np.abs(ay - ax) <= r * 0.22) & (np.maximum(ay, ax) <= r)
    if kind == "checker":
        cells = (np.floor((yy + r) / (r * 0.5)) + np.floor((xx + r) / (r * 0.5))) % 2 == 0
        return (np.maximum(ay, ax) <= r) & cells
    if kind == "frame":
        m = np.maximum(ay, ax)
        return (m <= r * 0.9) & (m >= r * 0.6)
    raise ValueError(kind)


def generate(count, size, seed, noise=0.03):
    """(uint8 images (count, size, size, 3), int64 labels (count,)), balanced over the classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    grid = np.arange(size, dtype=np.float32)
    yy0, xx0 = np.meshgrid(grid, grid, indexing="ij")
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        # background: a linear gradient between two random colors, in a random direction
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx0 + np.sin(angle) * yy0) / size
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        img = c0 + (c1 - c0) * t[..., None]
        # foreground: the class's shape, in a color far enough from the background's mean
        r = rng.uniform(0.22, 0.38) * size
        cy, cx = rng.uniform(r, size - r, 2)
        color = rng.uniform(0, 1, 3)
        while np.abs(color - img.mean((0, 1))).sum() < 0.6:
            color = rng.uniform(0, 1, 3)
        mask = _mask(CLASSES[label], yy0 - cy, xx0 - cx, r)
        img[mask] = color
        img += rng.normal(0, noise, img.shape)
        images[i] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
