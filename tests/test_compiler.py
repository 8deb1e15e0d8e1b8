"""Specs and the compiler: shipped specs, shapes, parameter counts, backends, towers, errors."""

import json
import subprocess
import sys

import pytest
import torch

import tritonalex
from tritonalex.compiler import explain, stages
from tritonalex.compiler.summary import summarize
from reference import Inputs, assert_close


def placed_graph(name):
    return list(stages(tritonalex.load_spec(name)))[-1][1]


def test_alexnet_parameters_and_shapes():
    spec = tritonalex.load_spec("alexnet")
    rows, totals = summarize(spec, placed_graph("alexnet"), batch=1)
    assert totals["parameters"] == 60_965_224
    weighted = [r["output"] for r in rows if r["kind"] in ("conv", "linear")]
    pools = {r["layer"]: r["output"] for r in rows}
    assert weighted == ["55x55x96", "27x27x256", "13x13x384", "13x13x384", "13x13x256",
                        "4096", "4096", "1000"]
    assert pools["pool5"] == "6x6x256"
    assert abs(totals["forward_flops"] - 2 * 724_406_816) < 1e-6 * totals["forward_flops"]


def test_alexnet_owt_parameters():
    _, totals = summarize(tritonalex.load_spec("alexnet-owt"), placed_graph("alexnet-owt"))
    assert totals["parameters"] == 61_100_840


def test_zfnet_parameters_and_shapes():
    """Zeiler & Fergus (2013), Fig. 3, counted by hand: (fan-in + 1) x filters per layer."""
    conv = [96 * (3 * 7 * 7 + 1), 256 * (96 * 5 * 5 + 1), 384 * (256 * 3 * 3 + 1),
            384 * (384 * 3 * 3 + 1), 256 * (384 * 3 * 3 + 1)]
    fc = [4096 * (6 * 6 * 256 + 1), 4096 * (4096 + 1), 1000 * (4096 + 1)]
    assert sum(conv) + sum(fc) == 62_357_608
    rows, totals = summarize(tritonalex.load_spec("zfnet"), placed_graph("zfnet"), batch=1)
    assert totals["parameters"] == sum(conv) + sum(fc)
    assert [r["parameters"] for r in rows if r["parameters"]] == conv + fc
    assert [r["output"] for r in rows if r["kind"] in ("conv", "maxpool")] == [
        "110x110x96", "55x55x96", "26x26x256", "13x13x256", "13x13x384", "13x13x384", "13x13x256",
        "6x6x256"]


def test_alexnet_bn_adds_one_batch_norm_per_conv():
    _, plain = summarize(tritonalex.load_spec("alexnet"), placed_graph("alexnet"))
    rows, totals = summarize(tritonalex.load_spec("alexnet-bn"), placed_graph("alexnet-bn"))
    norms = [r for r in rows if r["kind"] == "batchnorm"]
    assert [r["parameters"] for r in norms] == [2 * c for c in (96, 256, 384, 384, 256)]
    assert totals["parameters"] == plain["parameters"] + sum(r["parameters"] for r in norms)


@pytest.mark.parametrize("name", tritonalex.spec.SHIPPED)
def test_shipped_specs_compile(name):
    model = tritonalex.compile(tritonalex.load_spec(name), backend="torch", devices="cpu")
    _, totals = summarize(tritonalex.load_spec(name), placed_graph(name))
    assert sum(p.numel() for p in model.parameters()) == totals["parameters"]


def test_paper_initialization():
    model = tritonalex.compile(tritonalex.load_spec("alexnet"), backend="torch", devices="cpu")
    state = model.state_dict()
    biases = {key.split(".")[1]: value for key, value in state.items() if key.endswith(".bias")}
    assert all(float(biases[n].abs().max()) == 0 for n in ("conv1", "conv3", "fc8"))
    assert all(bool((biases[n] == 1).all()) for n in ("conv2", "conv4", "conv5", "fc6", "fc7"))
    assert abs(state["nodes.conv2.towers.0.weight"].std().item() - 0.01) < 0.001


def test_small_spec_uses_he_initialization():
    """alexnet-small trains in CPU minutes only with fan-in scaled weights (see its TOML)."""
    model = tritonalex.compile(tritonalex.load_spec("alexnet-small"), backend="torch", devices="cpu")
    weight, bias = (model.state_dict()[f"nodes.conv2.towers.0.{name}"] for name in ("weight", "bias"))
    fan_in = weight[0].numel()
    assert abs(weight.std().item() - (2 / fan_in) ** 0.5) < 0.01
    assert bool((bias == 0.1).all())


