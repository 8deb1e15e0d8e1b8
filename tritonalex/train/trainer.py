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
import math
import os
import tempfile
import time

import torch
import torch.nn.functional as TF

from .. import compiler
from .._output import TEMPORARY_PREFIX
from ..data import BuiltinData, FolderData, stored_size
from ..data.augment import ColorStats, augment, center_views, random_views
from ..spec import load_spec
from . import checkpoint, report
from .evaluate import evaluate, reduce_across_ranks, summary
from .graphed import GraphedStep, why_not_graphed

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
    cuda_graph: bool = True  # on CUDA, capture the training step in a CUDA graph (see graphed.py)


# What a resumed run may change: how long, where, how verbosely, on which devices. Everything
# else is the checkpoint's recipe; a flag that differs from it is refused (see `_resolve`).
RESUMABLE = ("epochs", "out", "quiet", "workers", "resume", "backend", "devices", "overwrite",
             "cuda_graph")
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
    if config.backend == "triton" and torch.cuda.is_available():
        from ..kernels.launch import AUTOTUNE

        if AUTOTUNE:  # minutes of silence otherwise: the first H200 run's step tuned > 130 s
            run.say("the first steps compile and time every kernel's configs for this GPU (minutes "
                    "on a first run; TRITONALEX_AUTOTUNE=0 takes each kernel's first config)")
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


@dataclasses.dataclass
class Session:
    """Everything a run holds while it trains (built by `start`, advanced by `train_epoch`)."""

    config: TrainConfig
    run: Run
    spec: object
    data: object  # BuiltinData or FolderData
    stats: ColorStats  # the training images' color statistics (normalization, PCA lighting)
    stored: int  # stored image side
    model: torch.nn.Module
    trained: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: dict  # lr, best_error, bad_epochs, drops (see _step_schedule)
    history: list  # one metrics dict per epoch done
    start_epoch: int
    forward_context: object  # a callable giving the forward's autocast context
    graphed: object  # a GraphedStep when the step is replayed from a CUDA graph, else None

    @property
    def crop(self):
        return self.spec.size

    @property
    def per_rank(self):
        return max(1, self.config.batch_size // self.run.world)

    def data_info(self):
        return dict(kind=self.data.name, root=self.config.data, classes=self.data.classes,
                    stored=self.stored, crop=self.crop, stats=dataclasses.asdict(self.stats))


def start(config, explicit=None):
    """A Session: defaults resolved, the data and spec loaded, the model, optimizer and schedule
    built, or restored from the checkpoint that --resume names."""
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
    history, start_epoch = [], 0
    if state:
        checkpoint.load_model(model, state, resumed_from)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        schedule, history, start_epoch = dict(state["schedule"]), list(state["metrics"]), state["epoch"]
        checkpoint.set_rng_state(state["rng"])
    trained = model
    if run.world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device] if run.device.type == "cuda" else None)
    return Session(config, run, spec, data, stats, stored, model, trained, optimizer, scaler,
                   schedule, history, start_epoch,
                   precision_context(config.precision, run.device.type),
                   _graphed_step(config, run, model, optimizer))


def _graphed_step(config, run, model, optimizer):
    """The run's GraphedStep, or None when its steps run eagerly (said why, on CUDA)."""
    reason = (why_not_graphed(run.device, config.precision, run.world, run.devices)
              if config.cuda_graph else "--no-cuda-graph")
    if reason is not None:
        if run.device.type == "cuda":
            run.say(f"CUDA graph: off ({reason})")
        return None
    graphed = GraphedStep(model, optimizer, AUTOCAST_DTYPES.get(config.precision))
    run.say(f"CUDA graph: the training step is captured after {graphed.warmup} eager steps and "
            f"replayed (--no-cuda-graph to run it eagerly)")
    return graphed


def train(config, explicit=None):
    """Train; returns (model, history). Writes OUT/last.pt, OUT/best.pt, OUT/metrics.jsonl and
    OUT/curves.png (rank 0).

    explicit: the config fields the user set (the command line's flags); by default, those that
    differ from TrainConfig's defaults. On --resume they must agree with the checkpoint's."""
    s = start(config, explicit)
    config, run = s.config, s.run
    if s.start_epoch >= config.epochs:
        run.say(f"{config.out}: already trained for {s.start_epoch} epochs; pass a larger "
                f"--epochs to continue")
        return s.model, s.history
    run.say(f"training {s.spec.name} on {s.data.name} data ({s.data.train_count()} images, "
            f"{len(s.data.classes)} classes, stored {s.stored}px, crop {s.crop}px) for epochs "
            f"{s.start_epoch + 1}..{config.epochs}, batch {config.batch_size}, {config.precision}, "
            f"devices {','.join(run.devices)}, {run.world} rank(s); writing to {config.out}")

    for epoch in range(s.start_epoch, config.epochs):
        lr = s.schedule["lr"]
        totals = train_epoch(s, epoch)
        val = summary(reduce_across_ranks(
            evaluate(s.model, s.data, s.stats, s.crop, s.per_rank, config.backend,
                     s.forward_context, rank=run.rank, world=run.world), run.device))
        for what, value in (("training", totals["loss"]), ("validation", val["loss"])):
            if not math.isfinite(value):
                raise ValueError(f"training diverged in epoch {epoch + 1}: the {what} loss is "
                                 f"{value}; stopped before saving that epoch ({config.out}/last.pt "
                                 f"holds epoch {epoch}). Try a lower --lr (it was {lr:g})")
        metrics = report.epoch_metrics(epoch + 1, totals, val, lr)
        s.history.append(metrics)
        error = 1.0 - val["top1"]
        improved = s.schedule["best_error"] is None or error < s.schedule["best_error"]
        _step_schedule(s.schedule, error, improved, config)
        if run.main:
            _save(s, epoch + 1, improved)
        run.say(report.epoch_line(metrics, config.epochs))
    return s.model, s.history


