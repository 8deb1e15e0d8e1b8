"""`tritonalex bench`: layer costs against hand-computed values, the CPU (interpreter check) path,
the measured path's rows and CSV with the timer stubbed out (no GPU here), the plot, bad input."""

import argparse
import csv
import json

import pytest
import torch

from tritonalex import cli
from tritonalex.bench import harness, layers, measure, render


def expected_costs(n, s):
    """{layer: {direction: (FLOPs, bytes)}} written out from ../shared/ALEXNET.md's layer table
    (one tower form, 227x227 input) and the byte conventions of tritonalex/bench/layers.py."""
    out = {}

    def conv(name, x, w, b, y, flops, input_grad=True):
        fwd = (flops, (x + w + b + y) * s)
        bwd = (flops * (2 if input_grad else 1),
               (2 * y + x + w + b + ((w + x) if input_grad else 0)) * s)
        out[name] = dict(forward=fwd, backward=bwd,
                         **{"forward+backward": (fwd[0] + bwd[0], fwd[1] + bwd[1])})

    conv("conv1", n * 3 * 227 * 227, 96 * 3 * 11 * 11, 96, n * 96 * 55 * 55,
         2 * n * 55 * 55 * 96 * 3 * 11 * 11, input_grad=False)
    conv("conv2", n * 96 * 27 * 27, 256 * 48 * 5 * 5, 256, n * 256 * 27 * 27,
         2 * n * 27 * 27 * 256 * 48 * 5 * 5)
    conv("conv3", n * 256 * 13 * 13, 384 * 256 * 3 * 3, 384, n * 384 * 13 * 13,
         2 * n * 13 * 13 * 384 * 256 * 3 * 3)
    conv("conv4", n * 384 * 13 * 13, 384 * 192 * 3 * 3, 384, n * 384 * 13 * 13,
         2 * n * 13 * 13 * 384 * 192 * 3 * 3)
    conv("conv5", n * 384 * 13 * 13, 256 * 192 * 3 * 3, 256, n * 256 * 13 * 13,
         2 * n * 13 * 13 * 256 * 192 * 3 * 3)
    for name, e in (("lrn1", n * 96 * 55 * 55), ("lrn2", n * 256 * 27 * 27)):
        out[name] = {"forward": (0, 2 * e * s), "backward": (0, 3 * e * s),
                     "forward+backward": (0, 5 * e * s)}
    for name, e, p in (("pool1", n * 96 * 55 * 55, n * 96 * 27 * 27),
                       ("pool2", n * 256 * 27 * 27, n * 256 * 13 * 13),
                       ("pool5", n * 256 * 13 * 13, n * 256 * 6 * 6)):
        out[name] = {"forward": (0, (e + p) * s), "backward": (0, (p + e) * s + 8 * p),
                     "forward+backward": (0, 2 * (e + p) * s + 16 * p)}
    for name, e, p in (("lrn1+pool1", n * 96 * 55 * 55, n * 96 * 27 * 27),
                       ("lrn2+pool2", n * 256 * 27 * 27, n * 256 * 13 * 13)):
        out[name] = {"forward": (0, (e + p) * s), "backward": (0, (p + 2 * e) * s + 8 * p),
                     "forward+backward": (0, (2 * p + 3 * e) * s + 16 * p)}
    for name, k, m, relu in (("fc6", 9216, 4096, True), ("fc7", 4096, 4096, True),
                             ("fc8", 4096, 1000, False)):
        flops = 2 * n * k * m
        fwd = (flops, (n * k + m * k + m + n * m) * s)
        bwd = (2 * flops, ((2 if relu else 1) * n * m + 2 * n * k + 2 * m * k + m) * s)
        out[name] = dict(forward=fwd, backward=bwd,
                         **{"forward+backward": (fwd[0] + bwd[0], fwd[1] + bwd[1])})
    return out