def _small_pair(**triton_kwargs):
    """The small spec on the torch backend and on the triton backend, with the same weights."""
    spec = tritonalex.load_spec("alexnet-small")
    torch.manual_seed(0)
    ref = tritonalex.compile(spec, backend="torch", devices="cpu").double().eval()
    with torch.no_grad():  # larger weights than the paper's init, so every layer matters
        for p in ref.parameters():
            p.normal_(0, 0.2 if p.dim() > 1 else 0.1)
    ours = tritonalex.compile(spec, backend="triton", **triton_kwargs).double().eval()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def test_triton_and_torch_backends_give_the_same_logits():
    ref, ours = _small_pair(devices="cpu")
    assert list(ref.state_dict()) == list(ours.state_dict())
    rnd = Inputs()
    x = rnd.randn(2, 3, 32, 32)
    want = ref(x)
    assert want.abs().max() > 1e-2  # a comparison of real signal, not of near-zero logits
    assert_close(ours(x), want, 1e-10, "logits", rnd.seed)
    assert_close(ours.probabilities(x), torch.softmax(want, 1), 1e-10, "probabilities", rnd.seed)


def assert_tower_grads_equal(merged, per_tower, seed):
    """Each tower's slice of the merged model's stacked parameter gradients equals the gradient
    of that tower's own module (keys nodes.<layer>.towers.<i>.<weight|bias>)."""
    for key, value in per_tower.state_dict(keep_vars=True).items():
        _, layer, _, tower, name = key.split(".")
        node = merged.nodes[layer]
        assert_close(getattr(node, name).grad.chunk(node.towers)[int(tower)], value.grad, 1e-9, key,
                     seed)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_towers_in_one_layer_equal_one_module_per_tower(backend):
    """Towers on one device run as one layer (grouped conv, stacked weights, LRN windows cut at
    the tower edge): the same function, gradients included, as one module per tower (the
    placement for towers on separate devices), from the same state_dict."""
    ref, merged = _small_pair(devices="cpu")
    spec = tritonalex.load_spec("alexnet-small")
    *_, (_, graph) = tritonalex.compiler.stages(spec, devices=("cpu", "cpu"))
    per_tower = tritonalex.compiler.lower(spec, graph, backend, merge_towers=False).double().eval()
    per_tower.load_state_dict(ref.state_dict())
    model = merged if backend == "triton" else ref
    assert list(per_tower.state_dict()) == list(model.state_dict())
    assert len(list(per_tower.parameters())) > len(list(model.parameters()))
    rnd = Inputs()
    x = rnd.randn(2, 3, 32, 32)
    want = per_tower(x)
    want.square().sum().backward()
    got = model(x)
    got.square().sum().backward()
    assert_close(got, want, 1e-10, "logits", rnd.seed)
    assert_tower_grads_equal(model, per_tower, rnd.seed)


def test_state_dict_round_trip_and_strictness():
    _, model = _small_pair(devices="cpu")
    state = model.state_dict()
    fresh = tritonalex.compile(tritonalex.load_spec("alexnet-small"), backend="triton",
                               devices="cpu").double()
    fresh.load_state_dict(state)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    broken = dict(state)
    broken["nodes.conv2.towers.2.weight"] = broken.pop("nodes.conv2.towers.1.weight")
    with pytest.raises(RuntimeError, match="Missing key.*towers.1.weight(.|\n)*Unexpected key"):
        fresh.load_state_dict(broken)
    broken = dict(state, **{"nodes.conv2.towers.1.bias": torch.zeros(3)})
    with pytest.raises(RuntimeError, match="size mismatch for nodes.conv2.towers.1.bias"):
        fresh.load_state_dict(broken)


def test_passes_can_be_switched_off():
    spec = tritonalex.load_spec("alexnet")
    fused = placed_graph("alexnet")
    plain = list(stages(spec, passes=[]))[-1][1]
    assert len(plain) == 24 and len(fused) == 13
    assert [n.label for n in fused][:2] == ["conv1+relu1", "lrn1+pool1"]
    assert "fuse_lrn_maxpool" in explain(spec)
    with pytest.raises(ValueError, match="unknown passes"):
        list(stages(spec, passes=["fuse_everything"]))


BASE = '''name = "bad"
towers = 2
[input]
channels = 3
size = 16
'''


def _layers(*layers):
    out = BASE
    for name, kind, extra in layers:
        out += f'[[layers]]\nname = "{name}"\nkind = "{kind}"\n{extra}\n'
    return out


