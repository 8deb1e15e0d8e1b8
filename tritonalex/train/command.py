"""`tritonalex train` and `tritonalex eval`."""

import argparse
import dataclasses
import json
import sys

from .._cli_types import integer, non_negative, number, positive
from .trainer import PRECISIONS, TrainConfig

TRAIN_DESCRIPTION = """\
Train a spec with the paper's recipe: SGD (momentum 0.9, weight decay 0.0005), batch 128,
learning rate 0.01 divided by 10 when validation error stops improving (at most 3 times),
dropout 0.5, random crops, reflections and PCA lighting.

With no arguments it trains the small spec (alexnet-small, 32x32 input) on the built-in shapes
dataset (10 classes, generated from --seed, no download) for 8 epochs: a few minutes on a 2-core
CPU. --data DIR trains on an ImageFolder (DIR/train/<class>/*.jpg|png, DIR/val/<class>/...)
with the paper's alexnet by default.

Without CUDA the default backend is torch (Triton's interpreter is for proving correctness, not
for training); on a GPU it is triton. Each epoch writes OUT/last.pt (and OUT/best.pt when
validation improves) atomically, OUT/metrics.jsonl and OUT/curves.png; --resume continues from
OUT/last.pt exactly as the uninterrupted run would have. Under torchrun it trains
data-parallel: torchrun --nproc_per_node 2 -m tritonalex.cli train ...
"""


def add_parsers(commands):
    d = TrainConfig()
    p = commands.add_parser("train", help="train a spec with the paper's recipe",
                            description=TRAIN_DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", help="shipped spec name or .toml path (default: alexnet-small on the "
                                  "built-in data, alexnet with --data)")
    p.add_argument("--data", metavar="DIR", help="ImageFolder root with train/ and val/")
    p.add_argument("--epochs", type=positive, help="default 8 on the built-in data, 90 with --data")
    p.add_argument("--batch-size", type=positive, default=d.batch_size,
                   help=f"over all ranks (default {d.batch_size})")
    p.add_argument("--lr", type=number(0, low_open=True), default=d.lr,
                   help=f"initial learning rate (default {d.lr})")
    p.add_argument("--momentum", type=number(0, 1, high_open=True), default=d.momentum)
    p.add_argument("--weight-decay", type=number(0), default=d.weight_decay)
    p.add_argument("--dropout", type=number(0, 1, high_open=True),
                   help="override the spec's dropout probability")
    p.add_argument("--lr-drops", type=non_negative, default=d.lr_drops,
                   help=f"most divisions of the learning rate by 10 (default {d.lr_drops})")
    p.add_argument("--patience", type=positive, default=d.patience,
                   help=f"epochs without improvement before a drop (default {d.patience})")
    p.add_argument("--pca-std", type=number(0), default=d.pca_std,
                   help=f"std of the PCA lighting magnitudes, 0 for none (default {d.pca_std})")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="no horizontal reflections")
    p.add_argument("--no-random-crop", dest="random_crop", action="store_false",
                   help="train on the center crop")
    p.add_argument("--backend", choices=["triton", "torch"],
                   help="default: triton with CUDA, torch without")
    p.add_argument("--devices", help="one device per tower, e.g. cuda:0,cuda:1 (the paper's split)")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="fp32 (IEEE), tf32, bf16 (autocast), fp16 (autocast with loss scaling)")
    p.add_argument("--seed", type=integer(0, 2**63 - 1), default=d.seed)
    p.add_argument("--out", metavar="DIR", help="checkpoints and metrics (default runs/<spec>)")
    p.add_argument("--resume", nargs="?", const="last", metavar="CHECKPOINT",
                   help="continue from OUT/last.pt, or from the given checkpoint, with its recipe "
                        "and data (flags that differ from the checkpoint's are refused)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, training into a folder "
                        "that holds last.pt, best.pt or metrics.jsonl is refused)")
    p.add_argument("--workers", type=non_negative,
                   help="DataLoader workers for --data (default min(4, CPUs))")
    p.add_argument("--image-size", type=positive,
                   help="stored image side (default 256 for 224/227 inputs, proportional below)")
    p.add_argument("--train-images", type=positive, default=d.train_images,
                   help=f"built-in data: training images (default {d.train_images})")
    p.add_argument("--val-images", type=positive, default=d.val_images,
                   help=f"built-in data: validation images (default {d.val_images})")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="on CUDA, run every step eagerly instead of capturing the training step "
                        "(forward, backward, SGD update) in a CUDA graph after 3 warm-up steps "
                        "and replaying it (not graphed anyway: fp16, torchrun ranks, towers on "
                        "several devices)")
    p.set_defaults(run=_train)

    e = commands.add_parser(
        "eval", help="top-1/top-5 error of a checkpoint, with the paper's 10-crop test",
        description="Evaluate a checkpoint on DIR/val (or, for a model trained on the built-in "
                    "data, its validation set): top-1 and top-5 error. --tta 10 is the paper's "
                    "test: four corner crops and the center crop, each with its reflection, "
                    "softmax averaged; --tta 1 is the center crop.")
    e.add_argument("--checkpoint", required=True, metavar="FILE")
    e.add_argument("--data", metavar="DIR", help="ImageFolder root with val/")
    e.add_argument("--tta", type=int, choices=[1, 10], default=10)
    e.add_argument("--batch-size", type=positive, default=128)
    e.add_argument("--backend", choices=["triton", "torch"],
                   help="default: triton with CUDA, torch without")
    e.add_argument("--devices", help="one device per tower")
    e.add_argument("--precision", choices=PRECISIONS, default="fp32")
    e.add_argument("--workers", type=non_negative)
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(run=_eval)


