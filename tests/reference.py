"""The shared test reference: fresh random inputs, float64 torch as the truth, dtype tolerances.

Every comparison is against torch computed in float64 from the very same (rounded) input values,
so the only error left is the kernel's accumulation and output rounding. Outputs are poisoned
(NaN-filled) before each kernel writes them (see conftest.py), and a NaN where torch has a number
fails the comparison, so an element a kernel never wrote cannot pass.
"""

import os

import torch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# Largest allowed |actual - expected| relative to max |expected|, per dtype. bf16 allows two ulps:
# the interpreter truncates fp32 -> bf16 instead of rounding (TRITON_ON_CPU.md).
TOLERANCE = {
    torch.float64: 1e-12,
    torch.float32: 2e-6,
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}
TF32_TOLERANCE = 5e-3


def seed():
    """A fresh seed per test, reproducible with TRITONALEX_TEST_SEED."""
    return int(os.environ.get("TRITONALEX_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))


class Inputs:
    """Random tensors from one seeded generator; the seed goes into every failure message."""

    def __init__(self):
        self.seed = seed()
        self.generator = torch.Generator().manual_seed(self.seed)

    def randn(self, *shape, dtype=torch.float64, requires_grad=False):
        t = torch.randn(shape, generator=self.generator, device=self.generator.device,
                        dtype=torch.float64).to(DEVICE, dtype)
        return t.requires_grad_(requires_grad)


def relative_error(actual, expected, floor=1e-30):
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = expected.abs().max().clamp_min(floor)
    return ((actual - expected).abs().max() / scale).item()


def assert_close(actual, expected, tol, what="", seed=None, floor=1e-30):
    """Shapes equal, NaN exactly where the reference has NaN, and relative error within tol.

    The error is relative to max |expected|, or to `floor` where that is smaller (a result that
    is rounding noise around 0, e.g. a gradient that vanishes mathematically)."""
    where = f"{what} (seed {seed}; rerun with TRITONALEX_TEST_SEED={seed})"
    assert actual.shape == expected.shape, f"{where}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    bad = torch.isnan(actual.detach()) != torch.isnan(expected.detach())
    assert not bad.any(), f"{where}: {int(bad.sum())} elements NaN in one result only (unwritten?)"
    finite = ~torch.isnan(expected.detach())
    if finite.any():
        err = relative_error(actual[finite], expected[finite], floor)
        assert err <= tol, f"{where}: relative error {err:.3g} > {tol:.3g}"


def as_layout(t, layout):
    """The same values in another memory layout: 'contiguous', 'channels_last' or 'strided'."""
    if layout == "contiguous":
        return t.contiguous()
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # a non-contiguous view: every other column of a wider tensor
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        wide[..., ::2] = t
        return wide[..., ::2]
    raise ValueError(layout)


def check_unary_op(ours, theirs, x, *, dtype=torch.float64, grad_layout="contiguous", seed=None,
                   tol=None):
    """ours(x) vs theirs(x in float64), forward and input gradient, for a one-input op.

    `x` holds the values (any dtype/layout); it is cast to `dtype` for ours and from there to
    float64 for torch, so both see the same rounded inputs.
    """
    tol = tol or TOLERANCE[dtype]
    x_ours = x.detach().to(dtype).requires_grad_()
    x_ref = x_ours.detach().double().requires_grad_()
    y, ref = ours(x_ours), theirs(x_ref)
    assert y.dtype == dtype
    assert_close(y, ref, tol, "forward", seed)
    dy = as_layout(torch.randn(ref.shape, dtype=torch.float64, device=ref.device), grad_layout).to(dtype)
    (got,) = torch.autograd.grad(y, x_ours, dy)
    (want,) = torch.autograd.grad(ref, x_ref, dy.double())
    assert_close(got, want, tol, "input gradient", seed)
    return y, got


def check_autocast_parameters(ours, theirs, x, w, b, dtype, seed):
    """ours(x, w, b) inside torch.autocast(dtype) with fp32 x, w, b vs theirs (the pre-ReLU
    torch op) in float64 on x and w rounded to dtype: output in dtype, weight and bias gradients
    in fp32, each within dtype's tolerance. The reference's ReLU mask is our output's: an output
    within rounding of 0 may fall either side."""
    import torch

    with torch.autocast(DEVICE.type, dtype=dtype):
        y = ours(x, w, b)
    assert y.dtype == dtype
    w64 = w.detach().to(dtype).double().requires_grad_()
    b64 = b.detach().double().requires_grad_()
    z = theirs(x.to(dtype).double(), w64, b64)
    assert_close(y, torch.relu(z), TOLERANCE[dtype], "forward", seed)
    dy = torch.randn(y.shape, dtype=torch.float64, device=y.device).to(dtype)
    dw, db = torch.autograd.grad(y, (w, b), dy)
    assert dw.dtype == db.dtype == torch.float32
    want = torch.autograd.grad(z, (w64, b64), dy.double() * (y > 0))
    assert_close(dw, want[0], TOLERANCE[dtype], "grad weight", seed)
    assert_close(db, want[1], TOLERANCE[dtype], "grad bias", seed)
