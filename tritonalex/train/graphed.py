"""One training step (forward, cross-entropy, backward, SGD update) as a CUDA graph, replayed.

Why: an eager AlexNet step makes 40 kernel launches from Python, and each costs the host about
as much as its kernel costs the GPU, or more (`tritonalex kernels --step --overhead` measures
it), so an eager step on an H100 is bound by the CPU. A CUDA graph replays the whole step,
optimizer included, with one host call.

What a capture needs, and how `GraphedStep` meets it:
* Static inputs: each batch is copied into buffers the graph reads (the augmentation runs before
  it, outside the graph, with its own random draws: one copy of the input per step). The loss and
  the epoch's loss sum are written into tensors the caller reads after a replay.
* Nothing that syncs with the host or copies from it inside the step: the step body is tested on
  meta tensors, where any `.item()` or data-dependent host read fails.
* Graph-safe randomness: dropout draws its Philox seed with torch.randint from the device's
  generator inside the step, and torch registers that generator with the graph, so each replay
  draws new masks (and `torch.manual_seed` still reproduces a run).
* The learning rate as a device tensor, so the plateau drops apply to the captured update:
  `sgd_update` is torch.optim.SGD's update (momentum, weight decay; no dampening or Nesterov)
  with foreach ops that read it (torch's SGD takes it as a float, or calls .item() on a tensor),
  and keeps its momentum buffers in the optimizer's state, so checkpoints are unchanged.
* Warm-up before capture: the first `warmup` steps run eagerly on a side stream (Triton's
  autotuning, the conv weight gradient's counter workspace, library handles), as torch's CUDA
  graph notes ask. A batch of another size (the epoch's partial last batch) runs eagerly too,
  through the same update.
Not graphed (the trainer says so and runs eagerly): fp16 (GradScaler's overflow check reads the
host), several ranks (DDP), towers on several devices.
"""

import contextlib
import warnings

import torch
import torch.nn.functional as TF


def sgd_update(params, grads, buffers, lr, momentum, weight_decay):
    """torch.optim.SGD's step (dampening 0, no Nesterov) with `lr` a 0-d tensor on the
    parameters' device, in place: d = g + weight_decay * p; buffer = momentum * buffer + d;
    p -= lr * buffer. Buffers start at zero (torch starts them at d: the same first update)."""
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_mul_(buffers, momentum)
    torch._foreach_add_(buffers, grads)
    torch._foreach_sub_(params, torch._foreach_mul(buffers, lr))


def momentum_buffers(optimizer):
    """The optimizer's momentum buffers, created (zero) where it has none yet, so the update
    here and torch's own step share them (and `optimizer.state_dict()` saves them)."""
    buffers = []
    for p in optimizer.param_groups[0]["params"]:
        state = optimizer.state[p]
        if state.get("momentum_buffer") is None:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        buffers.append(state["momentum_buffer"])
    return buffers


def cuda_graph(body):
    """Capture `body()` in a CUDA graph; returns the graph's replay. The capture runs nothing."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph.replay


@contextlib.contextmanager
def side_stream(device):
    """Warm-up runs on a side stream that joins the current one after (torch's capture notes)."""
    if device.type != "cuda":
        yield
        return
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream(device).wait_stream(side)


class GraphedStep:
    """`step(images, labels)` trains on one batch and returns the loss (a 0-d tensor; read it
    before the next step); `loss_sum` adds loss x batch size over the steps since `reset_sum`.

    model and optimizer: the model in training mode and a torch.optim.SGD over its parameters
    (one group; its momentum and weight decay are read once). autocast_dtype: the forward's
    autocast dtype, or None. lr: set with `set_lr` (a fill of the device tensor, outside the
    graph). capture: how the graph is made (default `cuda_graph`; the tests pass a stand-in that replays
    by calling the body again, which checks what flows through the static buffers on the CPU).
    A capture that fails warns and trains on eagerly, or raises with eager_on_failure=False."""

    def __init__(self, model, optimizer, autocast_dtype=None, warmup=3, capture=None,
                 eager_on_failure=True):
        if len(optimizer.param_groups) != 1:
            raise ValueError("GraphedStep takes an SGD optimizer with one parameter group")
        group = optimizer.param_groups[0]
        if group.get("nesterov") or group.get("dampening") or group.get("maximize"):
            raise ValueError("GraphedStep's update is SGD without Nesterov, dampening or maximize")
        self.model, self.optimizer, self.autocast_dtype = model, optimizer, autocast_dtype
        self.params = list(group["params"])
        self.device = self.params[0].device
        self.momentum, self.weight_decay = group["momentum"], group["weight_decay"]
        # In the parameters' dtype: torch's SGD rounds its float lr to it too.
        self.lr = torch.tensor(float(group["lr"]), dtype=self.params[0].dtype, device=self.device)
        self.loss = torch.zeros((), dtype=torch.float32, device=self.device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.warmup, self.capture = warmup, capture or cuda_graph
        self.eager_on_failure = eager_on_failure  # else a failed capture raises (the benchmark)
        self.buffers = momentum_buffers(optimizer)  # made now: never inside a capture
        self.steps = 0  # eager steps of the graph's batch size so far
        self.images = self.labels = self.replay = None

    def set_lr(self, lr):
        self.lr.fill_(lr)
        self.optimizer.param_groups[0]["lr"] = lr  # what torch's SGD and the checkpoint read

    def reset_sum(self):
        self.loss_sum.zero_()

    def step(self, images, labels):
        if self.replay is not None and images.shape == self.images.shape:
            self.images.copy_(images)
            self.labels.copy_(labels)
            self.replay()
            return self.loss
        if self.images is None:  # the first batch sets the graph's shapes
            self.images = torch.empty_like(images)  # (preserves channels_last strides)
            self.labels = torch.empty_like(labels)
        if images.shape != self.images.shape or self.steps < self.warmup:
            with side_stream(self.device):
                self._body(images, labels)
            if images.shape == self.images.shape:
                self.steps += 1
            return self.loss
        self.images.copy_(images)
        self.labels.copy_(labels)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        try:
            self.replay = self.capture(lambda: self._body(self.images, self.labels))
        except Exception as exc:  # noqa: BLE001 - said, and training goes on eagerly
            if not self.eager_on_failure:
                raise
            warnings.warn(f"CUDA graph capture of the training step failed ({type(exc).__name__}: "
                          f"{exc}); training on eagerly (--no-cuda-graph skips the attempt)",
                          stacklevel=2)
            self.warmup = float("inf")  # every later step eager
            self._body(images, labels)  # this batch's step, which the capture did not run
            return self.loss
        self.replay()  # the capture recorded this batch's step; this runs it
        return self.loss

    def _body(self, images, labels):
        """The step, written for capture: no host reads, every result in a static tensor."""
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                   cache_enabled=False)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with autocast:
            logits = self.model(images)
        loss = TF.cross_entropy(logits.float(), labels)
        grads = torch.autograd.grad(loss, self.params)
        with torch.no_grad():
            sgd_update(self.params, grads, self.buffers, self.lr, self.momentum, self.weight_decay)
            self.loss.copy_(loss)
            self.loss_sum.add_(loss.double() * labels.shape[0])


def why_not_graphed(device, precision, world, devices):
    """None when a training step can be captured here, else the reason it runs eagerly."""
    if device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if precision == "fp16":
        return "fp16's loss scaling reads its overflow check on the host every step"
    if world > 1:
        return "data-parallel ranks (DDP) run eagerly"
    if len(set(devices)) > 1:
        return "towers on several devices run eagerly"
    return None
