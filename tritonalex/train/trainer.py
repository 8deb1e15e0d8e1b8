"""The paper's training recipe (section 5) on a compiled spec.

SGD with momentum 0.9 and weight decay 0.0005, batch 128, learning rate 0.01 divided by 10 when
the validation error has not improved for `patience` epochs (at most `lr_drops` times), dropout
0.5 (the spec's), random crops, horizontal reflections and PCA lighting; every one a flag.
torch's SGD folds weight decay into the gradient before momentum; with a constant learning rate
that is exactly the paper's update rule.

Reproducibility: each epoch seeds torch (dropout masks) and the augmentation generator from
(seed, epoch, rank) and draws its data order from (seed, epoch), so a run resumed from the
checkpoint of epoch e continues exactly as the uninterrupted run did. Under torchrun the same
command trains data-parallel (DistributedDataParallel: NCCL on GPUs, gloo on CPUs), each rank on
its own shard; rank 0 alone writes files.
"""

import contextlib
import dataclasses
import json
import math
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as TF

from .. import compiler
from .._output import TEMPORARY_PREFIX, atomic_open, pyplot, save_figure
from ..data import BuiltinData, FolderData, stored_size
from ..data.augment import ColorStats, augment, center_views, random_views
from ..spec import load_spec
from . import checkpoint
from .evaluate import evaluate, reduce_across_ranks, summary

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


@dataclasses.dataclass
class TrainConfig:
    spec: str = None  # default: alexnet-small on the built-in data, alexnet on --data
    data: str = None  # an ImageFolder root (DIR/train, DIR/val); None: the built-in shapes
    epochs: int = None  # default: 8 on the built-in data, 90 on --data (the paper's ~90 cycles)
    batch_size: int = 128  # over all ranks together
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = None  # None: the spec's dropout layers as written (0.5 in the shipped specs)
    lr_drops: int = 3
    patience: int = 2  # epochs without a better validation error before the learning rate drops
    pca_std: float = 0.1  # std of the PCA lighting magnitudes; 0 turns lighting off
    flip: bool = True
    random_crop: bool = True
    backend: str = None  # None: triton with CUDA, torch without
    devices: str = None  # comma-separated, one per tower (e.g. cuda:0,cuda:1)
    precision: str = "fp32"
    seed: int = 0
    out: str = None  # default: runs/<spec name>
    resume: str = None  # a checkpoint path, or "last" for OUT/last.pt
    workers: int = None  # DataLoader workers for --data
    image_size: int = None  # stored image side; default 256 for 224+ inputs, else proportional
    train_images: int = 6000  # built-in data only
    val_images: int = 1000
    quiet: bool = False
    overwrite: bool = False  # replace the run already in `out` (without it, refuse)


# What a resumed run may change: how long, where, how verbosely, on which devices. Everything
# else is the checkpoint's recipe; a flag that differs from it is refused (see `_resolve`).
RESUMABLE = ("epochs", "out", "quiet", "workers", "resume", "backend", "devices", "overwrite")
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")


def default_backend():
    """(backend, reason) for a run that did not choose one."""
    if torch.cuda.is_available():
        return "triton", "CUDA is available, so the Triton kernels run compiled"
    return "torch", ("no CUDA device: Triton's interpreter proves correctness but is far too slow "
                     "to train with (pass --backend triton to use it anyway)")