def _train(args):
    from .checkpoint import CheckpointError
    from .trainer import train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    try:
        train(config, explicit=args.given & fields)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch's checkpoint is intact; continue with "
              "--resume", file=sys.stderr)
        return 130
    return 0


def _eval(args):
    from .checkpoint import CheckpointError

    try:
        result = evaluate_checkpoint(args)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['checkpoint']}: {result['images']} validation images, "
              f"{'10-crop' if args.tta == 10 else 'center crop'}: top-1 error "
              f"{100 * result['top1_error']:.2f}%, top-5 error {100 * result['top5_error']:.2f}%"
              + (f" ({result['dropped']} unreadable files skipped)" if result["dropped"] else ""))
    return 0


def evaluate_checkpoint(args):
    import torch

    from .. import compiler
    from ..data import BuiltinData, FolderData
    from ..data.augment import ColorStats
    from ..spec import load_spec
    from . import checkpoint
    from .evaluate import evaluate, summary
    from .trainer import default_backend, precision_context, prepare_spec, set_tf32

    state = checkpoint.load(args.checkpoint)
    config, info = state["config"], state["data"]
    spec = load_spec(config["spec"], state["spec"])
    prepare_spec(spec, len(info["classes"]), config["dropout"])
    backend = args.backend or default_backend()[0]
    devices = compiler.parse_devices(args.devices)
    model = compiler.compile(spec, backend=backend, devices=devices)
    checkpoint.load_model(model, state, args.checkpoint)
    if args.data:
        data = FolderData(args.data, info["stored"], classes=info["classes"], workers=args.workers,
                          device=devices[0], need_train=False)
    elif info["kind"] == "builtin":
        data = BuiltinData(info["stored"], seed=config["seed"], train_count=0,
                           val_count=config["val_images"], device=devices[0])
    else:
        raise ValueError(f"{args.checkpoint} was trained on {info['root']}; pass --data DIR")
    set_tf32(args.precision)
    totals = evaluate(model, data, ColorStats(**info["stats"]), info["crop"], args.batch_size,
                      backend, precision_context(args.precision, torch.device(devices[0]).type),
                      tta=args.tta)
    result = summary(totals)
    return dict(checkpoint=args.checkpoint, epoch=state["epoch"], images=result["images"],
                dropped=result["dropped"], tta=args.tta, top1_error=1 - result["top1"],
                top5_error=1 - result["top5"], loss=result["loss"])
