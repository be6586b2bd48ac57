"""The one prediction path: images of any size in, class probabilities at each image's own size out.

Every caller that turns a trained U-Net's output into a prediction goes through
:func:`predict_proba`: ``facesegm evaluate --model`` (the course's test score, notebook 05),
``facesegm predict``, :class:`~facesegm_utils.inference.FaceParser`, recolouring and the notebooks.
So a model gets one score, whichever way it is asked.

The recipe: each image is resized to the model's (square) input size (area averaging when
shrinking, bilinear when enlarging, as ``facesegm prepare`` resized the training images), the
logits are turned into probabilities, and the PROBABILITIES are resized back to the image's own
size (bilinear when enlarging). The arg-max of those probabilities is the label map.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facesegm_utils.fileio import FacesegmError
from facesegm_utils.labels import NUM_CLASSES

COLOR_ORDERS: tuple[str, ...] = ("rgb", "bgr")


def to_rgb(image: np.ndarray, color_order: str = "rgb") -> np.ndarray:
    """Normalise one image to RGB float32 (H, W, 3) in 0..255, the scale the U-Net takes.

    Accepts grey (H, W) or (H, W, 1), 3 channels (RGB, or BGR with ``color_order="bgr"``) and
    4 channels (RGBA/BGRA: alpha dropped); uint8 (0..255) or float arrays, read as 0..1 when their
    maximum is <= 1 and as 0..255 otherwise. Anything else raises ``ValueError``.
    """
    if color_order not in COLOR_ORDERS:
        raise ValueError(f"unknown color_order {color_order!r}; expected one of {', '.join(COLOR_ORDERS)}")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., :3]
        if color_order == "bgr":
            arr = arr[..., ::-1]
    else:
        raise ValueError(
            f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image is empty: shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ValueError("image contains NaN or infinity")
        lo, hi = float(out.min()), float(out.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"float image values must be in [0, 1] or [0, 255], got [{lo:.3g}, {hi:.3g}]")
        return out * 255.0 if hi <= 1.0 else out
    raise ValueError(f"expected a uint8 or float image, got dtype {arr.dtype}")


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float32."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def resize_proba(proba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize class probabilities (h, w, C) to ``size`` = (H, W): bilinear when enlarging, area
    averaging when shrinking. Both are convex combinations, so each pixel still sums to 1."""
    h, w = size
    if proba.shape[:2] == (h, w):
        return proba
    if h >= proba.shape[0] and w >= proba.shape[1]:
        return cv2.resize(proba, (w, h), interpolation=cv2.INTER_LINEAR)
    # OpenCV's area resize takes at most 4 channels at a time
    parts = []
    for i in range(0, proba.shape[2], 4):
        chunk = cv2.resize(np.ascontiguousarray(proba[..., i : i + 4]), (w, h), interpolation=cv2.INTER_AREA)
        parts.append(chunk[..., None] if chunk.ndim == 2 else chunk)
    return np.concatenate(parts, axis=2)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized to ``size`` x ``size``: area averaging when shrinking, bilinear when enlarging."""
    if image.shape[:2] == (size, size):
        return image
    shrink = min(image.shape[:2]) > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def load(model: str | os.PathLike[str] | Any) -> Any:
    """A Keras model: ``model`` itself if already loaded, else the ``.keras`` file (or run folder) loaded.

    A missing file raises ``FileNotFoundError``; a damaged one ``FacesegmError`` naming it.
    """
    if hasattr(model, "predict_on_batch"):
        return model
    from facesegm_utils.runs import load_model

    path = Path(model)
    try:
        return load_model(path, compile=False)
    except (FileNotFoundError, FacesegmError):
        raise
    except Exception as exc:  # keras raises many types for a damaged file
        raise FacesegmError(
            f"could not load model {path}: {exc.__class__.__name__}: {exc} "
            "(expected a .keras file written by `facesegm train`)"
        ) from None


def input_size(model: Any, image_size: int | None = None) -> int:
    """The square input size of ``model`` (checked: RGB input, 19 class outputs).

    ``image_size`` is needed only for a model that accepts any size.
    """
    shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
    if len(shape) != 4 or shape[3] != 3:
        raise FacesegmError(f"expected a model taking (B, S, S, 3) RGB images, got input shape {shape}")
    out = model.output_shape[0] if isinstance(model.output_shape, list) else model.output_shape
    if out[-1] != NUM_CLASSES:
        raise FacesegmError(f"expected a model with {NUM_CLASSES} output classes, got output shape {out}")
    if shape[1] is not None and shape[2] is not None:
        if shape[1] != shape[2]:
            raise FacesegmError(f"expected a square model input, got {shape[1]}x{shape[2]}")
        return int(shape[1])
    if image_size is None:
        raise FacesegmError("the model accepts any input size: pass image_size=...")
    return int(image_size)


def predict_proba(
    model: Any, images: Sequence[np.ndarray], image_size: int | None = None
) -> list[np.ndarray]:
    """Class probabilities (H, W, 19) float32 for each image at its own size, in one model call.

    ``images`` are RGB float/uint8 in 0..255 (see :func:`to_rgb`), of any sizes; ``model`` a loaded
    Keras model (see :func:`load`). Each pixel's probabilities sum to 1.
    """
    if not len(images):
        return []
    s = input_size(model, image_size)
    x = np.stack([resize_image(np.asarray(im, dtype=np.float32), s) for im in images])
    logits = np.asarray(model.predict_on_batch(x), dtype=np.float32)
    if logits.shape != (len(images), s, s, NUM_CLASSES):
        raise FacesegmError(
            f"model returned logits of shape {logits.shape}, expected (B, {s}, {s}, {NUM_CLASSES})"
        )
    small = softmax(logits)
    return [resize_proba(p, im.shape[:2]) for im, p in zip(images, small, strict=True)]


def predict_labels(
    model: Any, images: Sequence[np.ndarray], image_size: int | None = None
) -> list[np.ndarray]:
    """Label maps (H, W) uint8 at each image's own size: the arg-max of :func:`predict_proba`."""
    return [np.argmax(p, axis=2).astype(np.uint8) for p in predict_proba(model, images, image_size)]
