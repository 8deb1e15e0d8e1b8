"""ImageFolder data: DIR/train/<class>/*.jpg|png and DIR/val/<class>/..., decoded with Pillow.

Each image is rescaled so its short side is `stored` pixels and center-cropped to stored x stored
(the paper's 256x256; training crops and the 10-crop test cut the network's input from it), then
kept as uint8 HWC. Files that Pillow cannot decode are skipped and counted, never a crash: the
collate function drops them from the batch and reports how many it dropped.
"""

import os

import numpy as np
import torch

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")


def find_classes(split_dir):
    """Sorted class folder names of a split; an error naming the folder if there are none."""
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(f"no such data folder: {split_dir} (expected DIR/train/<class>/ "
                                f"and DIR/val/<class>/)")
    classes = sorted(d.name for d in os.scandir(split_dir) if d.is_dir())
    if not classes:
        raise FileNotFoundError(f"{split_dir} has no class folders")
    return classes


class ImageFolder(torch.utils.data.Dataset):
    """(uint8 image (stored, stored, 3) or None, label) per file of DIR/split/<class>/."""

    def __init__(self, split_dir, stored, classes=None):
        self.stored = stored
        self.classes = classes or find_classes(split_dir)
        known = set(find_classes(split_dir))
        unknown = [c for c in known if c not in self.classes]
        if unknown:
            raise ValueError(f"{split_dir} has classes the model was not trained on: {unknown}")
        self.samples = []
        for label, name in enumerate(self.classes):
            folder = os.path.join(split_dir, name)
            if not os.path.isdir(folder):
                continue
            for root, _, files in sorted(os.walk(folder)):
                for f in sorted(files):
                    if f.lower().endswith(EXTENSIONS):
                        self.samples.append((os.path.join(root, f), label))
        if not self.samples:
            raise FileNotFoundError(f"{split_dir} has no image files ({', '.join(EXTENSIONS)})")

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        return load_image(path, self.stored), label


def to_rgb8(img):
    """A Pillow image as 8-bit RGB. Pillow's own convert("RGB") clips wider modes instead of
    scaling them (a 16-bit PNG turns near-white, a float TIFF near-black), so those are scaled
    here: 16-bit integers by 1/257 (65535 -> 255), 32-bit integers likewise when they fit 16 bits,
    floats from [0, 1] when all values lie there, else taken as 0-255 and clipped."""
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            finite = values[np.isfinite(values)]
            scale = 255.0 if finite.size and finite.min() >= 0 and finite.max() <= 1 else 1.0
            values = np.nan_to_num(values, nan=0.0, posinf=255.0 / scale, neginf=0.0) * scale
        elif img.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return img.convert("RGB")


def load_image(path, stored):
    """Short side to `stored` (bilinear), center crop stored x stored, RGB uint8 HWC tensor;
    None when the file cannot be read or decoded, whatever the reason (a broken or foreign file,
    a decompression bomb, an unsupported mode)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = to_rgb8(img)
            w, h = img.size
            scale = stored / min(w, h)
            size = (max(stored, round(w * scale)), max(stored, round(h * scale)))
            img = img.resize(size, Image.BILINEAR)
            left, top = (size[0] - stored) // 2, (size[1] - stored) // 2
            img = img.crop((left, top, left + stored, top + stored))
            return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
    except Exception:  # noqa: BLE001 - one unreadable image is skipped and counted, never fatal
        return None


def collate(samples):
    """(uint8 images (N, S, S, 3), labels (N,), number of unreadable files dropped)."""
    good = [(img, label) for img, label in samples if img is not None]
    dropped = len(samples) - len(good)
    if not good:
        return None, None, dropped
    return (torch.stack([img for img, _ in good]), torch.tensor([label for _, label in good]),
            dropped)
