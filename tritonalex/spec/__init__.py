"""Declarative network specs: TOML files of layers, loaded and validated before anything runs.

A spec has `name`, `towers` (1 or 2), `[input]` (channels, size) and a list of `[[layers]]`, each
with `name`, `kind` and that kind's keys below. Layers that compute channels (conv, linear) give
totals over all towers and say what they read: `reads = "own"` (each tower reads only its own
maps) or `"all"` (each tower reads every tower's maps); `split = false` makes a layer one
undivided layer over all towers (AlexNet's fc8). Other layers act on each tower's maps alone, so
an LRN normalizes within a tower, as in the paper. Initialization: weights N(0, weight_std),
biases bias_init (defaults 0.01 and 0, the paper's).

Errors name the file, the layer and the key: `SpecError: alexnet.toml: layer 'conv2' (#5): key
'kernal': unknown key (expected one of ...)`.
"""

import dataclasses
import os
import tomllib
from importlib import resources

REQUIRED = object()
# kind -> {key: default (REQUIRED if none), ...}; every kind also takes `name` and `kind`.
KINDS = {
    "conv": dict(out_channels=REQUIRED, kernel=REQUIRED, stride=1, padding=0, reads="own", split=True,
                 weight_std=0.01, bias_init=0.0),
    "linear": dict(out_features=REQUIRED, reads="all", split=True, weight_std=0.01, bias_init=0.0),
    "relu": {},
    "lrn": dict(size=REQUIRED, alpha=1e-4, beta=0.75, k=1.0),
    "maxpool": dict(kernel=REQUIRED, stride=None, padding=0),
    "dropout": dict(p=0.5),
    "flatten": {},
    "softmax": {},
}
SHIPPED = ("alexnet", "alexnet-owt", "alexnet-small")


class SpecError(ValueError):
    """A spec file that cannot describe a network; the message names file, layer and key."""


@dataclasses.dataclass
class Layer:
    name: str
    kind: str
    params: dict
    index: int  # position in the file, from 1


@dataclasses.dataclass
class Spec:
    name: str
    path: str
    towers: int
    channels: int
    size: int
    layers: list
    text: str = ""  # the TOML it was read from

    @property
    def classes(self):
        """Outputs of the network: the last linear layer's out_features (None without one)."""
        linears = [layer for layer in self.layers if layer.kind == "linear"]
        return linears[-1].params["out_features"] if linears else None

    def error(self, layer, key, message):
        where = f"layer {layer.name!r} (#{layer.index})" if layer else "spec"
        key_part = f": key {key!r}" if key else ""
        return SpecError(f"{os.path.basename(self.path)}: {where}{key_part}: {message}")


def spec_path(name_or_path):
    """A shipped spec's file for its name, or the given path."""
    if name_or_path in SHIPPED:
        return str(resources.files(__package__) / f"{name_or_path}.toml")
    return os.fspath(name_or_path)


def load_spec(name_or_path, text=None):
    """Read and validate a spec: a shipped name (alexnet, alexnet-owt, alexnet-small) or a path;
    with `text`, parse that TOML instead of the file (a checkpoint keeps its spec's text)."""
    path = spec_path(name_or_path)
    base = os.path.basename(path)
    try:
        if text is None:
            with open(path, "rb") as f:
                text = f.read().decode()
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise SpecError(f"{base}: no such spec file (shipped specs: {', '.join(SHIPPED)})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{base}: not valid TOML: {exc}") from None
    for key in raw:
        if key not in ("name", "towers", "input", "layers"):
            raise SpecError(f"{base}: spec: key {key!r}: unknown key "
                            "(expected name, towers, input, layers)")
    towers = raw.get("towers", 1)
    if towers not in (1, 2):
        raise SpecError(f"{base}: spec: key 'towers': must be 1 or 2, got {towers!r}")
    inp = raw.get("input", {})
    for key in ("channels", "size"):
        if not isinstance(inp.get(key), int) or inp[key] <= 0:
            raise SpecError(f"{base}: input: key {key!r}: a positive integer is required")
    spec = Spec(raw.get("name", os.path.splitext(base)[0]), path, towers, inp["channels"],
                inp["size"], [], text)
    names = set()
    for i, entry in enumerate(raw.get("layers", []), start=1):
        name = entry.get("name", f"#{i}")
        stub = Layer(name, entry.get("kind"), {}, i)
        if "name" not in entry:
            raise spec.error(stub, "name", "missing")
        if name in names:
            raise spec.error(stub, "name", "used by an earlier layer")
        names.add(name)
        kind = entry.get("kind")
        if kind not in KINDS:
            raise spec.error(stub, "kind", f"unknown layer kind {kind!r} (expected one of "
                                           f"{', '.join(KINDS)})")
        params = {}
        for key, value in entry.items():
            if key in ("name", "kind"):
                continue
            if key not in KINDS[kind]:
                raise spec.error(stub, key, f"unknown key for a {kind} layer (expected one of "
                                            f"{', '.join(KINDS[kind]) or 'no keys'})")
            params[key] = value
        for key, default in KINDS[kind].items():
            if key not in params:
                if default is REQUIRED:
                    raise spec.error(stub, key, f"missing (a {kind} layer needs it)")
                params[key] = default
        if params.get("reads", "own") not in ("own", "all"):
            raise spec.error(stub, "reads", f"must be 'own' or 'all', got {params['reads']!r}")
        spec.layers.append(Layer(name, kind, params, i))
    if not spec.layers:
        raise SpecError(f"{base}: spec: key 'layers': no layers")
    return spec
