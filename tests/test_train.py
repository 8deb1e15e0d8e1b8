"""`tritonalex train` / `tritonalex eval`: tiny end-to-end runs on the built-in data and on an
ImageFolder with a corrupt file, exact resume after an interruption, damaged checkpoints, and a
2-process gloo run whose ranks end with identical weights."""

import json
import os
import socket

import numpy as np
import pytest
import torch

from tritonalex import cli
from tritonalex.train import checkpoint, trainer
from tritonalex.train.trainer import TrainConfig, train

TINY = dict(train_images=48, val_images=20, batch_size=16, quiet=True, backend="torch")


def test_builtin_end_to_end_writes_loadable_checkpoint_and_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--epochs", "2", "--train-images", "48", "--val-images", "20",
                     "--batch-size", "16", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    if not torch.cuda.is_available():
        assert "backend: torch (no CUDA device" in printed  # says which backend and why
    assert "epoch 2/2" in printed
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    for key in ("train_loss", "val_loss", "val_top1", "val_top5", "lr", "images_per_s"):
        assert all(isinstance(m[key], float) for m in lines), key
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    state = checkpoint.load(str(out / "last.pt"))
    assert state["epoch"] == 2 and state["data"]["classes"][0] == "disk"
    assert not [p for p in os.listdir(out) if "tmp" in p]  # nothing half-written left behind

    for tta in ("10", "1"):
        code = cli.main(["eval", "--checkpoint", str(out / "last.pt"), "--tta", tta, "--json"])
        assert code == 0
        result = json.loads(capsys.readouterr().out)
        assert result["images"] == 20 and 0 <= result["top1_error"] <= 1
        assert result["top5_error"] <= result["top1_error"]
    # the center-crop eval equals the training run's own validation of that epoch
    assert result["top1_error"] == pytest.approx(1 - lines[-1]["val_top1"])


def write_image_folder(root, rng):
    from PIL import Image

    for split, count in (("train", 6), ("val", 3)):
        for cls, color in (("cats", (200, 40, 40)), ("dogs", (40, 40, 200))):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = rng.integers(30, 60, 2)  # any size and aspect: short side -> 36, crop
                pixels = np.clip(rng.normal(color, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / "train" / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "train" / "dogs" / "notes.txt").write_text("not an image, not counted")


def test_image_folder_with_a_corrupt_file(tmp_path, capsys):
    write_image_folder(tmp_path / "data", np.random.default_rng(0))
    out = tmp_path / "run"
    model, history = train(TrainConfig(data=str(tmp_path / "data"), spec="alexnet-small",
                                       epochs=1, batch_size=4, workers=0, out=str(out),
                                       quiet=True, backend="torch"))
    assert history[0]["dropped_files"] == 1  # the broken file: skipped and counted
    state = checkpoint.load(str(out / "last.pt"))
    assert state["data"]["classes"] == ["cats", "dogs"] and state["data"]["stored"] == 36
    assert state["model"]["nodes.fc8.towers.0.weight"].shape[0] == 2  # fitted to 2 classes
    code = cli.main(["eval", "--checkpoint", str(out / "last.pt"), "--data",
                     str(tmp_path / "data"), "--json", "--workers", "0"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["images"] == 6


def test_resume_after_an_interruption_reproduces_the_uninterrupted_run(tmp_path, monkeypatch):
    straight, _ = train(TrainConfig(epochs=2, out=str(tmp_path / "a"), **TINY))

    real_augment, calls = trainer.augment, [0]

    def interrupt_in_epoch_two(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 6:  # epoch 1: 3 batches + 2 validation batches; then one into epoch 2
            raise KeyboardInterrupt
        return real_augment(*args, **kwargs)

    monkeypatch.setattr(trainer, "augment", interrupt_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(epochs=2, out=str(tmp_path / "b"), **TINY))
    monkeypatch.setattr(trainer, "augment", real_augment)
    assert checkpoint.load(str(tmp_path / "b" / "last.pt"))["epoch"] == 1
    resumed, history = train(TrainConfig(epochs=2, out=str(tmp_path / "b"), resume="last",
                                         quiet=True))
    assert [m["epoch"] for m in history] == [1, 2]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    a_lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    b_lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(line).items() if k not in ("images_per_s", "seconds")}
             for line in a_lines + b_lines]
    assert strip[:2] == strip[2:]
    # resuming a finished run trains nothing more
    _, again = train(TrainConfig(epochs=2, out=str(tmp_path / "b"), resume="last", quiet=True))
    assert again == history


def test_damaged_checkpoint_is_a_clear_error(tmp_path, capsys):
    train(TrainConfig(epochs=1, out=str(tmp_path), **TINY))
    good = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.pt").write_bytes(b"hello")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    for name, message in (("cut.pt", "damaged"), ("junk.pt", "damaged"),
                          ("other.pt", "not a tritonalex checkpoint"), ("none.pt", "no such")):
        with pytest.raises(checkpoint.CheckpointError, match=message):
            checkpoint.load(str(tmp_path / name))
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "cut.pt")]) == 2
    assert "cut.pt: damaged" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(tmp_path), "--resume", str(tmp_path / "junk.pt")]) == 2


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--epochs", "0", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "argument --epochs: must be at least 1, got 0" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "no such data folder" in capsys.readouterr().err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    model, _ = train(TrainConfig(epochs=1, out=out, **TINY))
    torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.device_count() < 2,
                    reason="with CUDA the ranks use NCCL, one GPU each")
def test_two_process_gloo_run_keeps_ranks_identical(tmp_path):
    torch.multiprocessing.spawn(_rank_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for name in a:
        assert torch.equal(a[name], b[name]), name
    initial = checkpoint.load(str(tmp_path / "last.pt"))  # rank 0 wrote the checkpoint alone
    assert initial["config"]["batch_size"] == 16
    assert torch.equal(initial["model"]["nodes.fc8.towers.0.weight"], a["nodes.fc8.towers.0.weight"])


@pytest.mark.parametrize("precision, devices", [("bf16", None), ("fp16", None), ("fp32", "cpu,cpu")])
def test_precisions_and_tower_devices(tmp_path, precision, devices):
    """bf16 autocast, fp16 autocast with loss scaling, and towers on two devices all train."""
    model, history = train(TrainConfig(epochs=1, out=str(tmp_path), precision=precision,
                                       devices=devices, **TINY))
    assert np.isfinite(history[0]["train_loss"]) and np.isfinite(history[0]["val_loss"])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights


@pytest.mark.slow
def test_triton_backend_trains_on_the_cpu(tmp_path):
    """--backend triton without CUDA runs every kernel in the interpreter: slow (about 3 minutes
    for two batches of 8), but it trains."""
    model, history = train(TrainConfig(epochs=1, out=str(tmp_path), train_images=16,
                                       val_images=8, batch_size=8, quiet=True, backend="triton"))
    assert np.isfinite(history[0]["train_loss"])
    assert model.backend == "triton"
