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
import math
import os
import re
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

# Largest sizes a spec may ask for: far above any AlexNet-family network, far below what would
# try to allocate terabytes.
MAX_CHANNELS = 1 << 16
MAX_FEATURES = 1 << 20
MAX_WINDOW = 64  # kernel, stride and padding of convs and pools; LRN size
MAX_INPUT = 4096
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _integer(low, high):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {_show(value)}"
        if not low <= value <= high:
            return f"must be between {low} and {high}, got {value}"
        return None
    return check


def _number(low=-math.inf, high=math.inf, low_open=False):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {_show(value)}"
        if not math.isfinite(value):
            return f"must be finite, got {value}"
        if value < low or value > high or (low_open and value == low):
            bound = f"> {low}" if low_open else f">= {low}"
            return (f"must be {bound}" + (f" and <= {high}" if high != math.inf else "")
                    + f", got {value}")
        return None
    return check


def _choice(*allowed):
    def check(value):
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            return f"must be one of {', '.join(repr(a) for a in allowed)}, got {_show(value)}"
        return None
    return check


def _show(value):
    return f"{type(value).__name__} {value!r}"


# kind -> key -> check (a function returning an error message or None), beside KINDS' defaults.
CHECKS = {
    "conv": dict(out_channels=_integer(1, MAX_CHANNELS), kernel=_integer(1, MAX_WINDOW),
                 stride=_integer(1, MAX_WINDOW), padding=_integer(0, MAX_WINDOW),
                 reads=_choice("own", "all"), split=_choice(True, False),
                 weight_std=_number(0), bias_init=_number()),
    "linear": dict(out_features=_integer(1, MAX_FEATURES), reads=_choice("own", "all"),
                   split=_choice(True, False), weight_std=_number(0), bias_init=_number()),
    "relu": {},
    "lrn": dict(size=_integer(1, MAX_WINDOW), alpha=_number(0), beta=_number(0),
                k=_number(0, low_open=True)),
    "maxpool": dict(kernel=_integer(1, MAX_WINDOW), stride=_integer(1, MAX_WINDOW),
                    padding=_integer(0, MAX_WINDOW)),
    "dropout": dict(p=_number(0, 1)),
    "flatten": {},
    "softmax": {},
}


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
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{base}: cannot read the spec file ({type(exc).__name__}: "
                        f"{getattr(exc, 'strerror', None) or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{base}: not valid TOML: {exc}") from None
    for key in raw:
        if key not in ("name", "towers", "input", "layers"):
            raise SpecError(f"{base}: spec: key {key!r}: unknown key "
                            "(expected name, towers, input, layers)")
    if not isinstance(raw.get("name", ""), str):
        raise SpecError(f"{base}: spec: key 'name': must be a string, got {_show(raw['name'])}")
    towers = raw.get("towers", 1)
    problem = _choice(1, 2)(towers)
    if problem:
        raise SpecError(f"{base}: spec: key 'towers': {problem}")
    inp = raw.get("input", {})
    if not isinstance(inp, dict):
        raise SpecError(f"{base}: spec: key 'input': must be a table with channels and size")
    for key in inp:
        if key not in ("channels", "size"):
            raise SpecError(f"{base}: input: key {key!r}: unknown key (expected channels, size)")
    for key, check in (("channels", _integer(1, MAX_CHANNELS)), ("size", _integer(1, MAX_INPUT))):
        if key not in inp:
            raise SpecError(f"{base}: input: key {key!r}: missing")
        problem = check(inp[key])
        if problem:
            raise SpecError(f"{base}: input: key {key!r}: {problem}")
    spec = Spec(raw.get("name", os.path.splitext(base)[0]), path, towers, inp["channels"],
                inp["size"], [], text)
    layers = raw.get("layers", [])
    if not isinstance(layers, list) or not all(isinstance(e, dict) for e in layers):
        raise SpecError(f"{base}: spec: key 'layers': must be an array of tables ([[layers]])")
    names = set()
    for i, entry in enumerate(layers, start=1):
        name = entry.get("name", f"#{i}")
        stub = Layer(str(name), entry.get("kind"), {}, i)
        if "name" not in entry:
            raise spec.error(stub, "name", "missing")
        if not isinstance(name, str) or not NAME.match(name):
            raise spec.error(stub, "name", f"must be letters, digits, '_' or '-' (starting with a "
                                           f"letter or '_'), got {_show(name)}")
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
            elif problem := CHECKS[kind][key](params[key]):
                raise spec.error(stub, key, problem)
        if kind == "maxpool" and params["padding"] > params["kernel"] // 2:
            raise spec.error(stub, "padding", f"must be at most half the kernel "
                                              f"({params['kernel'] // 2}), got {params['padding']}")
        spec.layers.append(Layer(name, kind, params, i))
    if not spec.layers:
        raise SpecError(f"{base}: spec: key 'layers': no layers")
    return spec
