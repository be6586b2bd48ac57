"""Tests of saved runs: a model saved by the package loads back with its custom objects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from facesegm_utils import callbacks, runs
from facesegm_utils.fileio import FacesegmError
from facesegm_utils.losses import CEDiceLoss, SoftDiceLoss, SparseCrossEntropy
from facesegm_utils.model import build_unet
from facesegm_utils.trainconfig import TrainConfig


@pytest.mark.parametrize("loss", [SparseCrossEntropy(), SoftDiceLoss(smooth=2.0), CEDiceLoss(0.5, 1.5)])
def test_save_load_round_trip(tmp_path: Path, loss: keras.losses.Loss) -> None:
    net = build_unet(16, base_filters=2, depth=1)
    callbacks.compile_model(net, loss, 1e-3, 19)
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 19, (2, 16, 16))
    before = net.evaluate(x, y, verbose=0, return_dict=True)
    net.save(tmp_path / "m.keras")
    back = runs.load_model(tmp_path / "m.keras", compile=True)
    assert type(back.loss) is type(loss) and back.loss.get_config() == loss.get_config()
    after = back.evaluate(x, y, verbose=0, return_dict=True)
    assert after["miou_model_size"] == pytest.approx(before["miou_model_size"], abs=1e-6) and after[
        "loss"
    ] == pytest.approx(before["loss"])
    metric = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(callbacks.DatasetMeanIoU(19))
    )
    assert isinstance(metric, callbacks.DatasetMeanIoU) and metric.num_classes == 19
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(back(x)), keras.ops.convert_to_numpy(net(x)), atol=1e-5
    )
    with pytest.raises(FileNotFoundError, match="model not found"):
        runs.load_model(tmp_path / "missing.keras")


def _run_folder(tmp_path: Path, status: str, epochs: int, done: int | None, **record: object) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    cfg = TrainConfig(data=str(tmp_path), out=str(run), epochs=epochs)
    (run / "config.json").write_text(
        json.dumps({**cfg.to_dict(), "image_size": 32, "status": status, **record})
    )
    if done is not None:
        (run / "backup").mkdir()
        (run / "backup" / "latest.weights.h5").write_bytes(b"weights")
        (run / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": done, "batch": 0}))
    return run


def _state(run: Path, epochs: int) -> runs.RunState:
    return runs.run_state(run, TrainConfig(data=str(run.parent), out=str(run), epochs=epochs), 32)


def test_run_state_of_a_finished_run(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, "finished", 30, 30, best_val_miou=0.5, best_epoch=28)
    assert _state(run, 30).mode == _state(run, 12).mode == "complete"
    assert runs.complete_line(_state(run, 30).record or {}) == (
        "run complete: best val mIoU 0.500 at epoch 28; --restart to train again, or --epochs N to extend"
    )
    extend = _state(run, 40)
    assert (extend.mode, extend.done, extend.segments) == ("extend", 30, ((0, 30), (30, 40)))
    shutil.rmtree(run / "backup")  # finished before runs kept their last weights
    assert _state(run, 30).mode == "complete"
    with pytest.raises(FacesegmError, match="kept no last weights"):
        _state(run, 40)
    assert (
        runs.run_state(run, TrainConfig(data=str(tmp_path), out=str(run), epochs=40), 32, restart=True).mode
        == "new"
    )


def test_run_state_of_an_interrupted_or_failed_run(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, "running", 30, 20, schedule_segments=[[0, 30]])
    same, longer = _state(run, 30), _state(run, 60)
    assert (same.mode, same.done, same.segments) == ("resume", 20, ((0, 30),))
    assert longer.segments == ((0, 30), (20, 60))
    with pytest.raises(FacesegmError, match="has trained 20 of its 30 epochs"):
        _state(run, 20)
    with pytest.raises(FacesegmError, match="loss: 'ce\\+dice' -> 'dice'"):
        runs.run_state(run, TrainConfig(data=str(tmp_path), out=str(run), epochs=30, loss="dice"), 32)
    shutil.rmtree(run / "backup")  # stopped before an epoch ended: it starts over
    assert _state(run, 30).mode == "new"
    (run / "config.json").write_text("{")
    with pytest.raises(FacesegmError, match="cannot read"):
        _state(run, 30)
