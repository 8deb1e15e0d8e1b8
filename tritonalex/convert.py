"""convert(model): swap supported torch.nn layers for their tritonalex twins, fusing neighbours.

Leaf modules are replaced by their tritonalex subclass with the very same Parameter objects (the
weights are shared, the state_dict keys stay the same). Inside an nn.Sequential, a Conv2d
followed by a ReLU becomes one Conv2d(activation="relu"), and a Linear followed by a ReLU (and
then a Dropout) becomes one Linear(activation="relu", dropout=p); the absorbed modules become
nn.Identity, so indices and state_dict keys do not move. No fusion crosses a module with hooks
(forward, pre-forward or backward: feature extractors, Grad-CAM): the Conv2d/Linear would hand
its hooks post-ReLU values and the ReLU's hooks would never fire, so such pairs stay two modules.
Anything else is left as it is, and
listed in the returned model's ``tritonalex_unsupported``: (qualified name, type name) pairs.
"""

import torch

from . import nn as tnn

# torch module class -> its twin: every class of tritonalex.nn that directly subclasses a torch.nn
# module (found, not listed: a new twin in nn.py is converted without touching this file).
_TWINS = {cls.__bases__[0]: cls for cls in vars(tnn).values()
          if isinstance(cls, type) and issubclass(cls, torch.nn.Module)
          and cls.__bases__[0].__module__.startswith("torch.nn.")}


def _twin(module):
    """The tritonalex twin of a supported torch module (same attributes, same Parameters)."""
    cls = _TWINS[type(module)]
    twin = cls.__new__(cls)
    twin.__dict__.update(module.__dict__)  # parameters, buffers, hooks and hyper-parameters
    twin._parameters = dict(module._parameters)
    twin._buffers = dict(module._buffers)
    twin._modules = dict(module._modules)
    if cls in (tnn.Conv2d, tnn.Linear):
        twin.activation = None
    if cls is tnn.Linear:
        twin.dropout = 0.0
    return twin


def _has_hooks(module):
    return any(getattr(module, name, None) for name in (
        "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"))


def _fuse_sequential(seq):
    """Fold ReLU (and Dropout after a Linear) into the preceding Conv2d / Linear of a Sequential."""
    names = list(seq._modules)
    i = 0
    while i < len(names):
        layer = seq._modules[names[i]]
        following = [seq._modules[n] for n in names[i + 1:i + 3]]
        if isinstance(layer, (tnn.Conv2d, tnn.Linear)) and layer.activation is None \
                and following and isinstance(following[0], tnn.ReLU) \
                and not _has_hooks(layer) and not _has_hooks(following[0]):
            layer.activation = "relu"
            seq._modules[names[i + 1]] = torch.nn.Identity()
            i += 1
            if isinstance(layer, tnn.Linear) and len(following) > 1 \
                    and isinstance(following[1], tnn.Dropout) and not _has_hooks(following[1]):
                layer.dropout = following[1].p
                seq._modules[names[i + 1]] = torch.nn.Identity()
                i += 1
        i += 1


def convert(model, *, fuse=True):
    """Return `model` (changed in place) running on tritonalex kernels where it can.

    Supported: every torch.nn class with a twin in tritonalex.nn (Conv2d, Linear, ReLU, Dropout,
    MaxPool2d, LocalResponseNorm, BatchNorm2d; exact types: a subclass of those is left alone,
    since its forward may differ). Outputs are unchanged up to
    floating-point rounding; dropout masks come from tritonalex's own random stream.
    """
    unsupported = []

    def visit(module, prefix):
        for name, child in list(module._modules.items()):
            if child is None:
                continue
            qualified = f"{prefix}{name}"
            if type(child) in _TWINS:
                module._modules[name] = _twin(child)
            elif len(child._modules) == 0 and not isinstance(child, tuple(_TWINS.values())) \
                    and not isinstance(child, torch.nn.Identity):
                unsupported.append((qualified, type(child).__name__))
            else:
                visit(child, qualified + ".")
        if fuse and isinstance(module, torch.nn.Sequential):
            _fuse_sequential(module)

    if type(model) in _TWINS:
        model = _twin(model)
    else:
        visit(model, "")
    model.tritonalex_unsupported = unsupported
    return model
