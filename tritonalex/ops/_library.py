"""How an op becomes a torch.library op: `torch.ops.tritonalex.<name>`.

Each op is a `torch.library.custom_op` whose implementation is the host launcher in `kernels/`,
with a fake implementation (output shapes, dtypes and strides only) so FakeTensor, torch.compile
(Dynamo traces the op as one node, no graph break), torch.export and `torch.library.opcheck` see
through it, and autograd registered with `register_autograd` whose backward calls the backward
ops (themselves library ops, so a compiled backward graph holds them too).

Real meta tensors (a model built on the meta device, the static model's capture) run the real
implementation instead of the fake one: the launchers allocate their meta outputs and skip the
launch (`kernels.launch.launch`), so a capture records exactly the launches a GPU step makes.

Decided: every op is a `custom_op`, opaque to Inductor (it calls our launchers as they are, with
their autotuning and capture hook), not a `triton_op`, whose `wrap_triton` launches Inductor could
fuse around: that needs each launch traced with fake CUDA tensors, which cannot be checked here.
"""

import torch
from torch._subclasses.fake_tensor import is_fake

from ..kernels.launch import memory_format_of

NAMESPACE = "tritonalex"
IMPLEMENTATIONS = {}  # op name -> its implementation (the static model's capture runs them)


def _real_meta(args):
    return any(isinstance(a, torch.Tensor) and a.device.type == "meta" and not is_fake(a)
               for a in args)


def define(name, impl, fake, mutates_args=()):
    """Register `impl` as `torch.ops.tritonalex.<name>` (schema from its annotations), `fake` as
    its fake implementation; returns the op (call it like `impl`)."""
    op = torch.library.custom_op(f"{NAMESPACE}::{name}", impl, mutates_args=mutates_args)
    IMPLEMENTATIONS[name] = impl

    def fake_or_meta(*args):  # looked up per call: the overhead measurement times the entries
        return IMPLEMENTATIONS[name](*args) if _real_meta(args) else fake(*args)

    op.register_fake(fake_or_meta)
    return op


def like(x, shape=None, dtype=None):
    """An empty output shaped `shape` (default x's) in x's memory format (what the launchers
    allocate), for the fake implementations."""
    return torch.empty(x.shape if shape is None else shape, dtype=dtype or x.dtype,
                       device=x.device, memory_format=memory_format_of(x))
