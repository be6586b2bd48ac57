"""Faces through a video: detect on a schedule, carry the landmarks between detections, smoothly.

Detecting on every frame costs MTCNN's time each frame, and its landmarks wobble by a pixel or
two from frame to frame, so the CelebA-HQ crop (and with it the parse) would shake. A
:class:`FaceTracker` runs MTCNN every ``every`` frames only. In between, it moves each face's
landmarks with the motion of the face itself: corners found in the face's box are followed by
pyramidal Lucas-Kanade optical flow and a similarity (rotation, scale, shift) fitted to them with
RANSAC. When a detection comes, the carried landmarks are pulled only part of the way
(``correct``) towards it, so the drift is removed over a few detections instead of with a jump.
A new face starts a track; a face is dropped when the optical flow loses it (a detection that
misses it once does not drop it).
"""

from __future__ import annotations

import cv2
import numpy as np

from facesegm_utils import detect
from facesegm_utils.align import crop_quad
from facesegm_utils.prediction import to_rgb


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(to_rgb(frame), 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def _follow(prev: np.ndarray, grey: np.ndarray, marks: np.ndarray) -> np.ndarray | None:
    """``marks`` moved by the similarity that best explains the optical flow of the face's corners."""
    span = np.ptp(marks, axis=0).max()
    x0, y0 = np.maximum(marks.min(axis=0) - span, 0).astype(int)
    x1, y1 = (marks.max(axis=0) + span).astype(int)
    mask = np.zeros_like(prev)
    mask[y0:y1, x0:x1] = 255
    pts = cv2.goodFeaturesToTrack(prev, 80, 0.01, max(2.0, span / 20), mask=mask)
    if pts is None or len(pts) < 6:
        return None
    new, ok, _ = cv2.calcOpticalFlowPyrLK(prev, grey, pts, None, winSize=(21, 21), maxLevel=3)
    ok = ok.ravel() == 1
    if ok.sum() < 6:
        return None
    sim, _ = cv2.estimateAffinePartial2D(pts[ok], new[ok], method=cv2.RANSAC, ransacReprojThreshold=1.0)
    return None if sim is None else marks @ sim[:, :2].T + sim[:, 2]


class FaceTracker:
    """Landmarks (5, 2) of each face, frame after frame; see the module docstring."""

    def __init__(self, every: int = 10, correct: float = 0.3, min_confidence: float = 0.8) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        if not 0.0 < correct <= 1.0:
            raise ValueError(f"correct must be in (0, 1], got {correct}")
        self.every, self.correct, self.min_confidence = every, correct, min_confidence
        self.tracks: list[np.ndarray] = []
        self.frame_index = 0
        self.detections = 0
        self._prev: np.ndarray | None = None

    def update(self, frame: np.ndarray) -> list[np.ndarray]:
        """The landmarks of the faces in ``frame`` (RGB), the next frame of the video."""
        grey = _grey(frame)
        if self._prev is not None:
            moved = [_follow(self._prev, grey, marks) for marks in self.tracks]
            self.tracks = [m for m in moved if m is not None]
        if self.frame_index % self.every == 0 or not self.tracks:
            self._detect(frame)
        self._prev = grey
        self.frame_index += 1
        return [m.copy() for m in self.tracks]

    def _detect(self, frame: np.ndarray) -> None:
        found = [f.landmarks for f in detect.detect_faces(frame, min_confidence=self.min_confidence)]
        self.detections += 1
        tracks, carried = [], list(self.tracks)
        for marks in found:
            eyes = marks[:2].mean(axis=0)
            reach = np.hypot(*(marks[1] - marks[0]))
            near = [i for i, t in enumerate(carried) if np.hypot(*(t[:2].mean(axis=0) - eyes)) < reach]
            if near:  # the same face: pull the carried landmarks part of the way
                t = carried.pop(min(near, key=lambda i: np.hypot(*(carried[i][:2].mean(axis=0) - eyes))))
                marks = t + self.correct * (marks - t)
            tracks.append(marks)
        self.tracks = tracks + carried  # a face the detector missed this time stays while the flow holds it


def crop_jitter(found: list[np.ndarray], true: list[np.ndarray]) -> dict[str, float]:
    """How the crop from ``found`` landmarks moves against the crop from the ``true`` ones, per frame.

    ``jitter``: RMS over frames of the frame-to-frame change of the corners' error (pixels; a crop
    that follows the face rigidly, even off by a constant, has 0); ``error``: mean corner error.
    """
    err = np.stack([crop_quad(f) - crop_quad(t) for f, t in zip(found, true, strict=True)])
    step = np.linalg.norm(np.diff(err, axis=0), axis=2)
    return {
        "jitter": float(np.sqrt((step**2).mean())),
        "error": float(np.linalg.norm(err, axis=2).mean()),
    }
