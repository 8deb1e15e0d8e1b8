"""The CUDA-graph training step (train/graphed.py): its SGD update equals torch's, what flows
through its static buffers trains exactly as the eager loop does (a stand-in capture that replays
by calling the body again), its body runs on meta tensors (no host reads: capturable), and the
trainer's graphed epochs equal its eager ones. On a GPU: a real capture, replayed twice, draws two
different dropout masks."""

import pytest
import torch
import torch.nn.functional as TF

import tritonalex
from tritonalex.train import graphed, trainer
from tritonalex.train.graphed import GraphedStep, sgd_update, why_not_graphed


def _rerun(body):
    """A stand-in for cuda_graph: records the body, and each replay runs it again."""
    _rerun.captures += 1
    return body


def test_sgd_update_equals_torch_sgd():
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(5, 3, generator=gen, device=gen.device, dtype=torch.float64),
              torch.randn(7, generator=gen, device=gen.device, dtype=torch.float64)]
    ours = [p.clone() for p in params]
    theirs = [p.clone().requires_grad_() for p in params]
    opt = torch.optim.SGD(theirs, lr=0.1, momentum=0.9, weight_decay=5e-4)
    buffers = [torch.zeros_like(p) for p in params]
    lr = torch.tensor(0.1, dtype=torch.float64)
    for step in range(5):
        if step == 3:  # a plateau drop: the tensor changes, the update follows
            lr.fill_(0.01)
            opt.param_groups[0]["lr"] = 0.01
        grads = [torch.randn(p.shape, generator=gen, device=gen.device, dtype=torch.float64) for p in params]
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        opt.step()
        sgd_update(ours, grads, buffers, lr, 0.9, 5e-4)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b.detach(), rtol=1e-14, atol=1e-15)


def _tiny_model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 4 * 4, 5)).double()


def _batches(sizes):
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 3, 6, 6, generator=gen, device=gen.device, dtype=torch.float64),
             torch.randint(0, 5, (n,), generator=gen, device=gen.device)) for n in sizes]


