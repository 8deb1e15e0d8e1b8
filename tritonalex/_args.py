"""Argument normalization and host-side checks shared by every op, mirroring torch's own.

Errors are raised here, before any kernel launch, with the exception type and wording torch uses,
so code that catches torch's errors catches ours.
"""

import torch

from .kernels.launch import FLOAT_DTYPES, INTERPRETING

_TYPE_NAMES = {torch.float16: "c10::Half", torch.bfloat16: "c10::BFloat16", torch.float32: "float",
               torch.float64: "double"}


def expand_param(value, name, dims=2):
    """An int, or a sequence of `dims` ints, as a tuple of `dims` ints (torch's _pair for dims=2)."""
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple, torch.Size)):
        raise TypeError(f"conv2d(): argument '{name}' must be tuple of ints, but found element "
                        f"of type {type(value).__name__} at pos 0")
    if isinstance(value, int):
        return (value,) * dims
    value = tuple(value)
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"conv2d(): argument '{name}' must be tuple of ints, but found "
                            f"element of type {type(v).__name__} at pos {i}")
    if len(value) != dims or not all(isinstance(v, int) for v in value):
        raise RuntimeError(
            f"expected {name} to be a single integer value or a list of {dims} values to match "
            f"the convolution dimensions, but got {name}={list(value)}")
    return value


def type_name(dtype):
    return _TYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def check_same_dtype(first, first_name, second, second_name):
    if second is not None and first.dtype != second.dtype:
        raise RuntimeError(f"{first_name} type ({type_name(first.dtype)}) and {second_name} type "
                           f"({type_name(second.dtype)}) should be the same")


def check_float_dtype(tensor, op):
    if tensor.dtype not in FLOAT_DTYPES:
        raise RuntimeError(f"tritonalex {op}: expected a float16, bfloat16, float32 or float64 "
                           f"tensor, but got {tensor.dtype}")


def check_device(op, *tensors):
    """All tensors on one device, and one the Triton kernels can run on (or meta: shapes only)."""
    tensors = [t for t in tensors if t is not None]
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                           f"devices, {', '.join(sorted(str(d) for d in devices))}!")
    device = tensors[0].device
    if not INTERPRETING and device.type not in ("cuda", "meta"):
        raise RuntimeError(
            f"tritonalex {op}: Triton kernels run on CUDA tensors, got a tensor on {device}. "
            "Without CUDA, tritonalex runs them on CPU tensors in Triton's interpreter "
            "(TRITON_INTERPRET=1, set automatically when no CUDA device is present).")


def check_activation(activation):
    if activation not in (None, "relu"):
        raise ValueError(f"activation must be None or 'relu', got {activation!r}")
    return activation


def autocast_input(input):
    """(input, mixed): the input cast as torch.autocast casts conv2d's and linear's (see
    `autocast_dtype`), and whether an autocast region is on (the parameters may then be wider)."""
    dtype = autocast_dtype(input)
    return (input, False) if dtype is None else (input.to(dtype), True)


def autocast_dtype(input):
    """The dtype torch.autocast computes conv2d and linear in for `input`'s device (fp16 or bf16),
    or None outside an autocast region. Inside one, tritonalex casts only the activations: the
    weight and bias are read as stored (fp32 master weights), the weight rounded to that dtype
    inside the kernel as torch's cast would round it and the bias added in fp32, without a cast
    kernel per step; their gradients come back in their own dtype."""
    device_type = input.device.type
    # meta tensors (shape-only runs) have no autocast: asking torch about it would raise. CUDA
    # and CPU always have it, and are not asked: torch.compile on torch 2.11 cannot trace the
    # question (a graph break, then one recompile per layer; seen on an H200).
    available = device_type in ("cuda", "cpu") or torch.amp.is_autocast_available(device_type)
    if not (available and torch.is_autocast_enabled(device_type)):
        return None
    return torch.get_autocast_dtype(device_type)


def check_parameter_dtypes(input, weight, bias, mixed):
    """torch's rule: weight and bias in the input's dtype. `mixed` (inside autocast): any float
    dtype, the bias in the weight's."""
    if not mixed:
        check_same_dtype(input, "Input", weight, "weight")
        check_same_dtype(input, "Input", bias, "bias")
        return
    check_float_dtype(weight, "weight")
    check_same_dtype(weight, "Weight", bias, "bias")
