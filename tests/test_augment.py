"""The fused augmentation kernel and the PCA lighting, against float64 references written here
(slicing and flipping one image at a time, and numpy's eigendecomposition)."""

import numpy as np
import pytest
import torch

from tritonalex.data.augment import (ColorStats, augment, augment_reference, center_views,
                                     random_views, ten_crop_views)

from reference import DEVICE, TOLERANCE, Inputs, assert_close


def stored_images(inputs, count, h, w, channels=3):
    return torch.randint(0, 256, (count, h, w, channels), generator=inputs.generator,
                         device=inputs.generator.device, dtype=torch.uint8).to(DEVICE)


def expected(images, views, stats, crop):
    """One image at a time in float64: pick, crop, reflect, shift, normalize, to (C, H, W)."""
    eigvals = torch.tensor(stats.eigvals, dtype=torch.float64)
    eigvecs = torch.tensor(stats.eigvecs, dtype=torch.float64)
    mean = torch.tensor(stats.mean, dtype=torch.float64)[:, None, None]
    std = torch.tensor(stats.std, dtype=torch.float64)[:, None, None]
    out = []
    for i in range(views.index.shape[0]):
        img = images[views.index[i]].cpu().double() / 255
        t, le = int(views.top[i]), int(views.left[i])
        img = img[t:t + crop, le:le + crop].permute(2, 0, 1)
        if views.flip[i]:
            img = img.flip(2)
        shift = eigvecs @ (views.alphas[i].double() * eigvals)
        out.append((img + shift[:, None, None] - mean) / std)
    return torch.stack(out).to(DEVICE)


@pytest.mark.parametrize("dtype, memory_format", [
    (torch.float32, torch.contiguous_format), (torch.float32, torch.channels_last),
    (torch.bfloat16, torch.contiguous_format), (torch.float16, torch.channels_last)])
def test_random_views_match_reference(dtype, memory_format):
    inputs = Inputs()
    images = stored_images(inputs, 7, 21, 19)  # odd, non-square stored images
    stats = ColorStats.from_images([images.cpu()])
    index = torch.randint(0, 7, (11,), generator=inputs.generator, device=inputs.generator.device)
    views = random_views(index, 19, 17, inputs.generator, alpha_std=0.5)
    views.top = torch.randint(0, 21 - 17 + 1, (11,), generator=inputs.generator,
                              device=inputs.generator.device, dtype=torch.int32)
    out = augment(images, views, stats, 17, dtype, memory_format)
    assert out.dtype == dtype and out.shape == (11, 3, 17, 17)
    assert out.is_contiguous(memory_format=memory_format)
    want = expected(images, views, stats, 17)
    assert_close(out, want, TOLERANCE[dtype] * 4, "augment", inputs.seed)
    # the torch backend's path is the same transformation
    assert_close(augment(images, views, stats, 17, dtype, memory_format, backend="torch"), want,
                 TOLERANCE[dtype] * 4, "augment_reference", inputs.seed)


def test_ten_crops_and_center_from_a_strided_source():
    inputs = Inputs()
    wide = stored_images(inputs, 3, 12, 24)
    images = wide[:, :, ::2]  # non-contiguous stored images, 12x12
    stats = ColorStats.from_images([images.cpu()])
    views = ten_crop_views(torch.tensor([2, 0]), 12, 9)
    assert views.index.tolist() == [2] * 10 + [0] * 10
    corners = list(zip(views.top[:10].tolist(), views.left[:10].tolist(), views.flip[:10].tolist()))
    assert corners == [(0, 0, 0), (0, 3, 0), (3, 0, 0), (3, 3, 0), (1, 1, 0),
                       (0, 0, 1), (0, 3, 1), (3, 0, 1), (3, 3, 1), (1, 1, 1)]
    assert_close(augment(images, views, stats, 9), expected(images, views, stats, 9), 2e-6,
                 "ten crops", inputs.seed)
    center = center_views(torch.tensor([1]), 12, 9)
    assert_close(augment(images, center, stats, 9), expected(images, center, stats, 9), 2e-6,
                 "center", inputs.seed)


def test_pca_lighting_matches_numpy():
    inputs = Inputs()
    images = [stored_images(inputs, 5, 8, 8).cpu() for _ in range(3)]  # three batches
    stats = ColorStats.from_images(images)
    pixels = torch.cat(images).reshape(-1, 3).numpy().astype(np.float64) / 255
    cov = np.cov(pixels, rowvar=False, bias=True)
    eigvals, eigvecs = np.linalg.eigh(cov)
    np.testing.assert_allclose(stats.mean, pixels.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, pixels.std(0), rtol=1e-10)
    np.testing.assert_allclose(stats.eigvals, eigvals, rtol=1e-9)
    ours = np.array(stats.eigvecs)
    signs = np.sign((ours * eigvecs).sum(0))  # eigenvectors are defined up to sign
    np.testing.assert_allclose(ours, eigvecs * signs, atol=1e-9)
    alphas = torch.randn(6, 3, generator=inputs.generator, device=inputs.generator.device) * 0.1
    want = (alphas.numpy().astype(np.float64) * eigvals) @ (eigvecs * signs).T  # sum a_i l_i p_i
    np.testing.assert_allclose(stats.lighting_shift(alphas).numpy(), want, rtol=1e-5, atol=1e-9)


def test_random_views_stay_inside_and_flip_half():
    gen = torch.Generator().manual_seed(0)
    views = random_views(torch.zeros(4000, dtype=torch.int64), 36, 32, gen)
    assert views.top.min() == 0 and views.top.max() == 4 and views.left.max() == 4
    assert 0.45 < views.flip.float().mean() < 0.55
    assert abs(views.alphas.std().item() - 0.1) < 0.01


def test_bad_input_raises_before_launch():
    images = torch.zeros(2, 10, 10, 3, dtype=torch.uint8, device=DEVICE)
    stats = ColorStats.from_images([images.cpu() + 1])
    with pytest.raises(TypeError, match="uint8"):
        augment(images.float(), center_views(torch.tensor([0]), 10, 8), stats, 8)
    with pytest.raises(ValueError, match="does not fit"):
        augment(images, center_views(torch.tensor([0]), 10, 8), stats, 11)
    with pytest.raises(IndexError, match="out of range"):
        augment(images, center_views(torch.tensor([2]), 10, 8), stats, 8)
    with pytest.raises(ValueError, match="outside"):
        augment(images, ten_crop_views(torch.tensor([0]), 12, 8), stats, 8)
    assert augment_reference(images, center_views(torch.tensor([1]), 10, 8), stats, 8).shape == \
        (1, 3, 8, 8)


def test_draws_follow_their_generator_not_the_default_device():
    """Random draws happen where their generator lives, whatever torch.set_default_device says
    (a user's default device, or a GPU test run's)."""
    from tritonalex.data import epoch_order

    index, gen = torch.arange(3), torch.Generator().manual_seed(0)
    with torch.device("meta"):
        views = random_views(index, 10, 8, gen)
        no_flips = random_views(index, 10, 8, gen, flip=False)
        order = epoch_order(10, 0, 0, 0, 1)
    drawn = (views.top, views.left, views.flip, views.alphas, no_flips.flip, order)
    assert all(t.device.type == "cpu" for t in drawn)
