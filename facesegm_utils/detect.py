"""Face detection with five landmarks, offline: MTCNN (``mtcnn`` on PyPI, weights inside the wheel).

:func:`detect_faces` finds the faces in an RGB image and returns, for each, its box, a confidence
and five landmarks (eye centres, nose tip, mouth corners), which :mod:`facesegm_utils.align` turns
into the CelebA-HQ crop. ``mtcnn`` (built on TensorFlow) is imported on first use only, and its
networks are loaded once per process.

Large frames are shrunk first so their longer side is at most ``max_side`` (480) pixels: MTCNN's
cost grows with the image area, and a face that fills a useful part of a photo is still well over
MTCNN's 20-pixel minimum there (in a 1280x720 frame, faces down to about 55 pixels are found).
Boxes and landmarks come back in the frame's own pixels. ``min_confidence`` defaults to 0.8,
MTCNN's own last-stage threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from facesegm_utils.prediction import to_rgb

#: landmark rows, image left/right (a frontal face's image-left eye is the person's right eye)
LANDMARKS: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

_DETECTOR: list[Any] = []


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (x0, y0, x1, y1) and ``landmarks`` (5, 2) in frame pixels (x, y)."""

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray


def detector() -> Any:
    """The MTCNN detector, created on the first call (imports ``mtcnn`` and TensorFlow)."""
    if not _DETECTOR:
        from mtcnn import MTCNN

        _DETECTOR.append(MTCNN(device="CPU:0"))
    return _DETECTOR[0]


def detect_faces(
    image: np.ndarray, min_confidence: float = 0.8, max_side: int = 480, color_order: str = "rgb"
) -> list[Face]:
    """Faces in ``image`` (any layout :func:`~facesegm_utils.prediction.to_rgb` takes), most confident first."""
    rgb = to_rgb(image, color_order)
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = rgb if scale == 1.0 else cv2.resize(rgb, (round(w * scale), round(h * scale)), cv2.INTER_AREA)
    small = np.clip(small, 0, 255).astype(np.uint8)
    rows = np.asarray(detector().detect_faces(small, output_type="numpy", box_format="xyxy"), np.float64)
    faces = []
    for row in rows.reshape(-1, 16):
        if row[5] < min_confidence:
            continue
        # a row: image, x0, y0, x1, y1, confidence, five x then five y, in pixel centres; undo the shrink
        box = (row[1:5] + 0.5) / scale - 0.5
        marks = (np.stack([row[6:11], row[11:16]], axis=1) + 0.5) / scale - 0.5
        faces.append(Face(tuple(float(v) for v in box), float(row[5]), marks))
    return sorted(faces, key=lambda f: -f.confidence)