def test_static_buffers_train_as_the_eager_loop():
    """Warm-up steps, the capture, replays on new batches, a learning-rate change between
    replays and a partial batch: the same parameters and loss sum as torch's eager loop."""
    batches = _batches([4, 4, 4, 4, 4, 2, 4])
    eager, ours = _tiny_model(0), _tiny_model(0)
    opt = torch.optim.SGD(eager.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    step = GraphedStep(ours, torch.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9,
                                             weight_decay=5e-4), warmup=2, capture=_rerun)
    _rerun.captures = 0
    loss_sum = 0.0
    for i, (x, y) in enumerate(batches):
        if i == 4:
            step.set_lr(0.005)
            opt.param_groups[0]["lr"] = 0.005
        loss = TF.cross_entropy(eager(x).float(), y)  # as the trainer (and the step) do
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += loss.item() * y.shape[0]
        got = step.step(x, y)
        torch.testing.assert_close(got, loss.detach())
    assert _rerun.captures == 1 and step.replay is not None
    assert step.images.shape == (4, 3, 6, 6)
    torch.testing.assert_close(step.loss_sum.item(), loss_sum, rtol=1e-12, atol=0)
    for a, b in zip(ours.parameters(), eager.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # The momentum buffers are the optimizer's own: a checkpoint saves them.
    state = step.optimizer.state_dict()["state"]
    assert all(torch.equal(state[i]["momentum_buffer"], buf) for i, buf in enumerate(step.buffers))


def test_a_failed_capture_trains_on_eagerly():
    """A capture that raises is said once (a warning naming --no-cuda-graph) and every step,
    that batch's included, runs eagerly: the same parameters as the eager loop."""
    def broken(body):
        raise RuntimeError("operation not permitted when stream is capturing")

    batches = _batches([4, 4, 4, 4])
    eager, ours = _tiny_model(0), _tiny_model(0)
    opt = torch.optim.SGD(eager.parameters(), lr=0.05, momentum=0.9)
    step = GraphedStep(ours, torch.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9),
                       warmup=1, capture=broken)
    with pytest.warns(UserWarning, match="capture of the training step failed.*--no-cuda-graph"):
        for x, y in batches:
            loss = TF.cross_entropy(eager(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step.step(x, y)
    assert step.replay is None
    for a, b in zip(ours.parameters(), eager.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_step_body_runs_on_meta_tensors():
    """The captured body (forward, loss, gradients, update) of the compiled alexnet on the meta
    device: a host read of a value (.item(), a data-dependent branch) would fail here."""
    net = tritonalex.compile(tritonalex.load_spec("alexnet"), backend="triton", devices="meta")
    net.train()
    step = GraphedStep(net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9,
                                            weight_decay=5e-4), warmup=0, capture=_rerun)
    images = torch.empty(2, 3, 227, 227, device="meta").contiguous(memory_format=torch.channels_last)
    loss = step.step(images, torch.zeros(2, dtype=torch.int64, device="meta"))
    assert loss.device.type == "meta" and step.replay is not None
    assert step.images.is_contiguous(memory_format=torch.channels_last)


def test_why_not_graphed():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert why_not_graphed(cuda, "bf16", 1, ("cuda:0",)) is None
    assert "CUDA device" in why_not_graphed(cpu, "fp32", 1, ("cpu",))
    assert "fp16" in why_not_graphed(cuda, "fp16", 1, ("cuda:0",))
    assert "DDP" in why_not_graphed(cuda, "fp32", 2, ("cuda:0",))
    assert "several devices" in why_not_graphed(cuda, "fp32", 1, ("cuda:0", "cuda:1"))


def test_trainer_graphed_epochs_equal_eager_epochs(tmp_path, monkeypatch):
    """`tritonalex train`'s graphed path (the stand-in capture, on the CPU) against
    --no-cuda-graph: the same losses per epoch (lr drops included) and the same weights."""
    config = dict(train_images=40, val_images=16, batch_size=16, quiet=True, backend="torch",
                  epochs=3, patience=1, spec="alexnet-small")
    eager_model, eager_history = trainer.train(trainer.TrainConfig(
        out=str(tmp_path / "eager"), cuda_graph=False, **config))
    assert len({m["lr"] for m in eager_history}) > 1  # a plateau drop happened: set_lr is tested
    monkeypatch.setattr(trainer, "why_not_graphed", lambda *args: None)
    monkeypatch.setattr(graphed, "cuda_graph", _rerun)
    _rerun.captures = 0
    model, history = trainer.train(trainer.TrainConfig(out=str(tmp_path / "graphed"), **config))
    assert _rerun.captures == 1  # 40 images in batches of 16: 2 full + 1 partial per epoch
    for ours, theirs in zip(history, eager_history):
        for key in ("train_loss", "val_loss", "lr"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5), key
    for (name, a), b in zip(model.state_dict().items(), eager_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_replays_draw_new_dropout_masks():
    torch.manual_seed(0)
    model = torch.nn.Sequential(tritonalex.nn.Linear(64, 64), tritonalex.nn.Dropout(0.5),
                                tritonalex.nn.Linear(64, 10)).cuda()
    masks = torch.zeros(32, 64, dtype=torch.bool, device="cuda")
    model[1].register_forward_hook(lambda m, inputs, out: masks.copy_(out != 0))
    step = GraphedStep(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                       warmup=1)
    x = torch.randn(32, 64, device="cuda") + 3  # positive: dropout's zeros are the mask's
    y = torch.randint(0, 10, (32,), device="cuda")
    seen = []
    for _ in range(4):  # warm-up, capture (and its replay), two more replays
        step.step(x, y)
        torch.cuda.synchronize()
        seen.append(masks.clone())
    assert step.replay is not None
    assert not torch.equal(seen[2], seen[3]) and not torch.equal(seen[1], seen[2])
    assert 0.4 < seen[3].float().mean().item() < 0.6