BAD_SPECS = {
    "unknown kind": (_layers(("c1", "convolution", "")), "layer 'c1' (#1): key 'kind'"),
    "unknown key": (_layers(("c1", "conv", "out_channels = 8\nkernal = 3")), "layer 'c1' (#1): key 'kernal'"),
    "missing parameter": (_layers(("c1", "conv", "kernel = 3")), "layer 'c1' (#1): key 'out_channels': missing"),
    "empty output": (_layers(("c1", "conv", "out_channels = 8\nkernel = 17")), "layer 'c1' (#1): key 'kernel': output would be empty"),
    "channels do not split": (_layers(("c1", "conv", "out_channels = 7\nkernel = 3")), "key 'out_channels': 7 does not split across 2 towers"),
    "no such tower reference": (_layers(("c1", "conv", 'out_channels = 8\nkernel = 3\nreads = "tower3"')), "key 'reads': must be one of 'own', 'all'"),
    "linear on maps": (_layers(("f1", "linear", "out_features = 4")), "layer 'f1' (#1): a linear layer needs features"),
    "softmax not last": (_layers(("s", "softmax", ""), ("r", "relu", "")), "layer 's' (#1): softmax must be the last layer"),
    "duplicate name": (_layers(("r", "relu", ""), ("r", "relu", "")), "layer 'r' (#2): key 'name'"),
    "not toml": ("name = [", "not valid TOML"),
    # Types and ranges of every key (issue 15 item 9): each was a traceback or passed before.
    "string channels": (_layers(("c1", "conv", 'out_channels = "96"\nkernel = 3')), "key 'out_channels': must be an integer, got str '96'"),
    "float kernel": (_layers(("c1", "conv", "out_channels = 8\nkernel = 3.5")), "key 'kernel': must be an integer, got float 3.5"),
    "list stride": (_layers(("c1", "conv", "out_channels = 8\nkernel = 3\nstride = [2, 2]")), "key 'stride': must be an integer"),
    "boolean padding": (_layers(("c1", "conv", "out_channels = 8\nkernel = 3\npadding = true")), "key 'padding': must be an integer, got bool"),
    "zero channels": (_layers(("c1", "conv", "out_channels = 0\nkernel = 3")), "key 'out_channels': must be between 1 and"),
    "negative channels": (_layers(("c1", "conv", "out_channels = -8\nkernel = 3")), "key 'out_channels': must be between 1"),
    "negative stride": (_layers(("c1", "conv", "out_channels = 8\nkernel = 3\nstride = -1")), "key 'stride': must be between 1"),
    "zero kernel": (_layers(("c1", "conv", "out_channels = 8\nkernel = 0")), "key 'kernel': must be between 1"),
    "negative std": (_layers(("c1", "conv", "out_channels = 8\nkernel = 3\nweight_std = -0.1")), "key 'weight_std': must be >= 0"),
    "nan bias": (_layers(("c1", "conv", "out_channels = 8\nkernel = 3\nbias_init = nan")), "key 'bias_init': must be finite"),
    "string split": (_layers(("c1", "conv", 'out_channels = 8\nkernel = 3\nsplit = "no"')), "key 'split': must be one of True, False"),
    "dropout above 1": (_layers(("d", "dropout", "p = 1.5")), "layer 'd' (#1): key 'p': must be >= 0 and <= 1, got 1.5"),
    "dropout negative": (_layers(("d", "dropout", "p = -0.1")), "key 'p': must be >= 0"),
    "lrn size zero": (_layers(("n", "lrn", "size = 0")), "key 'size': must be between 1"),
    "lrn k zero": (_layers(("n", "lrn", "size = 5\nk = 0")), "key 'k': must be > 0"),
    "pool padding over half": (_layers(("p", "maxpool", "kernel = 3\npadding = 2")), "key 'padding': must be at most half the kernel"),
    "pool stride string": (_layers(("p", "maxpool", 'kernel = 3\nstride = "2"')), "key 'stride': must be an integer"),
    "name with a dot": (_layers(("conv.1", "relu", "")), "key 'name': must be letters"),
    "empty name": (_layers(("", "relu", "")), "key 'name': must be letters"),
    "towers three": (BASE.replace("towers = 2", "towers = 3") + '[[layers]]\nname = "r"\nkind = "relu"\n', "spec: key 'towers': must be one of 1, 2, got int 3"),
    "towers true": (BASE.replace("towers = 2", "towers = true") + '[[layers]]\nname = "r"\nkind = "relu"\n', "key 'towers': must be one of 1, 2, got bool True"),
    "input size float": (BASE.replace("size = 16", "size = 16.0") + '[[layers]]\nname = "r"\nkind = "relu"\n', "input: key 'size': must be an integer"),
    "input unknown key": (BASE.replace("size = 16", "size = 16\ndepth = 3") + '[[layers]]\nname = "r"\nkind = "relu"\n', "input: key 'depth': unknown key"),
    "layers not tables": (BASE.replace("towers = 2", "towers = 2\nlayers = 5"), "key 'layers': must be an array of tables"),
    "terabytes": (_layers(("c1", "conv", "out_channels = 65536\nkernel = 3"), ("f", "flatten", ""), ("l", "linear", "out_features = 1000000")), "layer 'l' (#3): key 'out_features': the layer would hold"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_specs_name_file_layer_and_key(case, tmp_path):
    text, message = BAD_SPECS[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(tritonalex.SpecError) as error:
        tritonalex.compile(tritonalex.load_spec(path), backend="torch", devices="cpu")
    assert str(error.value).startswith("bad.toml: ")
    assert message in str(error.value)


def test_missing_spec_file():
    with pytest.raises(tritonalex.SpecError, match="no such spec file"):
        tritonalex.load_spec("/nonexistent/net.toml")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tritonalex.cli", *args], capture_output=True, text=True)


def test_cli_summary_json_and_explain(tmp_path):
    out = _cli("summary", "alexnet", "--json", "--batch", "2")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["totals"]["parameters"] == 60_965_224
    assert data["totals"]["crossing_bytes_per_step"] > 0
    assert any(r["kernel"] == "lrn_max_pool2d (fused)" for r in data["layers"])
    zfnet = _cli("summary", "zfnet")
    assert zfnet.returncode == 0 and "62,357,608" in zfnet.stdout
    explained = _cli("compile", "alexnet", "--explain")
    assert explained.returncode == 0 and "after place" in explained.stdout
    (tmp_path / "bad.toml").write_text(BAD_SPECS["unknown key"][0])
    failed = _cli("summary", str(tmp_path / "bad.toml"))
    assert failed.returncode == 2 and "key 'kernal'" in failed.stderr


def test_compiler_stages_are_pure():
    """Each stage returns new nodes: a snapshot taken early is not changed by later stages."""
    import copy

    snapshots = []
    for name, graph in stages(tritonalex.load_spec("alexnet"), devices=("cpu", "cpu")):
        snapshots.append((name, graph, copy.deepcopy(graph)))
    for name, graph, taken in snapshots:
        assert graph == taken, f"the graph after {name!r} changed after later stages"
    shapes = next(g for name, g, _ in snapshots if name == "infer shapes")
    assert all(node.devices == () for node in shapes)  # placement came later, on copies
    assert any(node.kind == "lrn" for node in shapes)  # fusion too


OWN_LINEAR_SPEC = """
name = "own-linear"
towers = 2
[input]
channels = 3
size = 6
[[layers]]
name = "conv1"
kind = "conv"
out_channels = 8
kernel = 3
reads = "all"
weight_std = 0.3
[[layers]]
name = "flat"
kind = "flatten"
[[layers]]
name = "fc1"
kind = "linear"
out_features = 6
reads = "own"
weight_std = 0.2
[[layers]]
name = "relu1"
kind = "relu"
[[layers]]
name = "fc2"
kind = "linear"
out_features = 4
split = false
weight_std = 0.3
"""


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_linear_reading_its_own_tower_in_one_layer(backend, tmp_path):
    """A linear layer that reads only its own tower has no grouped GEMM: on one device it runs one
    GEMM per tower on the stacked weights' slices, equal (gradients included) to one module per
    tower."""
    path = tmp_path / "own-linear.toml"
    path.write_text(OWN_LINEAR_SPEC)
    spec = tritonalex.load_spec(str(path))
    *_, (_, graph) = tritonalex.compiler.stages(spec, devices=("cpu", "cpu"))
    merged = tritonalex.compiler.lower(spec, graph, backend).double().eval()
    per_tower = tritonalex.compiler.lower(spec, graph, backend, merge_towers=False).double().eval()
    assert merged.nodes["fc1"].groups == 2
    per_tower.load_state_dict(merged.state_dict())
    rnd = Inputs()
    x = rnd.randn(3, 3, 6, 6)
    want, got = per_tower(x), merged(x)
    want.square().sum().backward()
    got.square().sum().backward()
    assert_close(got, want, 1e-10, "logits", rnd.seed)
    assert_tower_grads_equal(merged, per_tower, rnd.seed)


def test_an_unknown_kind_is_an_error_everywhere():
    """The records are the one list of kinds: the spec loader, shape inference and lowering all
    refuse a kind without one (a graph built by hand can hold any name)."""
    from tritonalex import kinds
    from tritonalex.compiler.graph import Node, infer_shapes

    with pytest.raises(KeyError, match="unknown layer kind 'conv3d'"):
        kinds.get("conv3d")
    spec = tritonalex.load_spec("alexnet-small")
    graph = [Node("c1", "conv3d", {}, 1)]
    spec.layers = [tritonalex.spec.Layer("c1", "conv3d", {}, 1)]
    with pytest.raises(tritonalex.SpecError, match="layer 'c1' \\(#1\\): key 'kind': unknown layer kind"):
        infer_shapes(graph, spec)
    assert set(kinds.spec_kinds()) == {"conv", "linear", "relu", "dropout", "lrn", "maxpool",
                                       "batchnorm", "flatten", "softmax"}
    assert not kinds.get("lrn_maxpool").in_spec  # made only by the fusion pass
