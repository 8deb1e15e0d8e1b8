"""Declarative network specs: TOML files of layers, loaded and validated before anything runs.

A spec has `name`, `towers` (1 or 2), `[input]` (channels, size) and a list of `[[layers]]`, each
with `name`, `kind` and that kind's keys (each kind's record in tritonalex/kinds/ lists them,
with defaults and checks). Layers that compute channels (conv, linear) give
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
import re
import tomllib
from importlib import resources

from .. import kinds
from ..kinds import MAX_CHANNELS, MAX_INPUT, REQUIRED, choice, integer, show

SHIPPED = tuple(sorted(entry.name[:-len(".toml")] for entry in resources.files(__package__).iterdir()
                      if entry.name.endswith(".toml")))
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


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
        raise SpecError(f"{base}: spec: key 'name': must be a string, got {show(raw['name'])}")
    towers = raw.get("towers", 1)
    problem = choice(1, 2)(towers)
    if problem:
        raise SpecError(f"{base}: spec: key 'towers': {problem}")
    inp = raw.get("input", {})
    if not isinstance(inp, dict):
        raise SpecError(f"{base}: spec: key 'input': must be a table with channels and size")
    for key in inp:
        if key not in ("channels", "size"):
            raise SpecError(f"{base}: input: key {key!r}: unknown key (expected channels, size)")
    for key, check in (("channels", integer(1, MAX_CHANNELS)), ("size", integer(1, MAX_INPUT))):
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
                                           f"letter or '_'), got {show(name)}")
        if name in names:
            raise spec.error(stub, "name", "used by an earlier layer")
        names.add(name)
        known = kinds.spec_kinds()
        kind = entry.get("kind")
        if kind not in known:
            raise spec.error(stub, "kind", f"unknown layer kind {kind!r} (expected one of "
                                           f"{', '.join(known)})")
        keys = known[kind].keys
        params = {}
        for key, value in entry.items():
            if key in ("name", "kind"):
                continue
            if key not in keys:
                raise spec.error(stub, key, f"unknown key for a {kind} layer (expected one of "
                                            f"{', '.join(keys) or 'no keys'})")
            params[key] = value
        for key, (default, check) in keys.items():
            if key not in params:
                if default is REQUIRED:
                    raise spec.error(stub, key, f"missing (a {kind} layer needs it)")
                params[key] = default
            elif problem := check(params[key]):
                raise spec.error(stub, key, problem)
        if known[kind].check and (problem := known[kind].check(params)):
            raise spec.error(stub, *problem)
        spec.layers.append(Layer(name, kind, params, i))
    if not spec.layers:
        raise SpecError(f"{base}: spec: key 'layers': no layers")
    return spec
