"""Checkpoints: written atomically (a temporary file in the same folder, flushed to disk, then
renamed over the old one), so a crash or Ctrl-C leaves the previous checkpoint or the new one,
never a broken file; read back with a clear error when a file is damaged or not ours."""

import os

import torch

from .._output import atomic_open

FORMAT = "tritonalex-checkpoint-1"
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
        # weights_only=False: the checkpoint holds RNG states and plain config dicts we wrote
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({type(exc).__name__}: "
                              f"{exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tritonalex checkpoint (format {FORMAT} expected)")
    missing = [k for k in KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: damaged checkpoint, missing {', '.join(missing)}")
    return state


def rng_state():
    import random

    import numpy as np

    return dict(torch=torch.get_rng_state(), python=random.getstate(),
                numpy=np.random.get_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def set_rng_state(state):
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
