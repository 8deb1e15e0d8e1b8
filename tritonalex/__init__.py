"""tritonalex: AlexNet's layers as fused Triton kernels, with torch.nn.functional's semantics.

Importing tritonalex on a machine without a CUDA device turns on Triton's CPU interpreter
(``TRITON_INTERPRET=1``) before any kernel is defined, unless the user set TRITON_INTERPRET
already; the kernels then run, slowly but exactly, on CPU tensors.
"""

import logging
import os

_log = logging.getLogger(__name__)


def _choose_triton_mode():
    if "TRITON_INTERPRET" in os.environ:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"
        _log.debug("no CUDA device: Triton kernels run in Triton's interpreter (TRITON_INTERPRET=1)")


_choose_triton_mode()

from . import functional, nn  # noqa: E402  (after the interpreter switch, which must come first)
from .compiler import compile  # noqa: E402
from .convert import convert  # noqa: E402
from .spec import SpecError, load_spec  # noqa: E402

__version__ = "0.1.0"
__all__ = ["SpecError", "compile", "convert", "functional", "load_spec", "nn"]
