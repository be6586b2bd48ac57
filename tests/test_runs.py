"""Tests of saved runs: a model saved by the package loads back with its custom objects."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from facesegm_utils import callbacks, runs
from facesegm_utils.losses import CEDiceLoss, SoftDiceLoss, SparseCrossEntropy
from facesegm_utils.model import build_unet


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
