"""Faces in a wide photo, framed as the training data: align, parse, paste the probabilities back.

The U-Net learns on CelebA-HQ crops: one upright face, centred, filling most of the square. Those
crops were cut from the in-the-wild CelebA photos with five landmarks, by the procedure published
with CelebA-HQ (Karras et al. 2018, appendix C; FFHQ uses the same): with ``e`` the eye midpoint,
``m`` the mouth midpoint, ``x`` the eye-to-eye and ``y`` the eye-to-mouth vector, the crop is the
square centred on ``e + 0.1 y``, turned so that ``x - rot90(y)`` is horizontal, of side
``max(4 |x|, 3.6 |y|)``. :func:`crop_transform` reproduces it; with the same landmarks the crop is
the one the training faces were made with.

:func:`parse_faces` does the whole trip for any photo: the faces' landmarks (MTCNN, see
:mod:`facesegm_utils.detect`, or given), each face warped into a crop at the model's input size
(``cv2.warpAffine``, padding beyond the frame's border by reflection), all crops through the one
prediction path :func:`facesegm_utils.prediction.predict_proba`, and the class PROBABILITIES warped
back with the inverse transform. Outside every crop the frame is background; where crops overlap,
each pixel takes the face that is more confident it is not background there. A photo without a
face is parsed whole, as with ``align="none"``, with a one-line notice.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from facesegm_utils import prediction
from facesegm_utils.labels import NUM_CLASSES

ALIGN_MODES: tuple[str, ...] = ("auto", "none")


def _rot90(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


def crop_quad(landmarks: np.ndarray) -> np.ndarray:
    """The CelebA-HQ crop of a face as a quad (4, 2) in frame pixels: top-left, bottom-left,
    bottom-right, top-right corners. ``landmarks`` (5, 2): eyes, nose, mouth corners (image left first)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2) or not np.isfinite(lm).all():
        raise ValueError(f"expected five finite (x, y) landmarks, got shape {lm.shape}")
    eye_avg = (lm[0] + lm[1]) * 0.5 + 0.5
    mouth_avg = (lm[3] + lm[4]) * 0.5 + 0.5
    eye_to_eye = lm[1] - lm[0]
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - _rot90(eye_to_mouth)
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = _rot90(x)
    c = eye_avg + eye_to_mouth * 0.1
    # the published procedure works in pixel corners (the + 0.5 above); back to pixel centres
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y]) - 0.5


def crop_transform(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 affine map from frame pixels to the ``size`` x ``size`` CelebA-HQ crop of the face."""
    quad = crop_quad(landmarks)[:3]
    corners = np.array([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    # solve [x y 1] A^T = corners for the three corners, in float64
    return np.linalg.solve(np.hstack([quad, np.ones((3, 1))]), corners).T


def transform_error(m: np.ndarray, frame_size: int, size: int) -> dict[str, float]:
    """How far ``m`` (frame -> crop) is from the plain resize of a ``frame_size`` square to ``size``.

    ``scale``: the crop's zoom relative to the resize (1 = same); ``rotation_deg``; ``shift``: how
    far the frame's centre lands from the crop's centre, as a fraction of the crop's side.
    """
    ratio = size / frame_size
    a = np.asarray(m, np.float64)
    centre = a[:, :2] @ np.full(2, (frame_size - 1) / 2) + a[:, 2]
    return {
        "scale": math.sqrt(abs(np.linalg.det(a[:, :2]))) / ratio,
        "rotation_deg": math.degrees(math.atan2(a[1, 0], a[0, 0])),
        "shift": float(np.hypot(*(centre - (size - 1) / 2)) / size),
    }


def warp_crop(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` crop ``m`` picks from ``image``, padded by reflection beyond its border.

    A face larger than the crop is warped at up to 4x the size and area-averaged down, so the
    crop is as smooth as the area-resized training images.
    """
    zoom = math.sqrt(abs(np.linalg.det(m[:, :2])))
    k = 1 if zoom >= 1 else min(4, math.ceil(1 / zoom))
    big = np.asarray(m, np.float64) * k
    big[:, 2] += (k - 1) / 2  # pixel centres of the k-times finer grid
    out = cv2.warpAffine(
        np.asarray(image, np.float32), big, (size * k, size * k), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )  # fmt: skip
    return out if k == 1 else cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)


def _region(m: np.ndarray, size: int, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The frame's pixel box (x0, y0, x1, y1) the crop covers, or None when it is off the frame."""
    inv = cv2.invertAffineTransform(m)
    c = np.array([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5], [size - 0.5, -0.5]])
    pts = c @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


