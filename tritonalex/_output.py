"""Result files: written atomically, and plotted with matplotlib when it is installed.

Every file the commands write (benchmark CSVs, checkpoints, metrics, plots) goes through
`atomic_open`: a temporary file in the same folder, flushed to disk, then renamed over the target,
so a crash or Ctrl-C leaves the old file or the new one, never half of one.
"""

import contextlib
import os
import tempfile

# Temporary files of `atomic_open` start so; a write killed outright (SIGKILL, power loss) leaves
# one behind, and `tritonalex train` removes them from its output folder when it starts.
TEMPORARY_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary file beside `path` (folders created) for writing; on a clean exit it
    replaces `path`, on an exception it is removed and `path` is left as it was."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMPORARY_PREFIX, suffix=os.path.splitext(path)[1])
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it owner-only; a result is a normal file
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(fig, path):
    """Save a matplotlib figure as PNG atomically and free it."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
