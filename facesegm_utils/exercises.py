"""Exercises at the end of each notebook: ``check(name, fn)`` tests a learner's function on small inputs.

Each notebook ends with an *Exercises* section. An exercise is a code cell tagged ``exercise`` that
holds a function stub for the learner and a ``check("NN.name", fn)`` call, and a code cell tagged
``solution`` that holds the reference solution and the same call. :func:`check` prints one line,
``✓`` or ``✗`` with a hint (what was expected, what came back), and never raises: a stub as shipped
prints ``✗`` and the notebook runs on. The expected values come from the package's own tested
functions (``labels``, ``celebamask``, ``model``, ``losses``, ``metrics``, ``recolor``) or from small
inputs worked out by hand.

The learner's working copies (``make lab``) leave the solution cells out (:func:`strip_solutions`);
the site shows them collapsed. ``tests/test_exercises.py`` runs every check against the reference
solution (it must pass) and against the stub as shipped (it must fail).

Nothing runs at import; TensorFlow/Keras are imported only by the checks that need them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from facesegm_utils.labels import NUM_CLASSES

#: tag of a learner's exercise cell (stub + check) and of its hidden reference solution
EXERCISE_TAG = "exercise"
SOLUTION_TAG = "solution"


class Mismatch(Exception):
    """A learner's answer differs from the expected one; the message is the hint."""


@dataclass(frozen=True)
class Outcome:
    """What one check found: passed or not, and a one-line message."""

    name: str
    passed: bool
    message: str

    @property
    def line(self) -> str:
        return f"{'✓' if self.passed else '✗'} {self.name}: {self.message}"


def check(name: str, fn: Callable[..., Any]) -> None:
    """Test ``fn`` for exercise ``name``; print ``✓`` or ``✗`` with a hint. Never raises.

    Returns nothing, so a notebook cell ending with the call shows only the printed line.
    """
    print(run_check(name, fn).line, flush=True)


def run_check(name: str, fn: Callable[..., Any]) -> Outcome:
    """The outcome of exercise ``name``'s check on ``fn`` (every exception becomes a failed outcome)."""
    checker = CHECKS.get(name)
    if checker is None:
        return Outcome(name, False, f"no such exercise; expected one of {', '.join(CHECKS)}")
    if not callable(fn):
        return Outcome(name, False, f"expected your function, got {type(fn).__name__}")
    try:
        done = checker(fn)
    except Mismatch as exc:
        return Outcome(name, False, str(exc))
    except NotImplementedError:
        return Outcome(name, False, "not done yet: replace `raise NotImplementedError` with your code")
    except Exception as exc:  # the learner's code failed: say how, never raise in the notebook
        return Outcome(name, False, f"your function raised {type(exc).__name__}: {exc}")
    return Outcome(name, True, f"correct ({done})")


# ------------------------------------------------------------------------------------------ helpers


