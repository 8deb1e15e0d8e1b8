"""What a new user's trial broke (issue 15), one test per item: untrusted checkpoints, strided and
expanded arguments, lost runs, unreadable images, diverged training, resume conflicts, leftover
temporary files, one-line errors for bad arguments, hooks and convert(), parity with torch."""

import io
import math
import os
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import tritonalex
import tritonalex.functional as F
from tritonalex import cli
from tritonalex.data import folder
from tritonalex.train import checkpoint, report, trainer
from tritonalex.train.trainer import TrainConfig, train

from reference import assert_close


def check_close(actual, expected, what):
    assert_close(actual, expected, 1e-9, what)

TINY = dict(train_images=48, val_images=20, batch_size=16, quiet=True, backend="torch")


def run_cli(argv, capsys):
    """(exit status, stderr lines) of `tritonalex ARGV`, argparse's own exits included."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


# ---------------------------------------------------------------- 1. checkpoints run no code

class _Payload:
    def __reduce__(self):
        return (os.system, ("touch tritonalex-payload-ran",))


def test_a_checkpoint_with_code_is_refused_before_it_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save(dict(format=checkpoint.FORMAT, model=_Payload()), "evil.pt")
    with pytest.raises(checkpoint.CheckpointError, match="refused"):
        checkpoint.load("evil.pt")
    code, err = run_cli(["eval", "--checkpoint", "evil.pt"], capsys)
    assert code == 2 and len(err) == 1 and "evil.pt: refused" in err[0]
    assert not os.path.exists("tritonalex-payload-ran")


def test_old_format_checkpoints_get_a_clear_error(tmp_path):
    # Format 1 stored numpy's RNG state as an array: not loadable weights-only.
    torch.save(dict(format="tritonalex-checkpoint-1", rng=dict(numpy=np.random.get_state())),
               tmp_path / "old.pt")
    with pytest.raises(checkpoint.CheckpointError, match="format 1"):
        checkpoint.load(str(tmp_path / "old.pt"))


def test_checkpoints_round_trip_weights_only(tmp_path):
    train(TrainConfig(epochs=1, out=str(tmp_path), **TINY))
    with open(tmp_path / "last.pt", "rb") as f:
        state = torch.load(f, weights_only=True)  # what checkpoint.load does
    np.random.seed(3)
    expected = np.random.rand(3)
    np.random.seed(3)
    saved = checkpoint.rng_state()
    np.random.rand(5)
    checkpoint.set_rng_state(saved)
    assert np.array_equal(np.random.rand(3), expected)
    assert state["epoch"] == 1


# ---------------------------------------------- 2. every tensor argument: strided or expanded

def _variants(t):
    """t itself, a strided view with t's values, and (for a vector) an expanded one when t's
    values are all equal: each a leaf's function so gradients reach the leaf."""
    base = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
    base[..., ::2] = t
    yield "strided", base.requires_grad_(), lambda b: b[..., ::2]
    scalar = t.reshape(-1)[:1].detach().clone()
    yield "expanded", scalar.requires_grad_(), lambda s: s.reshape((1,) * t.dim()).expand(t.shape)


OPS = {
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2),
               lambda x, w, b: TF.conv2d(x, w, b, padding=1, groups=2),
               lambda: (torch.randn(2, 4, 5, 6), torch.randn(6, 2, 3, 3), torch.randn(6))),
    "conv2d+relu": (lambda x, w, b: F.conv2d(x, w, b, stride=2, activation="relu"),
                    lambda x, w, b: TF.relu(TF.conv2d(x, w, b, stride=2)),
                    lambda: (torch.randn(2, 3, 7, 7), torch.randn(4, 3, 3, 3), torch.randn(4))),
    "linear": (lambda x, w, b: F.linear(x, w, b, activation="relu"),
               lambda x, w, b: TF.relu(TF.linear(x, w, b)),
               lambda: (torch.randn(5, 7), torch.randn(3, 7), torch.randn(3))),
    "local_response_norm": (lambda x: F.local_response_norm(x, 3, 1e-2, 0.75, 2.0),
                            lambda x: TF.local_response_norm(x, 3, 1e-2, 0.75, 2.0),
                            lambda: (torch.randn(2, 5, 4, 3),)),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2), lambda x: TF.max_pool2d(x, 3, 2),
                   lambda: (torch.randn(2, 3, 7, 8),)),
    "lrn_max_pool2d": (lambda x: F.lrn_max_pool2d(x, 3, 1e-2, 0.75, 2.0, 3, 2),
                       lambda x: TF.max_pool2d(TF.local_response_norm(x, 3, 1e-2, 0.75, 2.0), 3, 2),
                       lambda: (torch.randn(2, 4, 7, 7),)),
    "relu": (F.relu, TF.relu, lambda: (torch.randn(3, 6),)),
}


