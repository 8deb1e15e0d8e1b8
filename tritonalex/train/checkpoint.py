"""Checkpoints: written atomically (a temporary file in the same folder, flushed to disk, then
renamed over the old one), so a crash or Ctrl-C leaves the previous checkpoint or the new one,
never a broken file; read back with a clear error when a file is damaged or not ours.

Safe to open: a checkpoint holds only tensors, plain containers, strings and numbers (RNG states
as tensors), and is read with `torch.load(weights_only=True)`, which builds nothing else. A file
that needs any other object to unpickle, a crafted one that would run code included, is refused
before anything in it runs. Format 1 files (earlier tritonalex, numpy RNG state pickled as an
array) are refused the same way, with a message that says so.
"""

import os
import pickle

import torch

from .._output import atomic_open

FORMAT = "tritonalex-checkpoint-2"
KEYS = ("format", "epoch", "model", "optimizer", "scaler", "schedule", "rng", "config", "spec",
        "data", "metrics")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read: damaged, truncated, or not a tritonalex checkpoint."""


def save_atomically(state, path):
    with atomic_open(path, "wb") as f:
        torch.save(dict(state, format=FORMAT), f)


def load(path, map_location="cpu"):
    """The checkpoint's dict; CheckpointError naming the file when it cannot be used."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise CheckpointError(
                f"{path}: refused: it holds objects other than tensors, containers and numbers, "
                f"which could run code when opened (a checkpoint of an earlier tritonalex, format "
                f"1, or a file that is not ours); tritonalex opens weights-only checkpoints") from None
        raise CheckpointError(f"{path}: damaged or not a checkpoint (UnpicklingError: {exc})") from None
    except Exception as exc:  # noqa: BLE001 - any other failure to read means a damaged file
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({type(exc).__name__}: "
                              f"{exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tritonalex checkpoint (format {FORMAT} expected)")
    missing = [k for k in KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: damaged checkpoint, missing {', '.join(missing)}")
    return state


def load_model(model, state, path):
    """Load the checkpoint's weights into `model` (compiled from its spec); CheckpointError when
    they do not fit it (a checkpoint edited, or its spec text replaced)."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"{path}: its weights do not match its spec "
                              f"({first[-1].strip() if first else type(exc).__name__})") from None


def rng_state():
    import random

    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return dict(torch=torch.get_rng_state(), python=random.getstate(),
                numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                           has_gauss=int(has_gauss), gauss=float(gauss)),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def set_rng_state(state):
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