def _show(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return np.array2string(value, precision=3, suppress_small=True, max_line_width=200, threshold=60)
    if isinstance(value, float):
        return f"{value:.4f}"
    return repr(value)


def _array(got: Any, expected: np.ndarray, what: str, atol: float = 1e-6) -> np.ndarray:
    """``got`` as an array equal to ``expected`` (NaN where it is NaN), else a :class:`Mismatch`."""
    if got is None:
        raise Mismatch(f"{what}: expected an array of shape {expected.shape}, got None (a missing `return`?)")
    arr = np.asarray(got, dtype=np.float64)
    if arr.shape != expected.shape:
        raise Mismatch(f"{what}: expected shape {expected.shape}, got shape {arr.shape}")
    if not np.allclose(arr, expected, atol=atol, rtol=1e-5, equal_nan=True):
        raise Mismatch(f"{what}: expected {_show(expected)}, got {_show(arr)}")
    return arr


def _number(got: Any, expected: float, what: str, atol: float = 1e-5) -> float:
    try:
        value = float(got)
    except (TypeError, ValueError):
        raise Mismatch(f"{what}: expected a number ({expected:.4f}), got {got!r}") from None
    if not math.isclose(value, expected, abs_tol=atol, rel_tol=1e-5):
        raise Mismatch(f"{what}: expected {expected:.4f}, got {value:.4f}")
    return value


def _close(got: Any, other: Any) -> bool:
    try:
        return bool(np.allclose(np.asarray(got, dtype=np.float64), other, atol=1e-5, equal_nan=True))
    except (TypeError, ValueError):
        return False


def to_lab(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (..., 3) -> CIELAB float32, L in 0..100 (a helper the exercises of notebook 06 may use)."""
    return cv2.cvtColor(np.asarray(image, dtype=np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB float (..., 3), L in 0..100 -> RGB uint8, rounded and clipped (the inverse of :func:`to_lab`)."""
    rgb = cv2.cvtColor(np.asarray(lab, dtype=np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- 01 data exploration

#: three tiny label maps: background everywhere, skin in two, a one-pixel left eye in one, hair in one
_MAPS_01 = [
    np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 4, 0], [0, 0, 0, 0]]),
    np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]),
    np.array([[13, 13, 13, 13], [13, 13, 13, 13], [13, 0, 0, 13], [0, 0, 0, 0]]),
]
_PRESENCE_01 = np.zeros(NUM_CLASSES)
_PRESENCE_01[[0, 1, 4, 13]] = [1.0, 2 / 3, 1 / 3, 1 / 3]
_FREQUENCY_01 = np.zeros(NUM_CLASSES)
_FREQUENCY_01[[0, 1, 4, 13]] = np.array([26, 11, 1, 10]) / 48


def _check_presence(fn: Callable[..., Any]) -> str:
    got = fn([m.copy() for m in _MAPS_01])
    if _close(got, _FREQUENCY_01):
        raise Mismatch(
            "that is the pixel frequency; presence counts each face once: in how many maps a class appears"
        )
    _array(got, _PRESENCE_01, "presence of 3 small maps")
    return "3 label maps, 4 classes present"


def _check_frequency(fn: Callable[..., Any]) -> str:
    got = fn([m.copy() for m in _MAPS_01])
    if _close(got, _PRESENCE_01):
        raise Mismatch("that is the presence; frequency is the share of all pixels (it sums to 1)")
    _array(got, _FREQUENCY_01, "pixel frequency of 3 small maps")
    return "3 label maps, 48 pixels"


# ----------------------------------------------------------------------------- 02 mask generation


