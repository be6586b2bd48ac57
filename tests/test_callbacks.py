"""Tests of the metric, the callbacks and the ability to fit a few faces."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from test_training import prepared  # noqa: F401  (the tiny prepared dataset fixture)

from facesegm_utils import callbacks
from facesegm_utils.fileio import read_label_map, read_rgb
from facesegm_utils.losses import SparseCrossEntropy
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


def test_dataset_miou_is_dataset_level() -> None:
    metric = callbacks.DatasetMeanIoU(3)
    eye = np.eye(3, dtype="float32")
    metric.update_state(np.array([[0, 0]]), eye[[0, 1]][None])  # class 0: 1 TP, 1 FN; class 1: 1 FP
    metric.update_state(np.array([[2, 2]])[..., None], eye[[2, 2]][None])  # class 2 perfect
    # IoU: class 0 = 1/2, class 1 = 0/1, class 2 = 2/2 -> mean 0.5 (a mean of per-batch mIoUs would be 0.625)
    assert float(metric.result()) == pytest.approx(0.5)


def test_early_stopping_never_cuts_a_profile_run_short(tmp_path: Path) -> None:
    """The README's promise: with the default options no profile's run stops before its last epoch
    (the profiles train 36 and 60 epochs; a patience of 30 would have cut them)."""
    import json

    from facesegm_utils.trainconfig import TrainConfig

    profiles = json.loads((Path(__file__).parent.parent / "notebooks" / "profiles.json").read_text())
    epochs = [p["notebooks"]["04_training"]["EPOCHS"] for k, p in profiles.items() if not k.startswith("_")]
    d = TrainConfig(data="", out="")
    cbs = callbacks.run_callbacks(
        tmp_path, patience=d.patience, schedule=d.schedule, lr=d.lr, resuming=False, initial_best=-np.inf
    )
    stoppers = [cb for cb in cbs if isinstance(cb, keras.callbacks.EarlyStopping)]
    assert all(cb.patience >= max(epochs) for cb in stoppers), (epochs, [cb.patience for cb in stoppers])
    cbs = callbacks.run_callbacks(
        tmp_path, patience=5, schedule="plateau", lr=1e-3, resuming=False, initial_best=-np.inf
    )
    assert [cb.patience for cb in cbs if isinstance(cb, keras.callbacks.EarlyStopping)] == [5]


def test_compile_builds_the_optimizer_so_fit_creates_no_variable() -> None:
    """A variable created inside fit's first trace (Adam's slots, outside a distribution strategy)
    makes tf.function trace the train step twice; compile_model creates them beforehand."""
    import tensorflow as tf

    net = build_unet(image_size=32, base_filters=4, depth=2)
    callbacks.compile_model(net, SparseCrossEntropy(), 1e-3, 19)
    assert net.optimizer.built and len(net.optimizer.variables) > 2 * len(net.trainable_variables)
    created = []

    def record(next_creator, **kwargs):
        created.append(kwargs.get("name"))
        return next_creator(**kwargs)

    x, y = np.zeros((2, 32, 32, 3), np.float32), np.zeros((2, 32, 32), np.int32)
    with tf.variable_creator_scope(record):
        net.fit(x, y, epochs=1, verbose=0)
    assert created == []