def paste_back(
    proba: np.ndarray, m: np.ndarray, shape: tuple[int, int]
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
    """Crop probabilities (s, s, C) warped back into a frame of ``shape`` = (H, W) with ``m``'s inverse.

    Returns the frame box (x0, y0, x1, y1), the probabilities there and the coverage (0..1: how
    much of each pixel lies inside the crop); None when the crop misses the frame.
    """
    size = proba.shape[0]
    box = _region(m, size, shape)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    a = np.asarray(m, np.float64).copy()
    a[:, 2] += a[:, :2] @ np.array([x0, y0], np.float64)  # box pixel -> crop pixel
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    dsize = (x1 - x0, y1 - y0)
    parts = [
        cv2.warpAffine(np.ascontiguousarray(proba[..., i : i + 4]), a, dsize, flags=flags)
        for i in range(0, proba.shape[2], 4)
    ]
    back = np.concatenate([p[..., None] if p.ndim == 2 else p for p in parts], axis=2)
    cover = cv2.warpAffine(np.ones((size, size), np.float32), a, dsize, flags=flags)
    return box, back, cover


def combine(shape: tuple[int, int], pieces: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Frame probabilities (H, W, 19) from crops pasted back (``(proba, m)`` pairs): background
    outside every crop; where crops overlap, the face more confident of a face part there wins."""
    out = np.zeros((*shape, NUM_CLASSES), np.float32)
    out[..., 0] = 1.0
    best = np.zeros(shape, np.float32)
    for proba, m in pieces:
        pasted = paste_back(proba, m, shape)
        if pasted is None:
            continue
        (x0, y0, x1, y1), back, cover = pasted
        # ``back`` fades to 0 at the crop's edge (it is the crop's share of each pixel): fill with background
        blended = back
        blended[..., 0] += 1.0 - cover
        score = 1.0 - blended[..., 0]
        win = score > best[y0:y1, x0:x1]
        out[y0:y1, x0:x1][win] = blended[win]
        best[y0:y1, x0:x1][win] = score[win]
    return out


#: side of the upright crop in which :func:`find_landmarks` detects a second time
REFINE_SIZE = 192


def find_landmarks(image: np.ndarray, refine: bool = False) -> list[np.ndarray]:
    """The (5, 2) landmarks of each face MTCNN finds in ``image``, most confident first.

    With ``refine``, each face is detected a second time inside its own aligned crop (upright and
    ``REFINE_SIZE`` pixels wide) and those landmarks, mapped back into the photo, replace the first
    ones. Off by default: on ``bench_wild``'s tilted faces it brought the crop's corners 20% closer
    to the true crop but left the mIoU where it was (0.646 against 0.644), at twice MTCNN's cost.
    """
    from facesegm_utils import detect

    found = [f.landmarks for f in detect.detect_faces(image)]
    if not refine:
        return found
    refined = []
    for marks in found:
        m = crop_transform(marks, REFINE_SIZE)
        again = detect.detect_faces(warp_crop(image, m, REFINE_SIZE))
        if again:  # the face nearest the crop's centre
            centre = np.full(2, (REFINE_SIZE - 1) / 2)
            best = min(again, key=lambda f: float(np.hypot(*(f.landmarks[:2].mean(axis=0) - centre))))
            inv = cv2.invertAffineTransform(m)
            marks = best.landmarks @ inv[:, :2].T + inv[:, 2]
        refined.append(marks)
    return refined


def print_notice(message: str) -> None:
    """Print a one-line notice to stderr."""
    print(message, file=sys.stderr)


def parse_faces(
    model: Any,
    images: Sequence[np.ndarray],
    image_size: int | None = None,
    landmarks: Sequence[Sequence[np.ndarray]] | None = None,
    notice: Callable[[str], None] = print_notice,
) -> list[np.ndarray]:
    """Class probabilities (H, W, 19) for each RGB photo, each face parsed in its CelebA-HQ crop.

    ``landmarks``: per image, the (5, 2) landmarks of its faces; by default MTCNN finds them
    (:func:`find_landmarks`). An
    image without a face is parsed whole (as ``align="none"``) and ``notice`` gets one line.
    """
    size = prediction.input_size(model, image_size)
    if landmarks is None:
        landmarks = [find_landmarks(im) for im in images]
    transforms = [[crop_transform(lm, size) for lm in marks] for marks in landmarks]
    inputs = []
    for im, ms in zip(images, transforms, strict=True):
        if not ms:
            h, w = im.shape[:2]
            notice(f"no face found in a {w}x{h} image: parsing the whole frame (as align='none')")
        inputs.extend([warp_crop(im, m, size) for m in ms] if ms else [im])
    probs = iter(prediction.predict_proba(model, inputs, size))
    out = []
    for im, ms in zip(images, transforms, strict=True):
        if not ms:
            out.append(next(probs))
        else:
            out.append(combine(im.shape[:2], [(next(probs), m) for m in ms]))
    return out


def place_face(
    face: np.ndarray,
    labels: np.ndarray,
    landmarks: np.ndarray,
    frame_shape: tuple[int, int],
    height: float,
    angle_deg: float,
    centre: tuple[float, float],
    background: tuple[int, int, int] = (128, 128, 128),
    onto: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A square face crop pasted into a wider frame, with its known truth (for tests and benchmarks).

    The crop is area-resized so its side is ``height`` x the frame's height, turned by ``angle_deg``
    (counter-clockwise on screen) about its centre, which lands at ``centre`` = (x, y) in the frame;
    the rest of the frame is ``background``, or the frame and labels of ``onto`` (to place several
    faces). Returns the RGB uint8 frame, its label map (nearest;
    0 outside the crop) and the face's landmarks in frame pixels.
    """
    side = max(1, round(height * frame_shape[0]))
    small = cv2.resize(np.asarray(face, np.uint8), (side, side), interpolation=cv2.INTER_AREA)
    k = side / face.shape[0]
    small_labels = cv2.resize(labels, (side, side), interpolation=cv2.INTER_NEAREST_EXACT)
    m = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle_deg, 1.0)
    m[:, 2] += np.asarray(centre, np.float64) - (side - 1) / 2
    dsize = (frame_shape[1], frame_shape[0])
    if onto is None:
        onto = (np.full((*frame_shape, 3), background, np.uint8), np.zeros(frame_shape, np.uint8))
    frame, frame_labels = onto[0].copy(), onto[1].copy()
    cv2.warpAffine(small, m, dsize, frame, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
    cv2.warpAffine(
        small_labels, m, dsize, frame_labels, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_TRANSPARENT
    )
    small_marks = (np.asarray(landmarks, np.float64) + 0.5) * k - 0.5
    return frame, frame_labels, small_marks @ m[:, :2].T + m[:, 2]
