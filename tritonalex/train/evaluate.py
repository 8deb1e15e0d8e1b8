"""Evaluation: loss and top-1 / top-5 over a data source's validation split, with the center
crop or the paper's 10-crop test (four corners and the center, each reflected too; the ten
softmax outputs of an image are averaged)."""

import torch
import torch.nn.functional as TF

from ..data.augment import augment, center_views, ten_crop_views


def topk_correct(scores, labels, k):
    """How many rows have their label among the k largest scores."""
    k = min(k, scores.shape[1])
    return (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum().item()


@torch.no_grad()
def evaluate(model, data, stats, crop, batch, backend, precision_context, tta=1, rank=0,
             world=1, memory_format=torch.contiguous_format):
    """{"loss", "top1", "top5" (accuracies), "images", "dropped"} over this rank's validation
    shard; the caller sums across ranks (see `reduce_across_ranks`)."""
    was_training = model.training
    model.eval()
    totals = dict(loss=0.0, top1=0, top5=0, images=0, dropped=0)
    for images, index, labels, dropped in data.val_batches(batch, rank, world):
        totals["dropped"] += dropped
        if images is None:
            continue
        stored = images.shape[1]
        views = (ten_crop_views(index, stored, crop) if tta == 10
                 else center_views(index, stored, crop))
        x = augment(images, views, stats, crop, memory_format=memory_format, backend=backend)
        with precision_context():
            logits = model(x).float()
        if tta == 10:
            probs = TF.softmax(logits, dim=1).view(-1, 10, logits.shape[1]).mean(1)
            totals["loss"] += TF.nll_loss(probs.clamp_min(1e-12).log(), labels,
                                          reduction="sum").item()
        else:
            probs = logits
            totals["loss"] += TF.cross_entropy(logits, labels, reduction="sum").item()
        totals["top1"] += topk_correct(probs, labels, 1)
        totals["top5"] += topk_correct(probs, labels, 5)
        totals["images"] += labels.shape[0]
    model.train(was_training)
    return totals


def reduce_across_ranks(totals, device):
    """Sum the per-rank totals over all ranks (a no-op without torch.distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        keys = sorted(totals)
        t = torch.tensor([float(totals[k]) for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        totals = dict(zip(keys, t.tolist()))
    return totals


def summary(totals):
    if totals["images"] == 0:
        raise ValueError(f"no readable validation image: all {int(totals['dropped'])} files "
                         f"failed to decode" if totals["dropped"] else "the validation set is empty")
    n = totals["images"]
    return dict(loss=totals["loss"] / n, top1=totals["top1"] / n, top5=totals["top5"] / n,
                images=int(totals["images"]), dropped=int(totals["dropped"]))
