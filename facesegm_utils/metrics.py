"""Dataset-level segmentation metrics from one confusion matrix (numpy only).

The figures the face-parsing literature reports are *dataset-level*: every pixel of the split goes
into one confusion matrix, and pixel accuracy, per-class IoU and F1 are read off it at the end. A
class that never occurs (in the truth or the prediction) anywhere in the split has no IoU; it is
reported as NaN and left out of the means rather than counted as 0 or 1.

:func:`per_batch_mean_iou` reproduces the other convention, a mean of per-batch mIoUs, so the
course can show how far apart the two figures can be. :func:`left_right_confusion` measures the
share of left/right parts (eyes, brows, ears) predicted as their mirror class.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from facesegm_utils.labels import BACKGROUND, CLASSES, FLIP_PERMUTATION, NUM_CLASSES


def _as_labels(arr: Any, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)):
        raise ValueError(f"{name} must hold integer class ids, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False).ravel()


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, NaN where ``den == 0``."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    """Mean over the finite entries; NaN (without a warning) when there are none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


class ConfusionMatrix:
    """A streaming ``C x C`` confusion matrix: rows are the true class, columns the predicted one.

    Pixels whose truth or prediction lies outside ``[0, C)`` (e.g. an ignore label 255) are not
    counted in the matrix; their number is kept in :attr:`ignored`.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.ignored = 0

    def update(self, y_true: Any, y_pred: Any) -> ConfusionMatrix:
        """Add one batch (any shape, same for both) of true and predicted class ids."""
        t = _as_labels(y_true, "y_true")
        p = _as_labels(y_pred, "y_pred")
        if np.shape(y_true) != np.shape(y_pred):
            raise ValueError(
                f"y_true and y_pred must have the same shape, got {np.shape(y_true)} and {np.shape(y_pred)}"
            )
        c = self.num_classes
        valid = (t >= 0) & (t < c) & (p >= 0) & (p < c)
        self.ignored += int(valid.size - np.count_nonzero(valid))
        idx = c * t[valid] + p[valid]
        self.matrix += np.bincount(idx, minlength=c * c).reshape(c, c)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts to this one (e.g. from another worker)."""
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge a {other.num_classes}-class confusion matrix into a {self.num_classes}-class one"
            )
        self.matrix += other.matrix
        self.ignored += other.ignored
        return self

    def reset(self) -> None:
        """Zero every count."""
        self.matrix[...] = 0
        self.ignored = 0

    # -- counts -------------------------------------------------------------------------------
    def total(self) -> int:
        """Number of counted pixels."""
        return int(self.matrix.sum())

    def true_positives(self) -> np.ndarray:
        return np.diag(self.matrix).copy()

    def false_positives(self) -> np.ndarray:
        """Pixels predicted as the class that belong to another one (column sum minus diagonal)."""
        return self.matrix.sum(axis=0) - np.diag(self.matrix)

    def false_negatives(self) -> np.ndarray:
        """Pixels of the class predicted as another one (row sum minus diagonal)."""
        return self.matrix.sum(axis=1) - np.diag(self.matrix)

    def support(self) -> np.ndarray:
        """True pixels per class (row sums)."""
        return self.matrix.sum(axis=1)

    def predicted(self) -> np.ndarray:
        """Predicted pixels per class (column sums)."""
        return self.matrix.sum(axis=0)

    def absent_classes(self) -> list[int]:
        """Classes that occur neither in the truth nor in the prediction: their IoU/F1 are undefined."""
        return [int(c) for c in np.flatnonzero((self.support() + self.predicted()) == 0)]

    # -- scores -------------------------------------------------------------------------------
    def pixel_accuracy(self) -> float:
        """Correct pixels / counted pixels (NaN if nothing was counted)."""
        return float(_safe_ratio(np.trace(self.matrix), self.total()))

    def iou(self) -> np.ndarray:
        """Per-class IoU = TP / (TP + FP + FN); NaN for absent classes."""
        tp = self.true_positives()
        return _safe_ratio(tp, tp + self.false_positives() + self.false_negatives())

    def f1(self) -> np.ndarray:
        """Per-class F1 (Dice) = 2 TP / (2 TP + FP + FN); NaN for absent classes."""
        tp = self.true_positives()
        return _safe_ratio(2 * tp, 2 * tp + self.false_positives() + self.false_negatives())

    def precision(self) -> np.ndarray:
        return _safe_ratio(self.true_positives(), self.predicted())

    def recall(self) -> np.ndarray:
        return _safe_ratio(self.true_positives(), self.support())

    def mean_iou(self) -> float:
        """Mean IoU over all classes present in the truth or the prediction."""
        return _nanmean(self.iou())

    def mean_iou_no_bg(self) -> float:
        """Mean IoU over the present foreground classes (background left out)."""
        return _nanmean(np.delete(self.iou(), BACKGROUND))

    def mean_f1_fg(self) -> float:
        """Mean F1 over the present foreground classes: the FaRL / SegFace convention."""
        return _nanmean(np.delete(self.f1(), BACKGROUND))

    def report(self, class_names: Sequence[str] = CLASSES) -> dict[str, Any]:
        """Summary figures and a per-class table as plain JSON-ready Python values (NaN -> None)."""
        if len(class_names) != self.num_classes:
            raise ValueError(f"expected {self.num_classes} class names, got {len(class_names)}")

        def num(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)

        iou, f1, support = self.iou(), self.f1(), self.support()
        absent = set(self.absent_classes())
        per_class: dict[str, dict[str, Any]] = {}
        for c, name in enumerate(class_names):
            per_class[str(name)] = {
                "iou": num(iou[c]),
                "f1": num(f1[c]),
                "support": int(support[c]),
                "absent": c in absent,
            }
        return {
            "pixel_accuracy": num(self.pixel_accuracy()),
            "mean_iou": num(self.mean_iou()),
            "mean_iou_no_bg": num(self.mean_iou_no_bg()),
            "mean_f1_fg": num(self.mean_f1_fg()),
            "num_pixels": self.total(),
            "ignored_pixels": int(self.ignored),
            "absent_classes": [str(class_names[c]) for c in sorted(absent)],
            "per_class": per_class,
            "left_right_confusion": left_right_confusion(self.matrix)
            if self.num_classes == NUM_CLASSES
            else None,
            "confusion_matrix": self.matrix.tolist(),
        }


