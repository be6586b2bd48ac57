"""Segmentation losses on logits: sparse cross-entropy (optionally class-weighted), soft Dice, and both.

``keras.ops`` only (no TensorFlow import), so they run under any Keras backend. Every loss takes
sparse labels of shape (B, H, W) or (B, H, W, 1) (any integer or float dtype) and float logits of
shape (B, H, W, C); logits are cast to float32 first, so mixed-precision models are safe.

**Classes absent from a batch (Dice).** The soft Dice of class ``c`` over the whole batch is
``(2 * sum(p_c * t_c) + s) / (sum(p_c) + sum(t_c) + s)`` with ``s`` the smoothing term. The loss is
``1 -`` the mean of that over the classes that are *present*: in the ground truth, or in the
prediction (the argmax picks them somewhere in the batch). A class that is neither in the truth nor
predicted has no meaningful overlap and is left out of the mean, rather than counted as a free
``dice = 1`` that would dilute the loss (with 19 classes and a few per face, a completely wrong
prediction would otherwise score a loss near 2/19 instead of near 1). A class that is predicted but
absent does count, with a Dice near 0, so false positives are punished. This mirrors how the
dataset-level mIoU ignores classes absent from both truth and prediction.

**Class weights apply to the cross-entropy only.** Dice already gives every present class an equal
vote, whatever its size; weighting it again (with median-frequency weights clipped at 10, most small
classes hit the cap) would make hair count about 1/22 as much as a brow. So :class:`CEDiceLoss` weights
its cross-entropy term and leaves its Dice term unweighted, and :func:`get_loss` builds an unweighted
Dice for ``"dice"``. :class:`SoftDiceLoss` still accepts ``class_weights`` for experiments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from facesegm_utils.labels import NUM_CLASSES

LOSS_NAMES: tuple[str, ...] = ("ce", "dice", "ce+dice")


def _sparse_labels(y_true: Any, y_pred: Any) -> Any:
    """Labels as int32 (B, H, W) whether they came as (B, H, W) or (B, H, W, 1)."""
    if len(y_true.shape) == len(y_pred.shape):
        if y_true.shape[-1] not in (1, None):
            raise ValueError(
                f"sparse labels must have shape (B, H, W) or (B, H, W, 1), got {tuple(y_true.shape)} "
                f"for logits of shape {tuple(y_pred.shape)}"
            )
        y_true = ops.squeeze(y_true, axis=-1)
    elif len(y_true.shape) != len(y_pred.shape) - 1:
        raise ValueError(
            f"labels of shape {tuple(y_true.shape)} do not match logits of shape {tuple(y_pred.shape)}: "
            "expected labels (B, H, W) or (B, H, W, 1) for logits (B, H, W, C)"
        )
    return ops.cast(y_true, "int32")


def _weights_tuple(class_weights: Sequence[float] | None) -> tuple[float, ...] | None:
    if class_weights is None:
        return None
    weights = tuple(float(w) for w in class_weights)
    if any(not (w >= 0) for w in weights) or not any(w > 0 for w in weights):
        raise ValueError(f"class_weights must be non-negative finite numbers, not all zero; got {weights}")
    return weights


def _check_classes(weights: tuple[float, ...] | None, num_classes: int) -> None:
    if weights is not None and len(weights) != num_classes:
        raise ValueError(f"class_weights has {len(weights)} entries; expected one per class ({num_classes})")


def pixel_cross_entropy(y_true: Any, y_pred: Any, class_weights: Sequence[float] | None = None) -> Any:
    """Per-pixel cross-entropy (B, H, W) from logits.

    With ``class_weights`` each pixel's loss is multiplied by the weight of its true class and the
    weights are normalised to average 1 over the batch's pixels, so the loss's mean is
    ``sum(w * ce) / sum(w)`` and its scale does not depend on the weights' overall size.
    """
    logits = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    labels = _sparse_labels(y_true, logits)
    num_classes = logits.shape[-1]
    log_probs = ops.log_softmax(logits, axis=-1)
    onehot = ops.one_hot(labels, num_classes, dtype="float32")
    ce = -ops.sum(onehot * log_probs, axis=-1)
    if class_weights is not None:
        weights = _weights_tuple(class_weights)
        _check_classes(weights, num_classes)
        w = ops.take(ops.convert_to_tensor(weights, dtype="float32"), labels)
        ce = ce * w / ops.maximum(ops.mean(w), 1e-12)
    return ce


def soft_dice_per_class(y_true: Any, y_pred: Any, smooth: float = 1.0) -> tuple[Any, Any]:
    """Per-class soft Dice over the whole batch and the 0/1 mask of classes present (truth or argmax)."""
    logits = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    labels = _sparse_labels(y_true, logits)
    num_classes = logits.shape[-1]
    probs = ops.softmax(logits, axis=-1)
    onehot = ops.one_hot(labels, num_classes, dtype="float32")
    axes = tuple(range(len(probs.shape) - 1))
    intersection = ops.sum(probs * onehot, axis=axes)
    pred_mass = ops.sum(probs, axis=axes)
    true_mass = ops.sum(onehot, axis=axes)
    dice = (2.0 * intersection + smooth) / (pred_mass + true_mass + smooth)
    predicted = ops.sum(ops.one_hot(ops.argmax(logits, axis=-1), num_classes, dtype="float32"), axis=axes)
    present = ops.cast(ops.logical_or(true_mass > 0, predicted > 0), "float32")
    return dice, ops.stop_gradient(present)


def soft_dice_loss(
    y_true: Any, y_pred: Any, smooth: float = 1.0, class_weights: Sequence[float] | None = None
) -> Any:
    """``1 -`` the (optionally class-weighted) mean soft Dice over the classes present (a scalar)."""
    dice, present = soft_dice_per_class(y_true, y_pred, smooth)
    weights = present
    if class_weights is not None:
        w = _weights_tuple(class_weights)
        _check_classes(w, dice.shape[-1])
        weights = present * ops.convert_to_tensor(w, dtype="float32")
    return 1.0 - ops.sum(dice * weights) / ops.maximum(ops.sum(weights), 1e-12)


# ------------------------------------------------------------------------------------ Loss classes
@keras.saving.register_keras_serializable(package="facesegm")
class SparseCrossEntropy(keras.losses.Loss):
    """Sparse categorical cross-entropy from logits with optional per-class weights (see
    :func:`pixel_cross_entropy`). Returns per-pixel values, so a per-pixel ``sample_weight`` also works."""

    def __init__(
        self, class_weights: Sequence[float] | None = None, name: str = "sparse_ce", **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.class_weights = _weights_tuple(class_weights)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return pixel_cross_entropy(y_true, y_pred, self.class_weights)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"class_weights": list(self.class_weights) if self.class_weights else None})
        return config


@keras.saving.register_keras_serializable(package="facesegm")
class SoftDiceLoss(keras.losses.Loss):
    """Multi-class soft Dice loss over the batch (see the module docstring for absent classes)."""

    def __init__(
        self,
        smooth: float = 1.0,
        class_weights: Sequence[float] | None = None,
        name: str = "soft_dice",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if not smooth >= 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.smooth = float(smooth)
        self.class_weights = _weights_tuple(class_weights)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return soft_dice_loss(y_true, y_pred, self.smooth, self.class_weights)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {"smooth": self.smooth, "class_weights": list(self.class_weights) if self.class_weights else None}
        )
        return config


@keras.saving.register_keras_serializable(package="facesegm")
class CEDiceLoss(keras.losses.Loss):
    """``ce_weight * cross-entropy + dice_weight * soft Dice``; class weights apply to the cross-entropy only."""

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        class_weights: Sequence[float] | None = None,
        name: str = "ce_dice",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if ce_weight < 0 or dice_weight < 0 or ce_weight + dice_weight <= 0:
            raise ValueError(
                f"ce_weight and dice_weight must be >= 0, not both 0; got {ce_weight}, {dice_weight}"
            )
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)
        self.class_weights = _weights_tuple(class_weights)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ce = ops.mean(pixel_cross_entropy(y_true, y_pred, self.class_weights))
        dice = soft_dice_loss(y_true, y_pred, self.smooth)
        return self.ce_weight * ce + self.dice_weight * dice

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "ce_weight": self.ce_weight,
                "dice_weight": self.dice_weight,
                "smooth": self.smooth,
                "class_weights": list(self.class_weights) if self.class_weights else None,
            }
        )
        return config


def get_loss(
    name: str, class_weights: Sequence[float] | None = None, num_classes: int = NUM_CLASSES
) -> keras.losses.Loss:
    """The loss called ``name`` (``"ce"``, ``"dice"`` or ``"ce+dice"``); ``class_weights`` weight the
    cross-entropy (``"ce"`` and the CE term of ``"ce+dice"``) and never the Dice term."""
    key = name.strip().lower().replace(" ", "")
    weights = _weights_tuple(class_weights)
    _check_classes(weights, num_classes)
    if key == "ce":
        return SparseCrossEntropy(class_weights=weights)
    if key == "dice":
        return SoftDiceLoss()  # Dice is class-balanced by construction
    if key in ("ce+dice", "dice+ce"):
        return CEDiceLoss(class_weights=weights)
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSS_NAMES)}")
