"""Metric values checked against hand-computed confusion matrices and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facesegm_utils.labels import CLASSES, NUM_CLASSES, class_id
from facesegm_utils.metrics import (
    ConfusionMatrix,
    image_scores,
    left_right_confusion,
    matrix_mean_iou,
    per_batch_mean_iou,
    per_batch_mean_iou_from_matrices,
    top_confusions,
)


def test_hand_computed_3x3() -> None:
    y_true = np.array([[0, 0, 1], [1, 2, 2], [2, 2, 0]])
    y_pred = np.array([[0, 1, 1], [1, 2, 0], [2, 2, 0]])
    cm = ConfusionMatrix(3).update(y_true, y_pred)
    # rows = truth: class 0 -> {0: 2, 1: 1}; class 1 -> {1: 2}; class 2 -> {0: 1, 2: 3}
    np.testing.assert_array_equal(cm.matrix, [[2, 1, 0], [0, 2, 0], [1, 0, 3]])
    assert cm.pixel_accuracy() == pytest.approx(7 / 9)
    # IoU = TP/(TP+FP+FN): c0 2/(2+1+1), c1 2/(2+1+0), c2 3/(3+0+1)
    np.testing.assert_allclose(cm.iou(), [1 / 2, 2 / 3, 3 / 4])
    # F1 = 2TP/(2TP+FP+FN): c0 4/6, c1 4/5, c2 6/7
    np.testing.assert_allclose(cm.f1(), [2 / 3, 4 / 5, 6 / 7])
    assert cm.mean_iou() == pytest.approx(23 / 36)
    assert cm.mean_iou_no_bg() == pytest.approx(17 / 24)
    assert cm.mean_f1_fg() == pytest.approx(29 / 35)
    np.testing.assert_array_equal(cm.support(), [3, 2, 4])
    assert cm.absent_classes() == []
    assert cm.ignored == 0


def test_hand_computed_4x4_with_absent_class_and_ignored_labels() -> None:
    y_true = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [3, 3, 3, 3], [3, 3, 0, -1]])
    y_pred = np.array([[0, 1, 1, 1], [0, 0, 1, 3], [3, 3, 0, 7], [3, 3, 0, 9]])
    cm = ConfusionMatrix(4).update(y_true, y_pred)
    np.testing.assert_array_equal(cm.matrix, [[4, 1, 0, 0], [0, 3, 0, 1], [0, 0, 0, 0], [1, 0, 0, 4]])
    assert cm.ignored == 2  # truth -1 and prediction 7 (>= C)
    assert cm.total() == 14
    assert cm.pixel_accuracy() == pytest.approx(11 / 14)
    iou = cm.iou()
    np.testing.assert_allclose(iou[[0, 1, 3]], [4 / 6, 3 / 5, 4 / 6])
    assert math.isnan(iou[2])
    f1 = cm.f1()
    np.testing.assert_allclose(f1[[0, 1, 3]], [0.8, 0.75, 0.8])
    assert math.isnan(f1[2])
    assert cm.absent_classes() == [2]
    assert cm.mean_iou() == pytest.approx(29 / 45)
    assert cm.mean_iou_no_bg() == pytest.approx(19 / 30)
    assert cm.mean_f1_fg() == pytest.approx(0.775)
    np.testing.assert_array_equal(cm.support(), [5, 4, 0, 5])


def _brute_force(y_true: np.ndarray, y_pred: np.ndarray, c: int) -> tuple[float, np.ndarray, np.ndarray]:
    valid = (y_true >= 0) & (y_true < c) & (y_pred >= 0) & (y_pred < c)
    t, p = y_true[valid], y_pred[valid]
    iou, f1 = np.full(c, np.nan), np.full(c, np.nan)
    for k in range(c):
        inter = np.sum((t == k) & (p == k))
        union = np.sum((t == k) | (p == k))
        if union:
            iou[k] = inter / union
            f1[k] = 2 * inter / (np.sum(t == k) + np.sum(p == k))
    return float(np.mean(t == p)), iou, f1


def test_agrees_with_brute_force_on_random_maps() -> None:
    rng = np.random.default_rng(0)
    cm = ConfusionMatrix()
    all_t, all_p = [], []
    for _ in range(3):
        # classes 5 and 11 never occur; -1 and 19..21 are out of range and must be ignored
        choices = np.array([c for c in range(-1, NUM_CLASSES + 3) if c not in (5, 11)])
        t = rng.choice(choices, size=(2, 9, 7))
        p = np.where(rng.random(t.shape) < 0.6, t, rng.choice(choices, size=t.shape))
        cm.update(t, p)
        all_t.append(t)
        all_p.append(p)
    t, p = np.concatenate(all_t), np.concatenate(all_p)
    acc, iou, f1 = _brute_force(t, p, NUM_CLASSES)
    assert cm.pixel_accuracy() == pytest.approx(acc)
    np.testing.assert_allclose(cm.iou(), iou, equal_nan=True)
    np.testing.assert_allclose(cm.f1(), f1, equal_nan=True)
    assert cm.absent_classes() == [5, 11]
    assert cm.mean_iou() == pytest.approx(np.nanmean(iou))
    assert cm.mean_f1_fg() == pytest.approx(np.nanmean(f1[1:]))
    invalid = (t < 0) | (t >= NUM_CLASSES) | (p < 0) | (p >= NUM_CLASSES)
    assert cm.ignored == int(invalid.sum()) > 0
    assert cm.total() + cm.ignored == t.size


def test_merge_and_reset() -> None:
    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 4, (2, 5, 5)), rng.integers(0, 4, (2, 5, 5))
    whole = ConfusionMatrix(4).update(t, p)
    a = ConfusionMatrix(4).update(t[0], p[0])
    a.merge(ConfusionMatrix(4).update(t[1], p[1]))
    np.testing.assert_array_equal(a.matrix, whole.matrix)
    a.reset()
    assert a.total() == 0 and a.ignored == 0
    assert math.isnan(a.pixel_accuracy()) and math.isnan(a.mean_iou())
    with pytest.raises(ValueError, match="merge a 3-class"):
        a.merge(ConfusionMatrix(3))


def test_bad_inputs_are_named() -> None:
    cm = ConfusionMatrix(4)
    with pytest.raises(ValueError, match="same shape"):
        cm.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="y_pred must hold integer"):
        cm.update(np.zeros(3, int), np.zeros(3, float))


def test_dataset_level_differs_from_per_batch_mean() -> None:
    # batch A: only background, perfectly predicted -> batch mIoU 1.
    # batch B: 4 skin pixels, 3 predicted as background -> IoU bg 0/3 = 0, IoU skin 1/4 -> mIoU 1/8.
    a = (np.zeros(4, int), np.zeros(4, int))
    b = (np.ones(4, int), np.array([1, 0, 0, 0]))
    assert per_batch_mean_iou([a, b], num_classes=2) == pytest.approx((1 + 1 / 8) / 2)
    # an absent class counted as 0 in batch A instead of being left out
    assert per_batch_mean_iou([a, b], num_classes=2, absent_value=0.0) == pytest.approx((0.5 + 1 / 8) / 2)
    # dataset level: matrix [[4, 0], [3, 1]] -> IoU bg 4/7, skin 1/4
    cm = ConfusionMatrix(2)
    for t, p in (a, b):
        cm.update(t, p)
    assert cm.mean_iou() == pytest.approx((4 / 7 + 1 / 4) / 2)
    assert cm.mean_iou() < per_batch_mean_iou([a, b], num_classes=2) - 0.1
    with pytest.raises(ValueError, match="at least one"):
        per_batch_mean_iou([])


def test_per_batch_from_image_matrices_groups_consecutive_images() -> None:
    rng = np.random.default_rng(2)
    truths = [rng.integers(0, 5, (3, 3)) for _ in range(5)]
    preds = [np.where(rng.random((3, 3)) < 0.5, t, rng.integers(0, 5, (3, 3))) for t in truths]
    mats = np.stack([ConfusionMatrix(5).update(t, p).matrix for t, p in zip(truths, preds, strict=True)])
    batches = [(np.stack(truths[i : i + 2]), np.stack(preds[i : i + 2])) for i in range(0, 5, 2)]  # 2, 2, 1
    expected = per_batch_mean_iou(batches, num_classes=5)
    assert per_batch_mean_iou_from_matrices(mats, batch_size=2) == pytest.approx(expected)
    whole = ConfusionMatrix(5)
    whole.matrix = mats.sum(axis=0)
    assert per_batch_mean_iou_from_matrices(mats, batch_size=99) == pytest.approx(whole.mean_iou())
    assert (
        matrix_mean_iou([[1, 0], [0, 0]]) == 1.0 and matrix_mean_iou([[1, 0], [0, 0]], absent_value=0) == 0.5
    )
    with pytest.raises(ValueError, match=r"\(N, C, C\)"):
        per_batch_mean_iou_from_matrices(np.zeros((0, 2, 2)))


def test_top_confusions() -> None:
    m = [[8, 2, 0], [1, 1, 0], [0, 0, 0]]  # row-normalised: 0->1 20%, 1->0 50%; class 2 has no pixels
    assert top_confusions(m, k=5, class_names=("a", "b", "c")) == [("b", "a", 0.5), ("a", "b", 0.2)]
    assert top_confusions(m, k=1, class_names=("a", "b", "c")) == [("b", "a", 0.5)]


def test_image_scores() -> None:
    s = image_scores(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), num_classes=3)
    assert s["pixel_accuracy"] == pytest.approx(0.75)
    assert s["mean_iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # class 2 absent, left out


def test_report_is_json_ready() -> None:
    t = np.zeros((4, 4), int)
    t[:2] = 1
    rep = ConfusionMatrix().update(t, t).report()
    assert list(rep["per_class"]) == list(CLASSES)
    assert rep["pixel_accuracy"] == 1.0 and rep["mean_iou"] == 1.0
    assert rep["per_class"]["skin"] == {"iou": 1.0, "f1": 1.0, "support": 8, "absent": False}
    assert rep["per_class"]["hair"] == {"iou": None, "f1": None, "support": 0, "absent": True}
    assert len(rep["absent_classes"]) == NUM_CLASSES - 2
    assert np.array(rep["confusion_matrix"]).shape == (NUM_CLASSES, NUM_CLASSES)


def test_left_right_confusion_hand_computed() -> None:
    m = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    le, re, lb, rb, skin = (class_id(n) for n in ("l_eye", "r_eye", "l_brow", "r_brow", "skin"))
    m[le, le], m[le, re], m[le, skin] = 6, 2, 2  # 2 of 10 left-eye pixels called right eye
    m[re, re] = 10
    m[lb, rb], m[lb, lb] = 3, 1  # 3 of 4 left-brow pixels called right brow
    m[class_id("u_lip"), class_id("l_lip")] = 50  # upper/lower lip: not a left/right pair
    out = left_right_confusion(m)
    assert out["rate"] == pytest.approx(5 / 24)
    assert out["parts"] == {"eye": pytest.approx(0.1), "brow": pytest.approx(0.75), "ear": None}
    assert left_right_confusion(np.zeros((NUM_CLASSES, NUM_CLASSES)))["rate"] is None
    report = ConfusionMatrix().update(np.array([[le, re]]), np.array([[re, re]])).report()
    assert report["left_right_confusion"]["rate"] == 0.5
    with pytest.raises(ValueError, match="19x19"):
        left_right_confusion(np.zeros((3, 3)))