def left_right_confusion(matrix: Any) -> dict[str, Any]:
    """The share of left/right pixels predicted as their mirror class (l_eye as r_eye, ...).

    ``rate``: over every true pixel of the classes that have a mirror (:data:`FLIP_PERMUTATION`; the
    lips are upper/lower, not left/right); ``parts``: the same per part (``eye``, ``brow``, ``ear``).
    ``None`` where no such pixel is true.
    """
    m = np.asarray(matrix, dtype=np.int64)
    if m.shape != (NUM_CLASSES, NUM_CLASSES):
        raise ValueError(f"expected a {NUM_CLASSES}x{NUM_CLASSES} confusion matrix, got shape {m.shape}")
    sided = [c for c in range(NUM_CLASSES) if FLIP_PERMUTATION[c] != c]
    swapped = {c: int(m[c, FLIP_PERMUTATION[c]]) for c in sided}
    support = {c: int(m[c].sum()) for c in sided}

    def rate(classes: list[int]) -> float | None:
        total = sum(support[c] for c in classes)
        return sum(swapped[c] for c in classes) / total if total else None

    parts: dict[str, list[int]] = {}
    for c in sided:
        parts.setdefault(CLASSES[c][2:], []).append(c)
    return {"rate": rate(sided), "parts": {name: rate(cs) for name, cs in parts.items()}}


def top_confusions(
    matrix: Any, k: int = 5, class_names: Sequence[str] = CLASSES
) -> list[tuple[str, str, float]]:
    """The ``k`` largest off-diagonal entries of the row-normalised matrix, as
    ``(true class, predicted class, fraction of the true class's pixels)``, largest first."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix shape {m.shape} does not match {len(class_names)} class names")
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    np.fill_diagonal(norm, 0.0)
    order = np.argsort(norm, axis=None, kind="stable")[::-1][: int(k)]
    pairs = [np.unravel_index(i, norm.shape) for i in order]
    return [(str(class_names[t]), str(class_names[p]), float(norm[t, p])) for t, p in pairs if norm[t, p] > 0]


def image_scores(y_true: Any, y_pred: Any, num_classes: int = NUM_CLASSES) -> dict[str, float]:
    """Pixel accuracy and mIoU of a single image (classes absent from that image left out)."""
    cm = ConfusionMatrix(num_classes).update(y_true, y_pred)
    return {"pixel_accuracy": cm.pixel_accuracy(), "mean_iou": cm.mean_iou()}


def per_batch_mean_iou(
    batches: Iterable[tuple[Any, Any]],
    num_classes: int = NUM_CLASSES,
    absent_value: float | None = None,
) -> float:
    """The mean over batches of each batch's own mIoU, as per-batch training metrics report it.

    ``batches`` yields ``(y_true, y_pred)`` pairs. Within a batch, a class absent from both truth
    and prediction is a 0/0: with ``absent_value=None`` it is left out of that batch's mean, else
    it counts as ``absent_value`` (0.0 drags the figure down, 1.0 inflates it). This is NOT the
    dataset-level mIoU: small classes weigh differently in every batch, so the two can differ a lot.
    """
    mats = [ConfusionMatrix(num_classes).update(t, p).matrix for t, p in batches]
    if not mats:
        raise ValueError("per_batch_mean_iou needs at least one (y_true, y_pred) batch")
    return per_batch_mean_iou_from_matrices(np.stack(mats), 1, absent_value)


def matrix_mean_iou(matrix: Any, absent_value: float | None = None) -> float:
    """mIoU of one confusion matrix; absent classes left out, or counted as ``absent_value``."""
    m = np.asarray(matrix, dtype=np.int64)
    cm = ConfusionMatrix(m.shape[0])
    cm.matrix = m
    iou = cm.iou()
    if absent_value is not None:
        iou = np.where(np.isnan(iou), float(absent_value), iou)
    return _nanmean(iou)


def per_batch_mean_iou_from_matrices(
    matrices: Any, batch_size: int = 1, absent_value: float | None = None
) -> float:
    """:func:`per_batch_mean_iou` from per-image (or per-batch) confusion matrices ``(N, C, C)``.

    Consecutive groups of ``batch_size`` matrices are summed into one batch each (the last one may
    be smaller), each batch's mIoU is taken, and those are averaged. ``batch_size=1`` is the mean
    per-image mIoU; ``batch_size >= N`` is the dataset-level mIoU.
    """
    m = np.asarray(matrices, dtype=np.int64)
    if m.ndim != 3 or m.shape[1] != m.shape[2] or m.shape[0] == 0:
        raise ValueError(
            f"expected a non-empty stack of square confusion matrices (N, C, C), got shape {m.shape}"
        )
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    b = int(batch_size)
    values = [matrix_mean_iou(m[i : i + b].sum(axis=0), absent_value) for i in range(0, len(m), b)]
    return _nanmean(np.array(values))
