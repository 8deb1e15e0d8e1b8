"""`tritonalex bench` without a GPU: each selected case (or a spec's compiled net) checked against
torch in float64 under Triton's interpreter at a small batch, with FLOPs, bytes and the H100
roofline floor at the requested batch. No timing: an interpreter time is no kernel time."""

import math

import torch

from ..kernels import launch
from . import harness, layers, net

CHECK_TOLERANCE = 1e-9  # relative to the reference's largest magnitude, in float64
AUGMENT_TOLERANCE = 2e-6  # the augmentation kernel computes in fp32


def check(chosen, spec, args, directions, layouts):
    """Check kernels against torch in float64 at --check-batch; costs at --batch."""
    poison = launch.set_poison(True)  # an element a kernel fails to write is NaN: the check fails
    try:
        return _check_all(chosen, spec, args, directions, layouts)
    finally:
        launch.set_poison(poison)


def _check_all(chosen, spec, args, directions, layouts):
    rows = []
    for precision in args.dtype:
        size = harness.PRECISIONS[precision][0].itemsize
        for layer in chosen:
            for layout in layouts if layers.takes_layout(layer, args.spec) else ("row-major",):
                error = _check_layer(layer, args.check_batch, layout,
                                     backward=directions != ("forward",), spec=args.spec)
                for direction in directions:
                    flops, bytes_ = layers.cost(layer, args.batch, size, direction, spec=args.spec)
                    rows.append(_check_row(layers.label(layer, args.spec), precision, layout,
                                           direction, error, flops, bytes_, args.batch))
        if spec is not None:
            error = _check_net(spec, args.check_batch)
            for pass_ in net.PASSES:
                flops, bytes_ = net.cost(spec, args.batch, size, pass_)
                rows.append(_check_row(spec.name, precision, "nchw", pass_, error, flops, bytes_,
                                       args.batch))
            # the augmentation computes in fp32 by design (its input is 8-bit): fp32 tolerance
            steps, _ = net.augmentation_case(spec, args.check_batch, torch.float32, "cpu")
            error = _rel_error(steps["tritonalex"](), steps["torch"]())
            rows.append(_check_row(spec.name, precision, "nchw", "augmentation", error, 0,
                                   net.augmentation_bytes(spec, args.batch, size), args.batch,
                                   tolerance=AUGMENT_TOLERANCE))
    return rows


def _check_row(case, precision, layout, direction, error, flops, bytes_, batch,
               tolerance=CHECK_TOLERANCE):
    return dict(case=case, dtype=precision, layout=layout, direction=direction, batch=batch,
                check="ok" if error <= tolerance else "FAIL", max_rel_error=error,
                gflop=flops / 1e9, mbytes=bytes_ / 1e6,
                h100_floor_ms=harness.floor_ms("H100", precision, flops, bytes_))


def _rel_error(ours, ref):
    scale = ref.abs().max().item() or 1.0
    err = (ours - ref).abs().max().item() / scale
    return math.inf if math.isnan(err) else err


def _check_layer(layer, batch, layout, backward, spec="alexnet"):
    """Largest relative error of the layer's output (and input/weight/bias gradients) against
    torch, float64, dropout off (its mask is random; tests/test_linear.py covers it)."""
    fns = layers.implementations(layer, training=False, spec=spec)
    results = {}
    for impl, fn in fns.items():
        args_ = layers.inputs(layer, batch, torch.float64, layout, "cpu", spec=spec)
        out = fn(*args_)
        grads = ()
        if backward:
            grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), device="cpu",
                                      dtype=torch.float64)
            grads = torch.autograd.grad(out, [a for a in args_ if a.requires_grad], grad_output)
        results[impl] = (out.detach(),) + tuple(grads)
    return max(_rel_error(a, b) for a, b in zip(results["tritonalex"], results["torch"]))


def _check_net(spec, batch):
    """Largest relative error of the triton backend's logits and parameter gradients (eval mode,
    so dropout is off) against the torch backend's, float64."""
    models = net.models(spec, torch.float64, "cpu")
    x, labels = net.batch_of(spec, batch, torch.float64, "cpu")
    results = {}
    for impl, model in models.items():
        model.eval()
        logits = model(x)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        results[impl] = [logits.detach()] + [p.grad for p in model.parameters()]
    return max(_rel_error(a, b) for a, b in zip(results["tritonalex"], results["torch"]))
