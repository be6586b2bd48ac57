"""Tests of training: errors, overfitting a few faces, save/load, resume, MirroredStrategy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from facesegm_utils import training
from facesegm_utils.fileio import FacesegmError, read_label_map, read_rgb
from facesegm_utils.losses import CEDiceLoss, SoftDiceLoss, SparseCrossEntropy
from facesegm_utils.model import build_unet


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny prepared dataset: 12 synthetic faces at 32x32, split 6/3/3."""
    from facesegm_utils import prepare, synthetic

    root = tmp_path_factory.mktemp("data")
    synthetic.write_dataset(root / "raw", count=12, size=64, seed=0)
    prepare.prepare_dataset(
        root / "raw", root / "prep", 32, split="ratio", ratios=(0.5, 0.25, 0.25), workers=1
    )
    return root / "prep"


def _config(prepared: Path, out: Path, **kw: object) -> training.TrainConfig:
    base = {
        "data": str(prepared),
        "out": str(out),
        "image_size": 32,
        "epochs": 2,
        "batch_size": 4,
        "base_filters": 4,
        "depth": 2,
        "loss": "ce",
        "augment": False,
        "mixed_precision": "off",
        "strategy": "default",
    }
    base.update(kw)
    return training.TrainConfig(**base)


def test_missing_prepared_folder(tmp_path: Path) -> None:
    with pytest.raises(FacesegmError, match=r"prepared dataset folder not found: .*nowhere"):
        training.train(_config(tmp_path / "nowhere", tmp_path / "run"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacesegmError, match="dataset.json, manifest.csv missing"):
        training.train(_config(tmp_path / "empty", tmp_path / "run"))


def test_image_size_not_divisible(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"image size 40 is not divisible by 2\*\*4 = 16"):
        training.train(_config(tmp_path, tmp_path / "run", image_size=40, depth=4))


def test_config_round_trip_and_bad_option() -> None:
    cfg = training.TrainConfig(data="d", out="o", loss="dice", epochs=3)
    assert training.TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="loss must be one of"):
        training.TrainConfig(data="d", out="o", loss="focal").validate()
    with pytest.raises(ValueError, match="unknown training options"):
        training.TrainConfig.from_dict({"data": "d", "out": "o", "lrate": 1})


@pytest.mark.slow
def test_overfits_four_faces(prepared: Path) -> None:
    names = sorted((prepared / "train" / "images").iterdir())[:4]
    x = np.stack([read_rgb(p) for p in names]).astype("float32")
    y = np.stack([read_label_map(prepared / "train" / "labels" / (p.stem + ".png")) for p in names])
    keras.utils.set_random_seed(0)
    net = build_unet(32, base_filters=8, depth=2)
    training.compile_model(net, SparseCrossEntropy(), 1e-2, 19)
    net.fit(x, y, epochs=80, batch_size=2, verbose=0)  # 160 steps
    acc = (keras.ops.convert_to_numpy(net(x)).argmax(-1) == y).mean()
    assert acc > 0.9


@pytest.mark.parametrize("loss", [SparseCrossEntropy(), SoftDiceLoss(smooth=2.0), CEDiceLoss(0.5, 1.5)])
def test_save_load_round_trip(tmp_path: Path, loss: keras.losses.Loss) -> None:
    net = build_unet(16, base_filters=2, depth=1)
    training.compile_model(net, loss, 1e-3, 19)
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 19, (2, 16, 16))
    before = net.evaluate(x, y, verbose=0, return_dict=True)
    net.save(tmp_path / "m.keras")
    back = training.load_model(tmp_path / "m.keras", compile=True)
    assert type(back.loss) is type(loss) and back.loss.get_config() == loss.get_config()
    after = back.evaluate(x, y, verbose=0, return_dict=True)
    assert after["miou"] == pytest.approx(before["miou"], abs=1e-6) and after["loss"] == pytest.approx(
        before["loss"]
    )
    metric = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(training.DatasetMeanIoU(19))
    )
    assert isinstance(metric, training.DatasetMeanIoU) and metric.num_classes == 19
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(back(x)), keras.ops.convert_to_numpy(net(x)), atol=1e-5
    )
    with pytest.raises(FileNotFoundError, match="model not found"):
        training.load_model(tmp_path / "missing.keras")


def test_dataset_miou_is_dataset_level() -> None:
    metric = training.DatasetMeanIoU(3)
    eye = np.eye(3, dtype="float32")
    metric.update_state(np.array([[0, 0]]), eye[[0, 1]][None])  # class 0: 1 TP, 1 FN; class 1: 1 FP
    metric.update_state(np.array([[2, 2]])[..., None], eye[[2, 2]][None])  # class 2 perfect
    # IoU: class 0 = 1/2, class 1 = 0/1, class 2 = 2/2 -> mean 0.5 (a mean of per-batch mIoUs would be 0.625)
    assert float(metric.result()) == pytest.approx(0.5)


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == 0:
            raise RuntimeError("simulated interruption")


class _EpochRecorder(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append(epoch)


@pytest.mark.slow
def test_train_then_resume(prepared: Path, tmp_path: Path) -> None:
    cfg = _config(prepared, tmp_path / "run")
    with pytest.raises(RuntimeError, match="simulated interruption"):
        training.train(cfg, callbacks=[_StopAfterFirstEpoch()])
    assert (tmp_path / "run" / "backup").is_dir()
    assert [r["epoch"] for r in training.read_history(tmp_path / "run" / "history.csv")] == [1.0]
    recorder = _EpochRecorder()
    result = training.train(cfg, callbacks=[recorder])
    assert recorder.epochs == [1]  # continued at the second epoch (0-based 1)
    assert result["history"]["epoch"] == [1.0, 2.0] and result["epochs_run"] == 2
    assert {"miou", "val_miou", "pixel_accuracy", "val_pixel_accuracy", "loss"} <= set(result["history"])
    assert (tmp_path / "run" / "model.keras").is_file() and not (tmp_path / "run" / "backup").exists()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["image_size"] == 32 and config["seed"] == 0 and config["status"] == "finished"
    assert config["versions"]["keras"] == keras.__version__
    scores = training.evaluate_split(result["model_path"], prepared, "test", batch_size=2)
    assert 0.0 <= scores["miou"] <= 1.0 and scores["images"] == 3


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus(prepared: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from facesegm_utils import training
        cfg = training.TrainConfig(data={str(prepared)!r}, out={str(tmp_path / "run")!r}, image_size=32,
            epochs=1, batch_size=1, base_filters=4, depth=2, loss="ce+dice", augment=False,
            mixed_precision="off", strategy="mirrored", max_steps_per_epoch=2)
        r = training.train(cfg)
        print("RESULT", json.dumps({{"replicas": r["replicas"], "loss": r["history"]["loss"]}}))
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line is not None, proc.stderr[-3000:]
    out = json.loads(line.split(" ", 1)[1])
    assert out["replicas"] == 2 and np.isfinite(out["loss"][0])