@pytest.mark.parametrize("op", list(OPS))
def test_every_tensor_argument_may_be_strided_or_expanded(op):
    ours, theirs, make = OPS[op]
    torch.manual_seed(0)
    args = [a.double() for a in make()]
    for position in range(len(args)):
        for kind, leaf, view in _variants(args[position]):
            if kind == "expanded" and op in ("max_pool2d", "lrn_max_pool2d"):
                continue  # all-equal inputs make the argmax a tie: covered by the pool tests
            results = []
            for fn in (ours, theirs):
                leaf.grad = None
                call = list(args)
                call[position] = view(leaf)
                out = fn(*call)
                out.backward(torch.linspace(0.1, 1, out.numel(), dtype=out.dtype).view(out.shape))
                results.append((out.detach(), leaf.grad.clone()))
            check_close(results[0][0], results[1][0], f"{op} arg {position} {kind}: values")
            check_close(results[0][1], results[1][1], f"{op} arg {position} {kind}: gradient")


def test_dropout_of_a_strided_input_uses_the_same_mask():
    x = torch.randn(4, 16, dtype=torch.float64)
    strided = torch.zeros(4, 32, dtype=torch.float64)
    strided[:, ::2] = x
    torch.manual_seed(5)
    a = F.dropout(strided[:, ::2], 0.5)
    torch.manual_seed(5)
    b = F.dropout(x, 0.5)
    assert torch.equal(a, b)


# ----------------------------------------------------------- 3, 4, 8. the output folder

def test_training_into_an_existing_run_is_refused_without_resume_or_overwrite(tmp_path, capsys):
    args = ["train", "--epochs", "1", "--train-images", "48", "--val-images", "20",
            "--batch-size", "16", "--backend", "torch", "--quiet", "--out", str(tmp_path)]
    assert run_cli(args, capsys)[0] == 0
    before = (tmp_path / "last.pt").read_bytes()
    code, err = run_cli(args, capsys)
    assert code == 2 and len(err) == 1
    assert "already holds a run" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]
    assert (tmp_path / "last.pt").read_bytes() == before  # nothing replaced
    assert run_cli(args + ["--overwrite"], capsys)[0] == 0


def test_output_folder_problems_are_found_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(trainer, "BuiltinData", lambda *a, **k: pytest.fail("loaded data"))
    (tmp_path / "file").write_text("x")
    for out, message in ((tmp_path / "file", "exists and is not a folder"),
                         (tmp_path / "file" / "run", "cannot write there")):
        code, err = run_cli(["train", "--out", str(out)], capsys)
        assert code == 2 and len(err) == 1 and message in err[0], err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, err = run_cli(["train", "--out", str(locked)], capsys)
        assert code == 2 and "cannot write there" in err[0]


def test_leftover_temporary_files_are_removed(tmp_path):
    (tmp_path / ".tmp-abc.pt").write_bytes(b"half a checkpoint")
    train(TrainConfig(epochs=1, out=str(tmp_path), **TINY))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


# ------------------------------------------------------------------ 5, 12. images

def _bmp_bytes():
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(buffer, format="BMP")
    return bytearray(buffer.getvalue())


def test_any_decoding_error_skips_the_image(tmp_path):
    bomb = _bmp_bytes()
    struct.pack_into("<ii", bomb, 18, 30000, 30000)  # a few header bytes: 900 megapixels
    (tmp_path / "bomb.bmp").write_bytes(bomb)
    (tmp_path / "text.png").write_text("not an image")
    assert folder.load_image(str(tmp_path / "bomb.bmp"), 36) is None
    assert folder.load_image(str(tmp_path / "text.png"), 36) is None


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    gray16 = np.full((40, 40), 32768, dtype=np.uint16)  # half of full scale
    Image.fromarray(gray16).save(tmp_path / "half.png")
    Image.fromarray(np.full((40, 40), 0.25, dtype=np.float32), mode="F").save(tmp_path / "q.tiff")
    half = folder.load_image(str(tmp_path / "half.png"), 36)
    quarter = folder.load_image(str(tmp_path / "q.tiff"), 36)
    assert half.shape == (36, 36, 3) and abs(int(half[0, 0, 0]) - 128) <= 1
    assert abs(int(quarter[0, 0, 0]) - 64) <= 1