def prepare_spec(spec, classes, dropout):
    """Fit the spec's output layer to the data's class count and apply a dropout override;
    returns notes on what changed."""
    notes = []
    linears = [layer for layer in spec.layers if layer.kind == "linear"]
    if linears and linears[-1].params["out_features"] != classes:
        notes.append(f"{spec.name}: output layer {linears[-1].name!r} resized from "
                     f"{linears[-1].params['out_features']} to the data's {classes} classes")
        linears[-1].params["out_features"] = classes
    if dropout is not None:
        for layer in spec.layers:
            if layer.kind == "dropout":
                layer.params["p"] = dropout
    return notes


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def precision_context(precision, device_type):
    """A callable giving the forward's autocast context for a precision (fp32/tf32: none)."""
    if precision in AUTOCAST_DTYPES:
        return lambda: torch.autocast(device_type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext


def set_tf32(precision):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"


class Run:
    """Where the run is: distributed ranks, devices, printing (rank 0 only)."""

    def __init__(self, config):
        import torch.distributed as dist

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank = dist.get_rank() if self.world > 1 else 0
        if self.world > 1 and config.devices:
            raise ValueError("--devices splits towers over devices in one process; under torchrun "
                             "each rank uses one device (cuda:LOCAL_RANK), so leave it out")
        if self.world > 1 and torch.cuda.is_available():
            self.devices = (f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}",)
        else:
            self.devices = compiler.parse_devices(config.devices)
        self.device = torch.device(self.devices[0])
        self.main = self.rank == 0
        self.quiet = config.quiet or not self.main

    def say(self, message):
        if self.main and not self.quiet:
            print(message, flush=True)


def _resolve(config, run, explicit):
    """Fill the defaults that depend on the data and the machine; load a resumed checkpoint.
    Returns (config, checkpoint state or None, the checkpoint's path)."""
    state = path = None
    if config.resume:
        out = config.out or _default_out(config.spec or ("alexnet" if config.data else "alexnet-small"))
        path = os.path.join(out, "last.pt") if config.resume == "last" else config.resume
        state = checkpoint.load(path)
        saved = TrainConfig(**{k: v for k, v in state["config"].items()
                               if k in {f.name for f in dataclasses.fields(TrainConfig)}})
        differ = [f"--{name.replace('_', '-')} {getattr(config, name)!r} (the checkpoint's: "
                  f"{getattr(saved, name)!r})" for name in sorted(explicit)
                  if name not in RESUMABLE and getattr(config, name) != getattr(saved, name)]
        if differ:
            raise ValueError(f"--resume continues {path}'s run with its own recipe and data, but "
                             f"these flags differ from it: {'; '.join(differ)}. Leave them out, or "
                             f"start a new run (another --out, or --overwrite)")
        config = dataclasses.replace(saved, **{name: getattr(config, name) for name in RESUMABLE
                                               if name in explicit or name == "resume"})
        config = dataclasses.replace(config, epochs=config.epochs or saved.epochs,
                                     out=config.out or saved.out)
        run.say(f"resuming from {path} (epoch {state['epoch']} done)")
    if config.spec is None:
        config = dataclasses.replace(config, spec="alexnet" if config.data else "alexnet-small")
    if config.epochs is None:
        config = dataclasses.replace(config, epochs=90 if config.data else 8)
    if config.backend is None:
        backend, reason = default_backend()
        config = dataclasses.replace(config, backend=backend)
        run.say(f"backend: {backend} ({reason})")
    else:
        run.say(f"backend: {config.backend} (chosen)")
    if config.out is None:
        config = dataclasses.replace(config, out=_default_out(config.spec))
    _validate(config)
    if run.main:
        _prepare_out(config, run)
    return config, state, path


def _default_out(spec):
    return os.path.join("runs", os.path.basename(spec).removesuffix(".toml"))


def _validate(config):
    """The checks the command line's types make, for configs built in Python."""
    problems = []
    if config.precision not in PRECISIONS:
        problems.append(f"--precision must be one of {', '.join(PRECISIONS)}")
    if config.backend not in ("triton", "torch"):
        problems.append("--backend must be triton or torch")
    for name in ("epochs", "batch_size", "patience", "train_images", "val_images"):
        if getattr(config, name) <= 0:
            problems.append(f"--{name.replace('_', '-')} must be positive")
    for name in ("seed", "lr_drops"):
        if getattr(config, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must not be negative")
    if not (math.isfinite(config.lr) and config.lr > 0):
        problems.append(f"--lr must be a positive finite number, got {config.lr}")
    for name in ("momentum", "weight_decay", "pca_std"):
        if not (math.isfinite(getattr(config, name)) and getattr(config, name) >= 0):
            problems.append(f"--{name.replace('_', '-')} must be a finite number >= 0")
    if config.dropout is not None and not 0 <= config.dropout < 1:
        problems.append("--dropout must be in [0, 1)")
    if problems:
        raise ValueError("; ".join(problems))


def _prepare_out(config, run):
    """Check the output folder before any work: a folder we can write, not holding another run
    (unless --resume or --overwrite). Removes temporary files that killed writes left there."""
    out = config.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out}: exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    present = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    if present and not config.resume and not config.overwrite:
        raise ValueError(f"--out {out} already holds a run ({', '.join(present)}); pass --resume "
                         f"to continue it, or --overwrite to replace it")
    leftovers = [f for f in os.listdir(out) if f.startswith(TEMPORARY_PREFIX)]
    for name in leftovers:
        os.unlink(os.path.join(out, name))
    if leftovers:
        run.say(f"removed {len(leftovers)} temporary file(s) that an interrupted write left in {out}")


def train(config, explicit=None):
    """Train; returns (model, history). Writes OUT/last.pt, OUT/best.pt, OUT/metrics.jsonl and
    OUT/curves.png (rank 0).

    explicit: the config fields the user set (the command line's flags); by default, those that
    differ from TrainConfig's defaults. On --resume they must agree with the checkpoint's."""
    if explicit is None:
        defaults = TrainConfig()
        explicit = {f.name for f in dataclasses.fields(TrainConfig)
                    if getattr(config, f.name) != getattr(defaults, f.name)}
    run = Run(config)
    config, state, resumed_from = _resolve(config, run, set(explicit))
    spec = load_spec(config.spec, state["spec"]) if state else load_spec(config.spec)
    stored = config.image_size or (state["data"]["stored"] if state else stored_size(spec.size))
    if stored < spec.size:
        raise ValueError(f"--image-size {stored} is smaller than {spec.name}'s {spec.size} input")
    if config.data:  # a resumed run keeps its class list (a renamed folder is an error, not a
        # silent permutation of the labels)
        data = FolderData(config.data, stored, workers=config.workers, device=run.device,
                          classes=state["data"]["classes"] if state else None)
    else:
        data = BuiltinData(stored, seed=config.seed, train_count=config.train_images,
                           val_count=config.val_images, device=run.device)
    if data.train_count() < run.world:
        raise ValueError(f"{data.train_count()} training images cannot be shared by {run.world} ranks")
    for note in prepare_spec(spec, len(data.classes), config.dropout):
        run.say(note)
    stats = (ColorStats(**state["data"]["stats"]) if state
             else ColorStats.from_images(data.color_batches()))

    set_tf32(config.precision)
    torch.manual_seed(config.seed)
    model = compiler.compile(spec, backend=config.backend, devices=run.devices)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(run.device.type, enabled=config.precision == "fp16")
    schedule = dict(lr=config.lr, best_error=None, bad_epochs=0, drops=0)
    history, start = [], 0
    if state:
        checkpoint.load_model(model, state, resumed_from)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        schedule, history, start = dict(state["schedule"]), list(state["metrics"]), state["epoch"]
        checkpoint.set_rng_state(state["rng"])
    if start >= config.epochs:
        run.say(f"{config.out}: already trained for {start} epochs; pass a larger --epochs to "
                f"continue")
        return model, history
    trained = model
    if run.world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device] if run.device.type == "cuda" else None)
    forward_context = precision_context(config.precision, run.device.type)
    crop, per_rank = spec.size, max(1, config.batch_size // run.world)
    data_info = dict(kind=data.name, root=config.data, classes=data.classes, stored=stored,
                     crop=crop, stats=dataclasses.asdict(stats))
    run.say(f"training {spec.name} on {data.name} data ({data.train_count()} images, "
            f"{len(data.classes)} classes, stored {stored}px, crop {crop}px) for epochs "
            f"{start + 1}..{config.epochs}, batch {config.batch_size}, {config.precision}, "
            f"devices {','.join(run.devices)}, {run.world} rank(s); writing to {config.out}")

    for epoch in range(start, config.epochs):
        for group in optimizer.param_groups:
            group["lr"] = schedule["lr"]
        train_totals = _train_epoch(trained, optimizer, scaler, data, stats, config, run, epoch,
                                    per_rank, stored, crop, forward_context, schedule["lr"])
        seconds = train_totals["seconds"]
        val = summary(reduce_across_ranks(
            evaluate(model, data, stats, crop, per_rank, config.backend, forward_context,
                     rank=run.rank, world=run.world), run.device))
        for what, value in (("training", train_totals["loss"]), ("validation", val["loss"])):
            if not math.isfinite(value):
                raise ValueError(f"training diverged in epoch {epoch + 1}: the {what} loss is "
                                 f"{value}; stopped before saving that epoch ({config.out}/last.pt "
                                 f"holds epoch {epoch}). Try a lower --lr (it was "
                                 f"{schedule['lr']:g})")
        error = 1.0 - val["top1"]
        improved = schedule["best_error"] is None or error < schedule["best_error"]
        metrics = dict(epoch=epoch + 1, train_loss=train_totals["loss"] / max(train_totals["images"], 1),
                       val_loss=val["loss"], val_top1=val["top1"], val_top5=val["top5"],
                       lr=schedule["lr"], images_per_s=train_totals["images"] / seconds,
                       seconds=round(seconds, 2),
                       dropped_files=int(train_totals["dropped"]) + val["dropped"])
        history.append(metrics)
        _step_schedule(schedule, error, improved, config)
        if run.main:
            state_now = dict(epoch=epoch + 1, model=model.state_dict(),
                             optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                             schedule=schedule, rng=checkpoint.rng_state(),
                             config=dataclasses.asdict(config), spec=spec.text, data=data_info,
                             metrics=history)
            checkpoint.save_atomically(state_now, os.path.join(config.out, "last.pt"))
            if improved:
                checkpoint.save_atomically(state_now, os.path.join(config.out, "best.pt"))
            write_metrics(history, config.out)
            plot_curves(history, os.path.join(config.out, "curves.png"))
        run.say(f"epoch {epoch + 1}/{config.epochs}: train loss {metrics['train_loss']:.4f}, "
                f"val loss {val['loss']:.4f}, val top-1 {100 * val['top1']:.1f}%, top-5 "
                f"{100 * val['top5']:.1f}%, lr {metrics['lr']:g}, "
                f"{metrics['images_per_s']:.3g} images/s"
                + (f", {metrics['dropped_files']} unreadable files skipped"
                   if metrics["dropped_files"] else ""))
    return model, history


def _train_epoch(model, optimizer, scaler, data, stats, config, run, epoch, per_rank, stored, crop,
                 forward_context, lr):
    """One pass over this rank's shard; returns totals over all ranks: loss (summed over images),
    images, unreadable files dropped, and the seconds it took."""
    torch.manual_seed(_epoch_seed(config.seed, epoch, run.rank))  # dropout masks
    gen = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch, run.rank) + 1)
    model.train()
    began, seen, dropped = time.perf_counter(), 0, 0
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)  # no sync per step
    steps = -(-(data.train_count() // run.world) // per_rank)
    with _progress(run, epoch, config.epochs, steps) as advance:
        for images, index, labels, bad in data.train_batches(epoch, per_rank, config.seed,
                                                            run.rank, run.world):
            dropped += bad
            if images is None:  # every file of the batch was unreadable
                advance(None, seen, began, lr)
                continue
            # On the triton backend the images come as the first conv reads them: channels_last
            # and, under autocast, already in its dtype (no conversion kernels in the step).
            triton_backend = config.backend == "triton"
            x = augment(images, _training_views(index, stored, crop, gen, config), stats, crop,
                        dtype=AUTOCAST_DTYPES.get(config.precision, torch.float32)
                        if triton_backend else torch.float32, backend=config.backend,
                        memory_format=torch.channels_last if triton_backend
                        else torch.contiguous_format)
            with forward_context():
                loss = TF.cross_entropy(model(x).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach().double() * labels.shape[0]
            seen += labels.shape[0]
            advance(loss, seen, began, lr)
    totals = dict(loss=loss_sum.item(), images=seen, dropped=dropped)
    return dict(reduce_across_ranks(totals, run.device), seconds=time.perf_counter() - began)


def _training_views(index, stored, crop, gen, config):
    """The augmentation draws of a batch: random crops, reflections and lighting as configured."""
    if config.random_crop:
        return random_views(index, stored, crop, gen, alpha_std=config.pca_std, flip=config.flip)
    views = center_views(index, stored, crop)
    if config.flip:  # reflections without crops
        views.flip = torch.randint(0, 2, views.flip.shape, generator=gen, dtype=torch.int32)
    if config.pca_std:
        views.alphas = torch.randn(views.alphas.shape, generator=gen) * config.pca_std
    return views


def _epoch_seed(seed, epoch, rank):
    return (seed * 1_000_003 + epoch * 1_009 + rank) % (2 ** 63)


def _step_schedule(schedule, error, improved, config):
    """The paper's rule: divide the learning rate by 10 when validation error stops improving."""
    if improved:
        schedule["best_error"], schedule["bad_epochs"] = error, 0
        return
    schedule["bad_epochs"] += 1
    if schedule["bad_epochs"] >= config.patience and schedule["drops"] < config.lr_drops:
        schedule["lr"] /= 10
        schedule["drops"] += 1
        schedule["bad_epochs"] = 0


@contextlib.contextmanager
def _progress(run, epoch, epochs, steps):
    """A rich progress bar for one epoch (rank 0, unless quiet): images/s, loss, learning rate.
    Yields advance(loss or None, images seen, start time, lr)."""
    if run.quiet or not sys.stdout.isatty():
        yield lambda *a: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.fields[info]}")) as progress:
        task = progress.add_task("train", total=steps, epoch=f"{epoch + 1}/{epochs}", info="")
        count, shown_loss = [0], [""]

        def advance(loss, seen, began, lr):
            count[0] += 1
            if loss is not None and (count[0] % 10 == 1 or count[0] == steps):
                shown_loss[0] = f"loss {loss.item():.4f}  "  # .item() syncs: every 10 steps only
            rate = seen / max(time.perf_counter() - began, 1e-9)
            progress.update(task, advance=1, info=f"{shown_loss[0]}{rate:.0f} img/s  lr {lr:g}")
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
