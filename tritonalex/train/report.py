"""What a training run reports: the epoch's metrics, its line on screen, the progress bar,
OUT/metrics.jsonl and OUT/curves.png."""

import contextlib
import json
import os
import sys
import time

from .._output import atomic_open, pyplot, save_figure


def epoch_metrics(epoch, totals, val, lr):
    """One epoch's metrics dict (a line of metrics.jsonl) from the training totals (summed loss,
    images, seconds, dropped files) and the validation summary."""
    seconds = totals["seconds"]
    return dict(epoch=epoch, train_loss=totals["loss"] / max(totals["images"], 1),
                val_loss=val["loss"], val_top1=val["top1"], val_top5=val["top5"], lr=lr,
                images_per_s=totals["images"] / seconds, seconds=round(seconds, 2),
                dropped_files=int(totals["dropped"]) + val["dropped"])


def epoch_line(m, epochs):
    return (f"epoch {m['epoch']}/{epochs}: train loss {m['train_loss']:.4f}, "
            f"val loss {m['val_loss']:.4f}, val top-1 {100 * m['val_top1']:.1f}%, top-5 "
            f"{100 * m['val_top5']:.1f}%, lr {m['lr']:g}, {m['images_per_s']:.3g} images/s"
            + (f", {m['dropped_files']} unreadable files skipped" if m["dropped_files"] else ""))


@contextlib.contextmanager
def progress(run, epoch, epochs, steps):
    """A rich progress bar for one epoch (rank 0, unless quiet): images/s, loss, learning rate.
    Yields advance(loss or None, images seen, start time, lr)."""
    if run.quiet or not sys.stdout.isatty():
        yield lambda *a: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task("train", total=steps, epoch=f"{epoch + 1}/{epochs}", info="")
        count, shown_loss = [0], [""]

        def advance(loss, seen, began, lr):
            count[0] += 1
            if loss is not None and (count[0] % 10 == 1 or count[0] == steps):
                shown_loss[0] = f"loss {loss.item():.4f}  "  # .item() syncs: every 10 steps only
            rate = seen / max(time.perf_counter() - began, 1e-9)
            bar.update(task, advance=1, info=f"{shown_loss[0]}{rate:.0f} img/s  lr {lr:g}")
        yield advance


def write_metrics(history, out):
    """OUT/metrics.jsonl, one JSON line per epoch, rewritten atomically from the checkpoint's
    history (so after a resume it never holds epochs the checkpoint does not)."""
    with atomic_open(os.path.join(out, "metrics.jsonl"), "w") as f:
        for metrics in history:
            f.write(json.dumps(metrics, allow_nan=False) + "\n")


_warned_no_matplotlib = []


def plot_curves(history, path):
    """Loss and accuracy per epoch to `path` (PNG), atomically; skipped without matplotlib."""
    plt = pyplot()
    if plt is None:
        if not _warned_no_matplotlib:
            print("curves.png skipped: matplotlib is not installed (pip install matplotlib)")
            _warned_no_matplotlib.append(True)
        return
    epochs = [m["epoch"] for m in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [m["train_loss"] for m in history], "o-", label="train")
    ax1.plot(epochs, [m["val_loss"] for m in history], "o-", label="validation")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("cross-entropy loss"), ax1.legend()
    ax2.plot(epochs, [100 * m["val_top1"] for m in history], "o-", label="top-1")
    ax2.plot(epochs, [100 * m["val_top5"] for m in history], "o-", label="top-5")
    ax2.set_xlabel("epoch"), ax2.set_ylabel("validation accuracy (%)"), ax2.legend()
    fig.tight_layout()
    save_figure(fig, path)
