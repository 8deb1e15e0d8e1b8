"""Training and validation data as stored uint8 images, sharded per rank, in batches.

A source yields batches as (images, index, labels, dropped): `images` is a uint8 (M, S, S, 3)
tensor on the device and `index`, a CPU tensor (the augmentation draws its views on the host and
sends them over once), picks the batch out of it (the built-in set lives on the device whole; a
folder batch is its own `images` with index 0..N-1); `labels` are on the device; `dropped` counts
unreadable files.
Augmentation (tritonalex.data.augment) turns them into the network's input.

Every epoch's order is a permutation drawn from (seed, epoch), so a resumed run sees the same
batches as an uninterrupted one; rank r of w takes every w-th image of it, the same count on every
rank (the remainder is left out that epoch), so all ranks run the same number of steps.
"""

import os

import torch

from . import folder, synthetic


def stored_size(input_size):
    """The stored image side for a network input side: the paper's 256 for 224/227 inputs, and
    the same proportion (256/227) for smaller ones (36 for the small spec's 32)."""
    return 256 if input_size >= 224 else round(input_size * 256 / 227)


def epoch_order(count, seed, epoch, rank, world):
    """Indices of this rank's images for one epoch."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(count, generator=gen, device=gen.device)
    per_rank = count // world
    return order[rank::world][:per_rank]


def shard(count, rank, world):
    """Validation: every w-th image from rank r, all of them across ranks."""
    return torch.arange(rank, count, world)


class BuiltinData:
    """The procedurally generated shapes (tritonalex.data.synthetic), held on the device."""

    name = "builtin"

    def __init__(self, stored, seed=0, train_count=6000, val_count=1000, device="cpu"):
        self.classes = list(synthetic.CLASSES)
        train, train_labels = synthetic.generate(train_count, stored, seed=seed)
        val, val_labels = synthetic.generate(val_count, stored, seed=seed + 1_000_000)
        self.train = (train.to(device), train_labels.to(device))
        self.val = (val.to(device), val_labels.to(device))
        self.device = device

    def train_count(self):
        return self.train[0].shape[0]

    def color_batches(self):
        yield self.train[0]

    def _batches(self, split, indices, batch):
        images, labels = split
        for start in range(0, len(indices), batch):
            index = indices[start:start + batch]
            yield images, index, labels[index.to(self.device)], 0

    def train_batches(self, epoch, batch, seed, rank=0, world=1):
        return self._batches(self.train, epoch_order(self.train_count(), seed, epoch, rank, world),
                             batch)

    def val_batches(self, batch, rank=0, world=1):
        return self._batches(self.val, shard(self.val[0].shape[0], rank, world), batch)


class FolderData:
    """DIR/train/<class>/ and DIR/val/<class>/, decoded by DataLoader workers with Pillow."""

    name = "folder"

    def __init__(self, root, stored, classes=None, workers=None, device="cpu", color_images=2000,
                 need_train=True):
        self.root, self.stored, self.device = root, stored, device
        self.workers = min(4, os.cpu_count() or 1) if workers is None else workers
        self.train = folder.ImageFolder(os.path.join(root, "train"), stored, classes) \
            if need_train else None
        self.classes = self.train.classes if self.train else classes
        self.val = folder.ImageFolder(os.path.join(root, "val"), stored, self.classes)
        self.color_images = color_images

    def train_count(self):
        return len(self.train)

    def color_batches(self, batch=64):
        """Up to `color_images` training images, evenly spaced over the set."""
        count = len(self.train)
        step = max(1, count // self.color_images)
        for images, _, _, _ in self._batches(self.train, torch.arange(0, count, step), batch):
            if images is not None:  # a batch of unreadable files only
                yield images.cpu()

    def _batches(self, dataset, indices, batch):
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, indices.tolist()), batch_size=batch,
            num_workers=self.workers, collate_fn=folder.collate,
            pin_memory=str(self.device).startswith("cuda"))
        for images, labels, dropped in loader:
            if images is None:
                yield None, None, None, dropped
                continue
            images = images.to(self.device, non_blocking=True)
            yield images, torch.arange(images.shape[0]), labels.to(self.device), dropped

    def train_batches(self, epoch, batch, seed, rank=0, world=1):
        return self._batches(self.train, epoch_order(len(self.train), seed, epoch, rank, world),
                             batch)

    def val_batches(self, batch, rank=0, world=1):
        return self._batches(self.val, shard(len(self.val), rank, world), batch)