@pytest.mark.parametrize("n, s", [(1, 4), (128, 2)])
def test_layer_costs_match_hand_computed_values(n, s):
    expected = expected_costs(n, s)
    assert set(expected) == set(layers.order())
    for layer, by_direction in expected.items():
        for direction, value in by_direction.items():
            assert layers.cost(layer, n, s, direction) == value, (layer, direction)


def test_conv_and_fc_flops_add_up_to_the_compiled_alexnet():
    """Cross-check with the compiler's independent count: 1.449 GFLOP per image forward."""
    assert sum(layers.cost(layer, 1, 4, "forward")[0] for layer in layers.order()) == 1_448_813_632


def test_groups_and_selection():
    assert layers.select(["lrn", "lrn_maxpool"]) == ["lrn1", "lrn1+pool1", "lrn2", "lrn2+pool2"]
    assert layers.select(["fc8", "conv1", "conv"]) == ["conv1", "conv2", "conv3", "conv4",
                                                       "conv5", "fc8"]
    assert layers.select(["all"]) == layers.order()
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        layers.select(["conv9"])


def run_cli(capsys, *argv):
    try:
        code = cli.main(["bench", *argv])
    except SystemExit as exc:  # argparse refuses bad values itself
        code = exc.code
    return code, capsys.readouterr()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path runs only without CUDA")
