"""Tests of training: errors, resume, MirroredStrategy."""

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
from facesegm_utils.evaluation import evaluate_model
from facesegm_utils.fileio import FacesegmError, read_history
from facesegm_utils.trainconfig import TrainConfig


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


def _config(prepared: Path, out: Path, **kw: object) -> TrainConfig:
    base = {
        "data": str(prepared),
        "out": str(out),
        "image_size": 32,
        "epochs": 2,
        "batch_size": 4,
        "base_filters": 4,
        "depth": 2,
        "encoder": None,  # the plain U-Net (the default recipe's pretrained encoder is tested in test_optim)
        "encoder_weights": None,
        "loss": "ce",
        "augment": False,
        "mixed_precision": "off",
        "strategy": "default",
    }
    base.update(kw)
    return TrainConfig(**base)


def test_missing_prepared_folder(tmp_path: Path) -> None:
    with pytest.raises(FacesegmError, match=r"prepared dataset folder not found: .*nowhere"):
        training.train(_config(tmp_path / "nowhere", tmp_path / "run"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacesegmError, match="dataset.json, manifest.csv missing"):
        training.train(_config(tmp_path / "empty", tmp_path / "run"))


def test_image_size_not_divisible(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"image size 40 is not divisible by 2\*\*4 = 16"):
        training.train(_config(tmp_path, tmp_path / "run", image_size=40, depth=4))


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
    cfg.cache = "disk"  # the interrupted run's cache files (and lock) must not block the resume
    with pytest.raises(RuntimeError, match="simulated interruption"):
        training.train(cfg, callbacks=[_StopAfterFirstEpoch()])
    assert (tmp_path / "run" / "backup").is_dir()
    assert read_history(tmp_path / "run" / "history.csv")["epoch"] == [1.0]
    recorder = _EpochRecorder()
    result = training.train(cfg, callbacks=[recorder])
    assert recorder.epochs == [1]  # continued at the second epoch (0-based 1)
    assert result["history"]["epoch"] == [1.0, 2.0] and result["epochs_run"] == 2
    assert {"miou_model_size", "val_miou_model_size", "pixel_accuracy", "val_pixel_accuracy", "loss"} <= set(
        result["history"]
    )
    assert (tmp_path / "run" / "model.keras").is_file() and not (tmp_path / "run" / "backup").exists()
    assert {f.name.split(".")[0] for f in (tmp_path / "run" / "cache").iterdir()} == {"train", "val"}
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["image_size"] == 32 and config["seed"] == 0 and config["status"] == "finished"
    assert config["versions"]["keras"] == keras.__version__
    scores = evaluate_model(result["model_path"], prepared, "test", batch_size=2)
    assert 0.0 <= scores["mean_iou"] <= 1.0 and scores["num_images"] == 3


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus(prepared: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from facesegm_utils import training
        from facesegm_utils.trainconfig import TrainConfig
        cfg = TrainConfig(data={str(prepared)!r}, out={str(tmp_path / "run")!r}, image_size=32,
            epochs=1, batch_size=1, base_filters=4, depth=2, encoder=None, encoder_weights=None, loss="ce+dice", augment=False,
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