def _check_resize(fn: Callable[..., Any]) -> str:
    from facesegm_utils.celebamask import resize_nearest

    rng = np.random.default_rng(2)
    for shape, size in (((7, 7), 3), ((5, 5), 8), ((9, 9), 4), ((5, 7), 4)):
        label = rng.integers(0, NUM_CLASSES, shape).astype(np.uint8)
        got = fn(label.copy(), size)
        expected = resize_nearest(label, size)
        corner = label[np.arange(size) * shape[0] // size][:, np.arange(size) * shape[1] // size]
        if _close(got, corner) and not _close(corner, expected):
            raise Mismatch(
                f"{shape} -> {size}: you sampled at pixel corners (i * n / size); "
                "use the pixel centres ((i + 0.5) * n / size)"
            )
        _array(got, expected, f"{shape[0]}x{shape[1]} -> {size}x{size}")
        if not set(np.unique(np.asarray(got))) <= set(np.unique(label)):
            raise Mismatch("the resized map holds ids that the original does not: it must only copy ids")
    return "4 sizes, up and down"


def _check_flip(fn: Callable[..., Any]) -> str:
    from facesegm_utils.labels import flip_labels

    label = np.random.default_rng(3).permutation(np.arange(20) % NUM_CLASSES).reshape(4, 5).astype(np.uint8)
    got = fn(label.copy())
    if _close(got, label[:, ::-1]):
        raise Mismatch(
            "mirrored, but a flipped left eye is a right eye: swap l_eye/r_eye, l_brow/r_brow, l_ear/r_ear"
        )
    _array(got, flip_labels(label), "flip of a 4x5 map holding every class")
    return "a 4x5 map holding all 19 classes"


# -------------------------------------------------------------------------------- 03 U-Net building


def _unet_encoder_layers(levels: int) -> list[tuple[int, int]]:
    """(kernel, stride) of the plain U-Net's encoder up to level ``levels``: 2 convs 3x3, 2x2 pooling between."""
    layers: list[tuple[int, int]] = []
    for level in range(levels):
        layers += [(2, 2)] if level else []
        layers += [(3, 1), (3, 1)]
    return layers


def _check_receptive_field(fn: Callable[..., Any]) -> str:
    from facesegm_utils.model import receptive_field

    cases = [([(3, 1)], 3), ([(3, 1), (3, 1)], 5), ([(2, 2), (3, 1)], 6), ([(3, 2), (3, 2), (3, 1)], 15)]
    cases += [(_unet_encoder_layers(n), receptive_field(depth=4)[f"enc{n}"]) for n in (1, 2, 3, 4)]
    for layers, expected in cases:
        _number(fn(list(layers)), expected, f"receptive field of {layers}", atol=0)
    return "4 small stacks and the U-Net's 4 encoder stages (model.receptive_field)"


def _check_conv_params(fn: Callable[..., Any]) -> str:
    import keras

    for kernel, c_in, c_out in ((3, 3, 8), (3, 8, 16), (1, 16, 19), (5, 2, 4)):
        layer = keras.layers.Conv2D(c_out, kernel)
        layer.build((None, 32, 32, c_in))
        got, expected = fn(kernel, c_in, c_out), layer.count_params()
        if _close(got, kernel * kernel * c_in * c_out):
            raise Mismatch(
                f"Conv2D({c_out}, {kernel}) on {c_in} channels: you forgot the biases (one per filter)"
            )
        _number(got, expected, f"Conv2D({c_out}, {kernel}) on {c_in} channels", atol=0)
    return "4 layers, counted by Keras"


# ------------------------------------------------------------------------------------- 04 training


def _batch_04(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels (2, 3, 3) over 4 classes (class 3 neither true nor predicted) and softmax probabilities."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, (2, 3, 3))
    logits = rng.normal(size=(2, 3, 3, 4)) + 2.0 * np.eye(4)[labels]
    logits[..., 3] -= 6.0
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return labels, probs


def _check_dice(fn: Callable[..., Any]) -> str:
    from facesegm_utils import losses

    for seed in (0, 1):
        labels, probs = _batch_04(seed)
        expected = float(losses.soft_dice_loss(labels, np.log(probs), smooth=1.0))
        got = fn(labels.copy(), probs.copy(), 1.0)
        onehot = np.eye(4)[labels]
        dice = (2 * (probs * onehot).sum((0, 1, 2)) + 1) / (probs.sum((0, 1, 2)) + onehot.sum((0, 1, 2)) + 1)
        if _close(got, 1 - dice.mean()) and not math.isclose(expected, 1 - dice.mean()):
            raise Mismatch(
                "you averaged over every class; leave out a class that is neither in the labels nor "
                f"predicted (expected {expected:.4f}, got {float(got):.4f})"
            )
        _number(got, expected, f"Dice loss of a 2x3x3 batch, 4 classes (seed {seed})")
    return "2 batches with an absent class, against losses.soft_dice_loss"


def _check_weighted_ce(fn: Callable[..., Any]) -> str:
    from facesegm_utils import losses

    weights = np.array([0.5, 2.0, 4.0, 1.0])
    for seed in (0, 1):
        labels, probs = _batch_04(seed)
        ce = np.asarray(losses.pixel_cross_entropy(labels, np.log(probs), weights))
        got = fn(labels.copy(), probs.copy(), weights.copy())
        w = weights[labels]
        if _close(got, float((w * ce * w.mean() / w).mean())) and not _close(got, ce.mean()):
            raise Mismatch(
                "divide by the weights' sum over the pixels, so the loss's scale does not depend on them"
            )
        _number(got, float(ce.mean()), f"weighted cross-entropy of a 2x3x3 batch (seed {seed})")
    return "2 batches, against losses.pixel_cross_entropy"


# ----------------------------------------------------------------------------------- 05 evaluation


def _matrices_05() -> np.ndarray:
    """Per-image confusion matrices (6, 4, 4) of small random predictions; class 3 never occurs."""
    from facesegm_utils.metrics import ConfusionMatrix

    rng = np.random.default_rng(5)
    out = []
    for i in range(6):
        truth = rng.integers(0, 3 if i % 2 else 2, (4, 4))
        pred = np.where(rng.random((4, 4)) < 0.7, truth, rng.integers(0, 3, (4, 4)))
        out.append(ConfusionMatrix(4).update(truth, pred).matrix)
    return np.stack(out)


def _check_iou_f1(fn: Callable[..., Any]) -> str:
    from facesegm_utils.metrics import ConfusionMatrix

    for m in (_matrices_05().sum(0), np.array([[2, 1, 0], [1, 2, 0], [0, 1, 2]])):
        cm = ConfusionMatrix(len(m))
        cm.matrix = m.astype(np.int64)
        got = fn(m.copy())
        if not (isinstance(got, tuple | list) and len(got) == 2):
            raise Mismatch(f"expected a pair (iou, f1) of arrays, got {type(got).__name__}")
        if np.isnan(cm.iou()).any() and _close(got[0], np.nan_to_num(cm.iou())):
            raise Mismatch("a class in neither truth nor prediction has no IoU: return NaN (0/0), not 0")
        _array(got[0], cm.iou(), f"IoU of {_show(m)}")
        _array(got[1], cm.f1(), f"F1 of {_show(m)}")
    return "2 matrices, one with an absent class, against metrics.ConfusionMatrix"


def _check_dataset_miou(fn: Callable[..., Any]) -> str:
    from facesegm_utils import metrics

    matrices = _matrices_05()
    expected = metrics.matrix_mean_iou(matrices.sum(0))
    got = fn(matrices.copy())
    for b in (1, 2, 3):
        per_batch = metrics.per_batch_mean_iou_from_matrices(matrices, b)
        if _close(got, per_batch) and not math.isclose(per_batch, expected):
            raise Mismatch(
                f"that is a mean of per-batch mIoUs (batches of {b}: {per_batch:.4f}); sum the matrices "
                f"first and take one mIoU (expected {expected:.4f})"
            )
    _number(got, expected, "mIoU of 6 images' confusion matrices")
    return "6 images, against metrics.matrix_mean_iou of the summed matrix"


# ------------------------------------------------------------------------------------ 06 recolour


def _texture_06(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 24x24 brownish image with strand-like texture, and a boolean 'hair' mask over its top half."""
    rng = np.random.default_rng(seed)
    stripes = 25 * np.sin(np.arange(24) * 1.3)[None, :] + rng.normal(0, 6, (24, 24))
    image = np.clip(np.array([70.0, 50.0, 40.0]) + stripes[..., None], 0, 255).astype(np.uint8)
    mask = np.zeros((24, 24), bool)
    mask[:12, 3:21] = True
    return image, mask


def _check_mean_lightness(fn: Callable[..., Any]) -> str:
    from facesegm_utils.recolor import mean_lightness

    image, mask = _texture_06(0)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (5, 5), 1.5)
    for name, weight in (("a boolean mask", mask), ("soft weights", soft)):
        expected = mean_lightness(image, weight)
        got = fn(image.copy(), weight.copy())
        if _close(got, expected * 2.55):
            raise Mismatch(f"{name}: that is L on OpenCV's 0..255 scale; CIELAB lightness runs 0..100")
        _number(got, expected, f"mean lightness under {name}", atol=1e-3)
    return "a boolean mask and soft weights, against recolor.mean_lightness"


def _check_recolor_lab(fn: Callable[..., Any]) -> str:
    for seed, color in ((0, (212, 168, 75)), (1, (176, 32, 74))):
        image, mask = _texture_06(seed)
        got = fn(image.copy(), mask.copy(), color)
        if not (isinstance(got, np.ndarray) and got.shape == image.shape and got.dtype == np.uint8):
            raise Mismatch(f"expected an RGB uint8 image of shape {image.shape}, got {_show(got)[:80]}")
        if (got[~mask] != image[~mask]).any():
            raise Mismatch("pixels outside the mask changed: leave them exactly as they were")
        _check_lab_part(to_lab(image)[mask], to_lab(got)[mask], to_lab(np.uint8([[color]]))[0, 0], color)
    return "2 textured images and colours: lightness, chroma and texture"


def _check_lab_part(before: np.ndarray, after: np.ndarray, target: np.ndarray, color: tuple) -> None:
    if abs(after[:, 0].mean() - target[0]) > 2.5:
        raise Mismatch(
            f"{color}: the part's mean L should become {target[0]:.1f}, got {after[:, 0].mean():.1f}"
        )
    if np.abs(after[:, 1:].mean(0) - target[1:]).max() > 4:
        raise Mismatch(
            f"{color}: the part's (a, b) should be {_show(target[1:])}, got {_show(after[:, 1:].mean(0))}"
        )
    spread = after[:, 0].std() / max(before[:, 0].std(), 1e-6)
    if not 0.8 < spread < 1.25 or np.corrcoef(before[:, 0], after[:, 0])[0, 1] < 0.9:
        raise Mismatch(
            f"{color}: the texture is lost: keep each pixel's L minus the mean (L spread kept x{spread:.2f})"
        )


# ------------------------------------------------------------------------------------ 07 export


def _probabilities_07(seed: int, shape: tuple[int, int, int] = (6, 5, 4)) -> tuple[np.ndarray, np.ndarray]:
    """Two probability maps: ``p`` and a slightly perturbed ``q`` (a few arg-max flips)."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(shape[2]), size=shape[:2]).astype(np.float32)
    q = np.clip(p + rng.normal(0, 0.05, p.shape), 1e-6, None).astype(np.float32)
    return p, q / q.sum(axis=2, keepdims=True)


def _check_parity(fn: Callable[..., Any]) -> str:
    for seed in (0, 1, 2):
        p, q = _probabilities_07(seed)
        agreement = float(np.mean(p.argmax(2) == q.argmax(2)))
        worst = float(np.abs(p - q).max())
        got = fn(p.copy(), q.copy())
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise Mismatch(f"expected a pair (agreement, largest difference), got {_show(got)[:80]}")
        if _close(got[0], 100 * agreement):
            raise Mismatch("that agreement is a percentage: return the fraction of pixels, 0..1")
        if _close(got[0], agreement * p.shape[0] * p.shape[1]):
            raise Mismatch("that agreement is a count of pixels: return the fraction, 0..1")
        _number(got[0], agreement, "argmax agreement")
        _number(got[1], worst, "largest probability difference (any pixel, any class)")
    return "3 pairs of probability maps"


def _check_centre_crop(fn: Callable[..., Any]) -> str:
    for h, w in ((6, 10), (9, 4), (5, 5), (7, 12)):
        image = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        expected = image[top : top + side, left : left + side]
        got = fn(image.copy())
        if got is None or np.shape(got) != expected.shape:
            raise Mismatch(f"{h}x{w} image: expected a {side}x{side}x3 crop, got shape {np.shape(got)}")
        if not np.array_equal(got, expected):
            raise Mismatch(f"{h}x{w} image: the square must be centred (offset {top} rows, {left} columns)")
    return "landscape, portrait and square images"


#: exercise name -> its check (returns what it tested; raises Mismatch with a hint)
CHECKS: dict[str, Callable[[Callable[..., Any]], str]] = {
    "01.presence": _check_presence,
    "01.frequency": _check_frequency,
    "02.resize_nearest": _check_resize,
    "02.flip": _check_flip,
    "03.receptive_field": _check_receptive_field,
    "03.conv_params": _check_conv_params,
    "04.dice": _check_dice,
    "04.weighted_ce": _check_weighted_ce,
    "05.iou_f1": _check_iou_f1,
    "05.dataset_miou": _check_dataset_miou,
    "06.mean_lightness": _check_mean_lightness,
    "06.recolor_lab": _check_recolor_lab,
    "07.parity": _check_parity,
    "07.centre_crop": _check_centre_crop,
}


# ------------------------------------------------------------------------------ notebooks


def strip_solutions(nb: Any) -> Any:
    """A copy of notebook ``nb`` (nbformat) without the cells tagged ``solution``: the learner's copy."""
    import copy

    out = copy.deepcopy(nb)
    out.cells = [c for c in out.cells if SOLUTION_TAG not in c.get("metadata", {}).get("tags", [])]
    return out
