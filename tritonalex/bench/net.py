"""A whole compiled spec as a benchmark case: an inference pass and a training step (forward,
cross-entropy, backward, SGD with momentum and weight decay), triton backend against the torch
backend (cuDNN/cuBLAS), the same weights on the same card, each also replayed from a CUDA graph
and compiled by torch.compile; and the training augmentation of one
batch (the fused Triton kernel against the same transformation in torch ops), to set beside the
training step it feeds.

Cost of a step (batch N, P parameters, A activation elements per image from the compiler's
summary, I input elements per image, s bytes per element):
- inference: N x forward FLOPs; bytes (P + N*I + 2*N*A) * s: weights read once, each activation
  written once and read once.
- training step: 3 x the forward FLOPs (forward, input grads, weight grads); bytes: the
  forward's, plus the backward's (each activation and its gradient read, the gradient written:
  3*N*A; weights read and their gradients written: 2P) and SGD's (read weight, gradient and
  momentum, write weight and momentum: 5P).
- augmentation: no FLOPs counted; bytes: the crops' uint8 pixels read once (N*I) and the float
  input written once (N*I*s).
"""

import torch
import torch.nn.functional as TF

from ..compiler import compile as compile_spec
from ..data import stored_size
from ..data.augment import ColorStats, augment, random_views
from ..compiler import stages
from ..compiler.summary import summarize

PASSES = ("inference", "training step")


def cost(spec, batch, element_size, pass_):
    """(FLOPs, minimum bytes) of one inference pass or training step of `spec` at `batch`."""
    _, totals = summarize(spec, list(stages(spec))[-1][1], batch=1, bytes_per_element=1)
    params, acts = totals["parameters"], totals["activation_bytes"]
    image = spec.channels * spec.size * spec.size
    flops = totals["forward_flops"] * batch
    inference = params + batch * image + 2 * batch * acts
    if pass_ == "inference":
        return flops, inference * element_size
    return 3 * flops, (inference + 3 * batch * acts + 2 * params + 5 * params) * element_size


def models(spec, dtype, device, seed=0):
    """{"tritonalex": triton-backend model, "torch": torch-backend model} with equal weights."""
    torch.manual_seed(seed)
    reference = compile_spec(spec, backend="torch", devices=device).to(dtype)
    ours = compile_spec(spec, backend="triton", devices=device).to(dtype)
    ours.load_state_dict(reference.state_dict())
    return {"tritonalex": ours, "torch": reference}


def batch_of(spec, batch, dtype, device, seed=0):
    """Random images and labels for `spec`."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, spec.channels, spec.size, spec.size, generator=gen, device=gen.device,
                    dtype=torch.float64)
    labels = torch.randint(0, spec.classes, (batch,), generator=gen, device=gen.device)
    return x.to(device, dtype), labels.to(device)


def step(model, pass_, x, labels):
    """A zero-argument callable: one inference pass, or one training step with its own SGD."""
    if pass_ == "inference":
        def infer():
            model.eval()
            with torch.no_grad():
                return model(x)
        return infer
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        TF.cross_entropy(model(x).float(), labels).backward()
        optimizer.step()
    return train_step


def graphed_step(model, x, labels):
    """A zero-argument callable: one training step replayed from a CUDA graph (`GraphedStep`:
    the same step and SGD as `step`), captured here after its warm-up steps, so every timed
    call is a replay."""
    from ..train.graphed import GraphedStep

    model.train()
    graphed = GraphedStep(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                                                 weight_decay=5e-4), eager_on_failure=False)
    for _ in range(graphed.warmup + 1):
        graphed.step(x, labels)
    return lambda: graphed.step(x, labels)


def augmentation_case(spec, batch, dtype, device, seed=0):
    """({"tritonalex": step, "torch": step}, bytes): augmenting one training batch from stored
    uint8 images (random, at the spec's stored size) into the network's input, two ways."""
    stored = stored_size(spec.size)
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, stored, stored, spec.channels), generator=gen, device=gen.device,
                           dtype=torch.uint8)
    stats = ColorStats.from_images([images])
    views = random_views(torch.arange(batch), stored, spec.size, gen, channels=spec.channels)
    images = images.to(device)
    steps = {impl: (lambda b=backend: augment(images, views, stats, spec.size, dtype, backend=b))
             for impl, backend in (("tritonalex", "triton"), ("torch", "torch"))}
    return steps, augmentation_bytes(spec, batch, dtype.itemsize)


def augmentation_bytes(spec, batch, element_size):
    """Minimum bytes of augmenting a batch: the crops' uint8 pixels read, the input written."""
    return batch * spec.channels * spec.size * spec.size * (1 + element_size)
