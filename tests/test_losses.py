"""Tests of the segmentation losses on hand-computed cases."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from facesegm_utils import losses as L


def _logits(labels: np.ndarray, num_classes: int, scale: float = 30.0) -> np.ndarray:
    """Confident logits whose argmax is ``labels``."""
    return (np.eye(num_classes, dtype="float32")[labels] * scale).astype("float32")


def test_ce_class_weights_two_pixels() -> None:
    # pixel A: true class 0, logits (0, 0) -> ce = ln 2 ; pixel B: true class 1, logits (0, ln 3) -> ce = ln(4/3)
    y = np.array([[[0, 1]]])
    logits = np.array([[[[0.0, 0.0], [0.0, math.log(3.0)]]]], "float32")
    a, b = math.log(2.0), math.log(4.0 / 3.0)
    plain = float(L.get_loss("ce")(y, logits))
    assert plain == pytest.approx((a + b) / 2, rel=1e-5)
    weighted = float(L.get_loss("ce", class_weights=[1.0, 3.0], num_classes=2)(y, logits))
    assert weighted == pytest.approx((1 * a + 3 * b) / 4, rel=1e-5)


def test_dice_perfect_and_disjoint() -> None:
    labels = np.random.default_rng(0).integers(0, 4, size=(2, 8, 8))
    dice = L.SoftDiceLoss()
    assert float(dice(labels, _logits(labels, 19))) == pytest.approx(0.0, abs=1e-4)
    # every pixel of class 1 predicted as class 2: both classes count, both have Dice ~ 0
    ones = np.ones((2, 8, 8), "int64")
    assert float(dice(ones, _logits(ones * 2, 19))) == pytest.approx(1.0, abs=0.02)


def test_dice_hand_computed_soft_case() -> None:
    # 2 pixels, 2 classes, truth (0, 1), softmax (0.75, 0.25) and (0.25, 0.75), smooth 0
    y = np.array([[0, 1]])
    logits = np.array([[[math.log(3.0), 0.0], [0.0, math.log(3.0)]]], "float32")
    # class 0: I = 0.75, P = 1, T = 1 -> 0.75 ; class 1 the same
    assert float(L.SoftDiceLoss(smooth=0.0)(y, logits)) == pytest.approx(0.25, abs=1e-6)


def test_dice_both_label_shapes_and_batch_sizes() -> None:
    rng = np.random.default_rng(1)
    for batch in (1, 3):
        labels = rng.integers(0, 19, size=(batch, 6, 6))
        logits = rng.normal(size=(batch, 6, 6, 19)).astype("float32")
        for loss in (L.SoftDiceLoss(), L.CEDiceLoss(), L.SparseCrossEntropy()):
            flat = float(loss(labels, logits))
            chan = float(loss(labels[..., None], logits))
            assert flat == pytest.approx(chan, rel=1e-6) and math.isfinite(flat)


def test_dice_absent_class_not_predicted_is_ignored() -> None:
    labels = np.zeros((1, 4, 4), "int64")
    labels[0, :2] = 1
    perfect = _logits(labels, 19)
    assert float(L.SoftDiceLoss()(labels, perfect)) == pytest.approx(0.0, abs=1e-4)
    # predict an absent class (5) on one pixel: class 5 counts with Dice ~ 0, loss rises to ~ 1/3
    wrong = perfect.copy()
    wrong[0, 0, 0] = _logits(np.array(5), 19)
    value = float(L.SoftDiceLoss(smooth=1e-3)(labels, wrong))
    assert value == pytest.approx(1 - (2 * 7 / 15 + 1 + 0) / 3, abs=0.01)


def test_gradients_finite() -> None:
    import tensorflow as tf

    labels = tf.constant(np.random.default_rng(2).integers(0, 19, size=(2, 8, 8)))
    logits = tf.constant(np.random.default_rng(3).normal(size=(2, 8, 8, 19)).astype("float32"))
    for loss in (L.get_loss("ce"), L.get_loss("dice"), L.get_loss("ce+dice", class_weights=[1.0] * 19)):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(labels, logits)
        grad = tape.gradient(value, logits).numpy()
        assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_ce_dice_is_weighted_sum() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 19, size=(2, 5, 5))
    logits = rng.normal(size=(2, 5, 5, 19)).astype("float32")
    ce, dice = float(L.SparseCrossEntropy()(labels, logits)), float(L.SoftDiceLoss()(labels, logits))
    assert float(L.CEDiceLoss(ce_weight=0.5, dice_weight=2.0)(labels, logits)) == pytest.approx(
        0.5 * ce + 2.0 * dice, rel=1e-5
    )


def test_get_loss_errors_and_config_round_trip() -> None:
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        L.get_loss("focal")
    with pytest.raises(ValueError, match="class_weights has 3 entries"):
        L.get_loss("ce", class_weights=[1, 2, 3])
    original = L.CEDiceLoss(ce_weight=0.3, dice_weight=0.7, class_weights=[2.0] * 19)
    restored = keras.losses.deserialize(keras.losses.serialize(original))
    assert isinstance(restored, L.CEDiceLoss)
    assert (restored.ce_weight, restored.dice_weight, restored.class_weights) == (0.3, 0.7, (2.0,) * 19)


def test_class_weights_apply_to_the_cross_entropy_only() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, size=(2, 6, 6))
    logits = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    weights = [1.0, 10.0, 0.5, 3.0]
    ce_w = float(L.SparseCrossEntropy(class_weights=weights)(labels, logits))
    dice = float(L.SoftDiceLoss()(labels, logits))
    assert dice != pytest.approx(float(L.SoftDiceLoss(class_weights=weights)(labels, logits)), rel=1e-3)
    combined = float(L.get_loss("ce+dice", class_weights=weights, num_classes=4)(labels, logits))
    assert combined == pytest.approx(ce_w + dice, rel=1e-5)
    assert float(L.get_loss("dice", class_weights=weights, num_classes=4)(labels, logits)) == pytest.approx(
        dice, rel=1e-6
    )