def test_cpu_path_checks_lrn_kernels_and_prints_no_timings(capsys, tmp_path):
    csv_path = tmp_path / "bench.csv"
    code, out = run_cli(capsys, "--layer", "lrn", "--layout", "nchw", "--csv", str(csv_path))
    assert code == 0, out.err
    assert "No CUDA GPU" in out.out and "H100 floor" in out.out
    assert " ms " not in out.out.replace("floor ms", "")  # no time column, no interpreter time
    assert not csv_path.exists()  # nothing measured, nothing recorded

    code, out = run_cli(capsys, "--layer", "lrn2", "pool5", "--layout", "channels_last",
                        "--dtype", "fp32", "--direction", "both", "--json")
    rows = json.loads(out.out)["rows"]
    assert json.loads(out.out)["mode"] == "checked"
    assert [(r["case"], r["direction"]) for r in rows] == [("lrn2", "forward+backward"),
                                                           ("pool5", "forward+backward")]
    for r in rows:
        assert r["check"] == "ok" and r["max_rel_error"] < 1e-12
        flops, bytes_ = layers.cost(r["case"], 128, 4, "forward+backward")
        assert r["mbytes"] == bytes_ / 1e6
        assert r["h100_floor_ms"] == pytest.approx(bytes_ / 3.35e12 * 1e3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path runs only without CUDA")
def test_cpu_path_checks_another_specs_layers(capsys):
    """--spec picks the spec whose layers --layer names: alexnet-bn's batch norms, by kind."""
    code, out = run_cli(capsys, "--spec", "alexnet-bn", "--layer", "batchnorm", "--layout",
                        "channels_last", "--direction", "both", "--json")
    assert code == 0, out.err
    rows = json.loads(out.out)["rows"]
    assert [r["case"] for r in rows] == [f"alexnet-bn:bn{i}" for i in range(1, 6)]
    assert all(r["check"] == "ok" for r in rows)
    code, out = run_cli(capsys, "--spec", "alexnet-bn", "--layer", "lrn")
    assert code == 2 and "unknown layer 'lrn'" in out.err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path runs only without CUDA")
def test_cpu_path_checks_a_whole_spec(capsys):
    code, out = run_cli(capsys, "--net", "alexnet-small", "--json", "--check-batch", "2")
    assert code == 0, out.err
    rows = json.loads(out.out)["rows"]
    assert [r["direction"] for r in rows] == ["inference", "training step", "augmentation"]
    assert all(r["check"] == "ok" for r in rows)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path runs only without CUDA")
def test_cpu_check_fails_on_a_wrong_kernel(capsys, monkeypatch):
    real = layers.implementations

    def off_by_a_bit(layer, training=True, spec="alexnet"):
        fns = real(layer, training, spec)
        ours = fns["tritonalex"]
        fns["tritonalex"] = lambda x: ours(x) * (1 + 1e-6)
        return fns

    monkeypatch.setattr(layers, "implementations", off_by_a_bit)
    code, out = run_cli(capsys, "--layer", "pool5", "--layout", "nchw", "--direction", "forward")
    assert code == 1
    assert "FAIL" in out.out


def test_graph_replay_rows_compare_like_with_like(monkeypatch):
    """--cuda-graph adds each layer's steps replayed from a graph (capture stubbed: no GPU here);
    a replay's speedup divides torch's replay, an eager step's torch's eager step."""
    order = ("tritonalex", "torch", "tritonalex.graph", "torch.graph")
    fake = dict(zip(order, [(1.0,) * 3, (2.0,) * 3, (0.5,) * 3, (1.5,) * 3]))
    calls = iter(fake[impl] for impl in order)
    monkeypatch.setattr(harness, "time_ms", lambda step: next(calls))
    monkeypatch.setattr(harness, "peak_mib", lambda step: 1.0)
    monkeypatch.setattr(measure, "_replayed", lambda step: (step, None))
    monkeypatch.setattr(harness, "run_info", lambda batch: dict(
        date="d", gpu="NVIDIA H200", torch="t", triton="tr", tritonalex="x", batch=batch))
    args = argparse.Namespace(batch=1, dtype=["fp32"], no_compile=True, json=True, csv="",
                              no_csv=True, spec="alexnet", cuda_graph=True)
    rows = measure.measure(["pool5"], None, args, ("forward",), ("nchw",), "cpu")
    speedups = {r["impl"]: r["speedup_vs_torch"] for r in rows}
    assert speedups == {"tritonalex": 2.0, "torch": 1.0, "tritonalex.graph": 3.0,
                        "torch.graph": 1.0}


def test_measured_rows_csv_and_table(monkeypatch, tmp_path, capsys):
    """The GPU path's plumbing with the timer stubbed (no GPU here): rows, roofline, speedup,
    the atomic CSV append and the table. No time here is a measurement."""
    fake = {"tritonalex": (1.0, 0.9, 1.2), "torch": (2.0, 1.9, 2.1)}
    calls = iter(fake[impl] for _ in range(100) for impl in ("tritonalex", "torch"))
    monkeypatch.setattr(harness, "time_ms", lambda step: next(calls))
    monkeypatch.setattr(harness, "peak_mib", lambda step: 3.0)
    monkeypatch.setattr(harness, "run_info", lambda batch: dict(
        date="2026-01-01T00:00:00+00:00", gpu="NVIDIA H100 80GB HBM3", torch="t", triton="tr",
        tritonalex="x", batch=batch))
    path = tmp_path / "results" / "bench.csv"
    args = argparse.Namespace(batch=1, dtype=["fp32"], no_compile=True, json=False, csv=str(path),
                              no_csv=False, spec="alexnet", cuda_graph=False)
    rows = measure.measure(["pool5"], None, args, ("forward",), ("nchw",), "cpu")
    assert [r["impl"] for r in rows] == ["tritonalex", "torch"]
    ours = rows[0]
    flops, bytes_ = layers.cost("pool5", 1, 4, "forward")
    assert ours["speedup_vs_torch"] == 2.0 and ours["peak_mib"] == 3.0
    assert ours["floor_ms"] == round(bytes_ / 3.35e12 * 1e3, 4)
    assert ours["gbps"] == round(bytes_ / 1.0 / 1e6, 1)

    harness.append_csv_atomically(rows, path)  # measure wrote them once; this appends again
    with open(path, newline="") as f:
        recorded = list(csv.DictReader(f))
    assert len(recorded) == 4 and recorded[0]["speedup_vs_torch"] == "2.0"
    assert not list(path.parent.glob("*.tmp"))
    render.report(rows, argparse.Namespace(json=False, batch=1), measured=True)
    assert "H100" in capsys.readouterr().out

    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other columns"):
        harness.append_csv_atomically(rows, path)


def test_plot_from_recorded_rows(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    base = dict.fromkeys(harness.FIELDS, "")
    base.update(gpu="NVIDIA H100", dtype="bf16", layout="nchw", direction="forward")
    rows = []
    for date, speed in (("2026-01-01", "0.5"), ("2026-02-01", "1.5")):  # only the newest counts
        for case in ("conv1", "pool1"):
            rows += [dict(base, date=date, case=case, impl="tritonalex", speedup_vs_torch=speed),
                     dict(base, date=date, case=case, impl="torch", speedup_vs_torch="1.0")]
    csv_path = tmp_path / "bench.csv"
    harness.append_csv_atomically(rows, csv_path)
    from tritonalex.bench.plot import latest_speedups

    assert latest_speedups(rows) == {("NVIDIA H100", "bf16", "nchw", "forward"):
                                     {"tritonalex": {"conv1": 1.5, "pool1": 1.5}}}
    png = tmp_path / "speedup.png"
    code, out = run_cli(capsys, "--plot", str(png), "--csv", str(csv_path))
    assert code == 0, out.err
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bad_input_is_a_clear_error(capsys, tmp_path):
    code, out = run_cli(capsys)
    assert code == 2 and "choose what to run" in out.err
    code, out = run_cli(capsys, "--layer", "conv9")
    assert code == 2 and "unknown layer 'conv9'" in out.err
    code, out = run_cli(capsys, "--net", "nosuch")
    assert code == 2 and "no such spec file" in out.err
    code, out = run_cli(capsys, "--layer", "lrn1", "--batch", "0")
    assert code == 2 and "--batch" in out.err
    code, out = run_cli(capsys, "--plot", str(tmp_path / "p.png"), "--csv", str(tmp_path / "no.csv"))
    assert code == 2 and "no recorded results" in out.err


def test_a_torch_compile_failure_becomes_a_row_with_its_reason(monkeypatch):
    def broken_compile(fn):
        def compiled(*args):
            raise RuntimeError("inductor is not available here")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    fns, notes = measure._with_compiled({"tritonalex": abs, "torch": abs}, skip=False)
    steps, notes = measure._steps(fns, notes, lambda fn: (lambda: fn(-1)))
    assert steps["torch.compile"] is None and "inductor is not available" in notes["torch.compile"]
    assert steps["torch"]() == 1  # the other implementations are untouched
    monkeypatch.setattr(harness, "time_ms", lambda step: (1.0, 1.0, 1.0))
    monkeypatch.setattr(harness, "peak_mib", lambda step: 0.0)
    info = dict(gpu="NVIDIA H100", date="d", torch="t", triton="tr", tritonalex="v", batch=1)
    rows = harness.measurement_rows(info, "fc8", "fp32", "row-major", "forward", steps, 1, 1, notes)
    assert [r["impl"] for r in rows] == ["tritonalex", "torch", "torch.compile"]
    assert "p50_ms" not in rows[2] and "inductor" in rows[2]["note"]
    assert rows[0]["speedup_vs_torch"] == 1.0


def test_net_graphed_rows_capture_after_warm_up_or_say_why(monkeypatch):
    """`bench --net`'s graphed training step: captured before timing (every timed call a replay);
    a failed capture is a row with its reason, not a crash of the run."""
    from tritonalex.train import graphed

    captures = []
    monkeypatch.setattr(graphed, "cuda_graph", lambda body: captures.append(body) or body)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, labels = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    step, note = measure._graphed(model, x, labels)
    assert note is None and len(captures) == 1
    before = model[1].weight.detach().clone()
    step()
    assert len(captures) == 1 and not torch.equal(model[1].weight, before)  # a replay trains

    def broken(body):
        raise RuntimeError("operation not permitted when stream is capturing")
    monkeypatch.setattr(graphed, "cuda_graph", broken)
    step, note = measure._graphed(model, x, labels)
    assert step is None and note.startswith("CUDA graph capture failed: operation not permitted")