def _save(s, epochs_done, improved):
    """last.pt (and best.pt when the validation error improved), metrics.jsonl, curves.png."""
    state = dict(epoch=epochs_done, model=s.model.state_dict(), optimizer=s.optimizer.state_dict(),
                 scaler=s.scaler.state_dict(), schedule=s.schedule, rng=checkpoint.rng_state(),
                 config=dataclasses.asdict(s.config), spec=s.spec.text, data=s.data_info(),
                 metrics=s.history)
    checkpoint.save_atomically(state, os.path.join(s.config.out, "last.pt"))
    if improved:
        checkpoint.save_atomically(state, os.path.join(s.config.out, "best.pt"))
    report.write_metrics(s.history, s.config.out)
    report.plot_curves(s.history, os.path.join(s.config.out, "curves.png"))


def train_epoch(s, epoch):
    """One pass over this rank's shard at the schedule's learning rate; returns totals over all
    ranks: loss (summed over images), images, unreadable files dropped, and the seconds it took."""
    config, run, lr = s.config, s.run, s.schedule["lr"]
    for group in s.optimizer.param_groups:
        group["lr"] = lr
    if s.graphed is not None:
        s.graphed.set_lr(lr)
        s.graphed.reset_sum()
    torch.manual_seed(_epoch_seed(config.seed, epoch, run.rank))  # dropout masks
    gen = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch, run.rank) + 1)
    s.trained.train()
    began, seen, dropped = time.perf_counter(), 0, 0
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)  # no sync per step
    steps = -(-(s.data.train_count() // run.world) // s.per_rank)
    # On the triton backend the images come as the first conv reads them: channels_last and,
    # under autocast, already in its dtype (no conversion kernels in the step).
    triton_backend = config.backend == "triton"
    image_dtype = AUTOCAST_DTYPES.get(config.precision, torch.float32) if triton_backend else torch.float32
    image_format = torch.channels_last if triton_backend else torch.contiguous_format
    with report.progress(run, epoch, config.epochs, steps) as advance:
        for images, index, labels, bad in s.data.train_batches(epoch, s.per_rank, config.seed,
                                                              run.rank, run.world):
            dropped += bad
            if images is None:  # every file of the batch was unreadable
                advance(None, seen, began, lr)
                continue
            x = augment(images, _training_views(index, s.stored, s.crop, gen, config), s.stats,
                        s.crop, dtype=image_dtype, backend=config.backend, memory_format=image_format)
            if s.graphed is not None:  # forward, backward and update in one replay
                loss = s.graphed.step(x, labels)
            else:
                with s.forward_context():
                    loss = TF.cross_entropy(s.trained(x).float(), labels)
                s.optimizer.zero_grad(set_to_none=True)
                s.scaler.scale(loss).backward()
                s.scaler.step(s.optimizer)
                s.scaler.update()
                loss_sum += loss.detach().double() * labels.shape[0]
            seen += labels.shape[0]
            advance(loss, seen, began, lr)
    if s.graphed is not None:
        loss_sum = s.graphed.loss_sum
    totals = dict(loss=loss_sum.item(), images=seen, dropped=dropped)
    return dict(reduce_across_ranks(totals, run.device), seconds=time.perf_counter() - began)


def _training_views(index, stored, crop, gen, config):
    """The augmentation draws of a batch: random crops, reflections and lighting as configured."""
    if config.random_crop:
        return random_views(index, stored, crop, gen, alpha_std=config.pca_std, flip=config.flip)
    views = center_views(index, stored, crop)
    if config.flip:  # reflections without crops
        views.flip = torch.randint(0, 2, views.flip.shape, generator=gen, device=gen.device,
                                   dtype=torch.int32)
    if config.pca_std:
        views.alphas = torch.randn(views.alphas.shape, generator=gen, device=gen.device) * config.pca_std
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
