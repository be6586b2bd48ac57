"""Tests of the metric, model saving/loading and the ability to fit a few faces."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from test_training import prepared  # noqa: F401  (the tiny prepared dataset fixture)

from facesegm_utils import callbacks
from facesegm_utils.fileio import read_label_map, read_rgb
from facesegm_utils.losses import CEDiceLoss, SoftDiceLoss, SparseCrossEntropy
from facesegm_utils.model import build_unet


@pytest.mark.slow
def test_overfits_four_faces(prepared: Path) -> None:  # noqa: F811 (the imported fixture)
    names = sorted((prepared / "train" / "images").iterdir())[:4]
    x = np.stack([read_rgb(p) for p in names]).astype("float32")
    y = np.stack([read_label_map(prepared / "train" / "labels" / (p.stem + ".png")) for p in names])
    keras.utils.set_random_seed(0)
    net = build_unet(32, base_filters=8, depth=2)
    callbacks.compile_model(net, SparseCrossEntropy(), 1e-2, 19)
    net.fit(x, y, epochs=80, batch_size=2, verbose=0)  # 160 steps
    acc = (keras.ops.convert_to_numpy(net(x)).argmax(-1) == y).mean()
    assert acc > 0.9


@pytest.mark.parametrize("loss", [SparseCrossEntropy(), SoftDiceLoss(smooth=2.0), CEDiceLoss(0.5, 1.5)])
def test_save_load_round_trip(tmp_path: Path, loss: keras.losses.Loss) -> None:
    net = build_unet(16, base_filters=2, depth=1)
    callbacks.compile_model(net, loss, 1e-3, 19)
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 19, (2, 16, 16))
    before = net.evaluate(x, y, verbose=0, return_dict=True)
    net.save(tmp_path / "m.keras")
    back = callbacks.load_model(tmp_path / "m.keras", compile=True)
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
        callbacks.load_model(tmp_path / "missing.keras")


def test_dataset_miou_is_dataset_level() -> None:
    metric = callbacks.DatasetMeanIoU(3)
    eye = np.eye(3, dtype="float32")
    metric.update_state(np.array([[0, 0]]), eye[[0, 1]][None])  # class 0: 1 TP, 1 FN; class 1: 1 FP
    metric.update_state(np.array([[2, 2]])[..., None], eye[[2, 2]][None])  # class 2 perfect
    # IoU: class 0 = 1/2, class 1 = 0/1, class 2 = 2/2 -> mean 0.5 (a mean of per-batch mIoUs would be 0.625)
    assert float(metric.result()) == pytest.approx(0.5)