def test_a_validation_set_with_no_readable_image_is_a_clear_error(tmp_path, capsys):
    for split in ("train", "val"):
        (tmp_path / split / "a").mkdir(parents=True)
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / "train/a" / f"{i}.png")
    (tmp_path / "val/a/broken.png").write_text("nope")
    code, err = run_cli(["train", "--data", str(tmp_path), "--spec", "alexnet-small", "--epochs",
                         "1", "--batch-size", "2", "--workers", "0", "--backend", "torch",
                         "--quiet", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and len(err) == 1 and "no readable validation image" in err[0]


# ------------------------------------------------------------- 6. non-finite training

def test_non_finite_learning_rates_are_refused(tmp_path, capsys):
    for value in ("nan", "inf", "-1", "0"):
        code, err = run_cli(["train", "--lr", value, "--out", str(tmp_path)], capsys)
        assert code == 2 and len(err) == 1 and "--lr" in err[0], (value, err)
    with pytest.raises(ValueError, match="--lr must be a positive finite number"):
        train(TrainConfig(lr=float("nan"), out=str(tmp_path), **TINY))


def test_a_diverged_run_stops_before_saving(tmp_path, monkeypatch):
    real = trainer.TF.cross_entropy
    monkeypatch.setattr(trainer.TF, "cross_entropy", lambda *a, **k: real(*a, **k) * math.nan)
    with pytest.raises(ValueError, match="training diverged in epoch 1: the training loss is nan"):
        train(TrainConfig(epochs=1, out=str(tmp_path), **TINY))
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()
    assert not (tmp_path / "metrics.jsonl").exists()


def test_metrics_are_strict_json(tmp_path):
    with pytest.raises(ValueError):
        report.write_metrics([dict(epoch=1, train_loss=math.nan)], str(tmp_path))
    assert not (tmp_path / "metrics.jsonl").exists()


# ----------------------------------------------------------------- 7. resume conflicts

def test_resume_refuses_flags_that_differ_from_the_checkpoint(tmp_path, capsys):
    train(TrainConfig(epochs=1, out=str(tmp_path), **TINY))
    code, err = run_cli(["train", "--out", str(tmp_path), "--resume", "--lr", "0.5",
                         "--batch-size", "8", "--epochs", "2"], capsys)
    assert code == 2 and len(err) == 1
    assert "--lr 0.5 (the checkpoint's: 0.01)" in err[0] and "--batch-size 8" in err[0]
    # the same values as the checkpoint's, and what may change, are fine
    code, _ = run_cli(["train", "--out", str(tmp_path), "--resume", "--lr", "0.01",
                       "--epochs", "2", "--quiet"], capsys)
    assert code == 0


def test_resume_keeps_the_checkpoints_classes(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("ants", "bees"):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((40, 40, 3), 90 * i, np.uint8)).save(
                    tmp_path / "data" / split / cls / f"{i}.png")
    out = str(tmp_path / "run")
    train(TrainConfig(data=str(tmp_path / "data"), spec="alexnet-small", epochs=1, batch_size=4,
                      workers=0, out=out, quiet=True, backend="torch"))
    os.rename(tmp_path / "data" / "train" / "ants", tmp_path / "data" / "train" / "zebras")
    code, err = run_cli(["train", "--out", out, "--resume", "--epochs", "2", "--workers", "0"],
                        capsys)
    assert code == 2 and "classes the model was not trained on: ['zebras']" in err[0]


# ------------------------------------------------ 10. one-line errors for bad arguments

BAD_ARGUMENTS = [
    (["train", "--devices", "foo"], "--devices"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--train-images", "-5"], "--train-images"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--dropout", "1.5"], "--dropout"),
    (["eval", "--checkpoint", "x.pt", "--batch-size", "0"], "--batch-size"),
    (["eval", "--checkpoint", "x.pt", "--batch-size", "-3"], "--batch-size"),
    (["compile", "alexnet", "--passes", "bogus"], "unknown passes"),
    (["compile", "alexnet", "--devices", "foo"], "--devices"),
    (["summary", "alexnet", "--batch", "0"], "--batch"),
    (["bench", "--net", "."], "cannot read the spec file"),
    (["bench", "--layer", "conv9"], "conv9"),
    (["bench", "--batch", "-1", "--layer", "conv1"], "--batch"),
    (["kernels", "--batch", "0"], "--batch"),
]


@pytest.mark.parametrize("argv,names", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_line(argv, names, capsys):
    code, err = run_cli(argv, capsys)
    assert code == 2 and len(err) == 1 and names in err[0], err
    assert "Traceback" not in err[0]


def test_bad_plot_inputs_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.csv").write_bytes(b"\xff\xfe garbage \x00\x01")
    code, err = run_cli(["bench", "--csv", str(tmp_path / "bad.csv"), "--plot",
                         str(tmp_path / "p.png")], capsys)
    assert code == 2 and len(err) == 1 and "--csv" in err[0]
    (tmp_path / "file").write_text("x")
    good = tmp_path / "good.csv"
    good.write_text("date,gpu,dtype,layout,direction,impl,case,speedup_vs_torch\n"
                    "2026-11-27,H100,bf16,nchw,forward,tritonalex,conv1,1.1\n")
    code, err = run_cli(["bench", "--csv", str(good), "--plot", str(tmp_path / "file" / "p.png")],
                        capsys)
    assert code == 2 and len(err) == 1 and "--plot" in err[0]


def test_a_checkpoint_whose_weights_do_not_fit_its_spec(tmp_path, capsys):
    train(TrainConfig(epochs=1, out=str(tmp_path), **TINY))
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    state["model"]["nodes.fc6.towers.0.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "edited.pt")
    code, err = run_cli(["eval", "--checkpoint", str(tmp_path / "edited.pt")], capsys)
    assert code == 2 and len(err) == 1 and "weights do not match its spec" in err[0]


# --------------------------------------------------------------- 11. hooks and convert

def test_convert_does_not_fuse_across_hooks():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU()).double()
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(("conv", o.min().item())))
    model[1].register_forward_hook(lambda m, i, o: seen.append(("relu", o.min().item())))
    expected = model(torch.randn(1, 3, 9, 9, dtype=torch.float64, device="cpu",
                                 generator=torch.Generator().manual_seed(1)))
    seen.clear()
    tritonalex.convert(model)
    assert isinstance(model[1], torch.nn.ReLU) and model[0].activation is None  # not fused
    assert isinstance(model[3], torch.nn.Identity) and model[2].activation == "relu"  # no hooks
    out = model(torch.randn(1, 3, 9, 9, dtype=torch.float64, device="cpu",
                            generator=torch.Generator().manual_seed(1)))
    assert [k for k, _ in seen] == ["conv", "relu"] and seen[0][1] < 0  # pre-ReLU values
    check_close(out, expected, "converted model")


# ---------------------------------------------------------------- 12. parity with torch

PARITY = [
    ("dropout p=nan", lambda: F.dropout(torch.ones(3), math.nan), RuntimeError,
     "dropout probability has to be between 0 and 1, but got nan"),
    ("linear dropout=nan", lambda: F.linear(torch.ones(2, 3), torch.ones(4, 3), dropout=math.nan),
     RuntimeError, "dropout probability has to be between 0 and 1"),
    ("groups=2.0", lambda: F.conv2d(torch.ones(1, 4, 5, 5), torch.ones(4, 2, 3, 3), groups=2.0),
     TypeError, "argument 'groups'"),
    ("stride=1.5", lambda: F.conv2d(torch.ones(1, 4, 5, 5), torch.ones(4, 4, 3, 3), stride=1.5),
     TypeError, "argument 'stride' must be tuple of ints"),
    ("max_pool2d padding=-1", lambda: F.max_pool2d(torch.ones(1, 1, 5, 5), 3, padding=-1),
     RuntimeError, "pad must be non-negative, but got pad: -1"),
    ("0-d linear", lambda: F.linear(torch.tensor(1.0), torch.ones(3, 1)), RuntimeError,
     "both arguments to linear need to be at least 1D, but they are 0D and 2D"),
    ("conv out_channels=0", lambda: F.conv2d(torch.ones(1, 4, 5, 5), torch.ones(0, 4, 3, 3)),
     RuntimeError, "expected weight to be at least 1 at dimension 0"),
]


@pytest.mark.parametrize("case,call,error,message", PARITY, ids=[p[0] for p in PARITY])
def test_errors_match_torch(case, call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(")):
        call()


def test_linear_with_no_inputs_returns_the_bias():
    x = torch.randn(3, 0, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 0, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    out = F.linear(x, w, b)
    check_close(out, TF.linear(x, w, b), "K=0 linear")
    out.sum().backward()
    assert torch.equal(b.grad, torch.full((5,), 3.0, dtype=torch.float64))
    assert w.grad.shape == (5, 0) and x.grad.shape == (3, 0)
