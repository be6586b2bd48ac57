"""Recolouring video: video I/O, temporal smoothing, flicker (the CLI is :mod:`facesegm_utils.recolor_cli`).

A per-frame predictor gives masks whose edges wobble from frame to frame even when the face does
not move; recoloured, that wobble is a visible flicker. :func:`ema_smooth` averages the part's
probability over time with an exponential moving average (``--smooth`` alpha, 0 = off). Averaging
is linear, so smoothing the part's probability is the same as smoothing the 19 class
probabilities and summing the part's.

Averaging in place smears a face that really moves: the mask lags behind it. The
:class:`TemporalSmoother` therefore first warps the previous average onto the current frame along
the dense optical flow between the two frames (OpenCV DIS, :class:`MotionCompensator`), the
default of ``facesegm recolor`` (``--no-smooth-motion`` turns it off).

Two measures judge a smoother, on synthetic clips whose true moving mask is known
(:mod:`facesegm_utils.clips`: a shaky hand; real motion at 4 % of the frame per frame):
:func:`mask_error`, the mean distance to the true mask, and :func:`flicker`, the mean
frame-to-frame change of the mask, optionally counting only the change the true motion does not
explain.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facesegm_utils.clips import SyntheticClip
from facesegm_utils.fileio import FacesegmError
from facesegm_utils.recolor import (
    default_feather,
    parse_color,
    part_classes,
    part_probability,
    part_weight,
    recolor,
    refine_weight,
    weight_from_probability,
)

#: Containers this module writes, with the FourCC codecs tried in order. This opencv-python-headless
#: build (FFmpeg backend) writes ``mp4v`` in .mp4 and ``MJPG`` in .avi; H.264 (``avc1``) is absent.
VIDEO_CODECS: dict[str, tuple[str, ...]] = {".mp4": ("mp4v", "avc1"), ".avi": ("MJPG", "XVID")}
VIDEO_SUFFIXES: tuple[str, ...] = tuple(VIDEO_CODECS)
#: optical flow for motion-compensated smoothing runs on frames downscaled to at most this side
FLOW_MAX_SIDE = 320


# ----------------------------------------------------------------------------------------- video I/O
class VideoReader:
    """Frames of a video file as RGB uint8, one at a time; ``fps``, ``size`` (W, H) and ``frame_count``."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        cap = cv2.VideoCapture(str(self.path))
        ok = cap.isOpened()
        first = cap.read()[1] if ok else None
        cap.release()
        if first is None:
            raise FacesegmError(f"could not decode video {self.path}: expected a readable .mp4/.avi file")
        cap = cv2.VideoCapture(str(self.path))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        if not math.isfinite(fps) or fps <= 0:
            raise FacesegmError(f"video {self.path} reports no frame rate ({fps}); expected fps > 0")
        self.fps = fps
        self.size = (int(first.shape[1]), int(first.shape[0]))

    def __iter__(self) -> Iterator[np.ndarray]:
        cap = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()


def read_video(path: str | os.PathLike[str]) -> tuple[list[np.ndarray], float]:
    """All frames of a video (RGB uint8) and its frame rate."""
    reader = VideoReader(path)
    return list(reader), reader.fps


class VideoWriter:
    """Write RGB uint8 frames to ``path`` (.mp4 or .avi) through a temporary file renamed on close.

    The size is taken from the first frame; every frame must match it. Used as a context manager,
    an exception discards the temporary file and leaves ``path`` as it was.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise FacesegmError(
                f"cannot write video {self.path}: expected a {' or '.join(VIDEO_SUFFIXES)} file"
            )
        if not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.fps = float(fps)
        self.codecs = VIDEO_CODECS[suffix]
        self.codec: str | None = None
        self.size: tuple[int, int] | None = None
        self.count = 0
        self._writer: Any = None
        self._tmp: Path | None = None

    def _open(self, size: tuple[int, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent
        )
        os.close(fd)
        self._tmp = Path(tmp)
        for codec in self.codecs:
            writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*codec), self.fps, size)
            if writer.isOpened():
                if codec != self.codecs[0]:
                    warnings.warn(
                        f"codec {self.codecs[0]} is not available in this OpenCV build; wrote {self.path} "
                        f"with {codec}",
                        stacklevel=3,
                    )
                self._writer, self.codec, self.size = writer, codec, size
                return
            writer.release()
        self._tmp.unlink(missing_ok=True)
        raise FacesegmError(
            f"this OpenCV build cannot write {self.path.suffix} video (tried {', '.join(self.codecs)}); "
            "write an .avi (MJPG) instead"
        )

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 frame (H, W, 3)."""
        arr = np.asarray(frame)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ValueError(
                f"video frames must be RGB uint8 (H, W, 3), got shape {arr.shape} dtype {arr.dtype}"
            )
        size = (arr.shape[1], arr.shape[0])
        if self._writer is None:
            self._open(size)
        elif size != self.size:
            raise ValueError(
                f"frame {self.count} is {size[0]}x{size[1]}, expected {self.size[0]}x{self.size[1]}"
            )
        self._writer.write(cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
        self.count += 1

    def close(self) -> Path:
        """Finish the file and move it to ``path``."""
        if self._writer is None:
            raise FacesegmError(f"no frames were written to {self.path}")
        self._writer.release()
        self._writer = None
        assert self._tmp is not None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float) -> Path:
    """Write RGB uint8 frames as a video (.mp4 with mp4v, .avi with MJPG) atomically; return the path."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


# ------------------------------------------------------------------------------- smoothing & flicker
def ema_smooth(prev: np.ndarray | None, cur: np.ndarray, alpha: float) -> np.ndarray:
    """One step of an exponential moving average: ``alpha * prev + (1 - alpha) * cur``.

    ``alpha`` in [0, 1) is the weight of the past (0 = no smoothing); ``prev=None`` starts the average.
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"smoothing alpha must be in [0, 1), got {alpha!r}")
    cur = np.asarray(cur, dtype=np.float32)
    if prev is None or alpha == 0.0:
        return cur
    prev = np.asarray(prev, dtype=np.float32)
    if prev.shape != cur.shape:
        raise ValueError(
            f"cannot smooth a map of shape {cur.shape} with the previous one of shape {prev.shape}"
        )
    return alpha * prev + (1.0 - alpha) * cur


def _gray(frame: np.ndarray, scale: float) -> np.ndarray:
    g = cv2.cvtColor(np.asarray(frame, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    if scale == 1.0:
        return g
    h, w = g.shape
    return cv2.resize(g, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)


class MotionCompensator:
    """Dense optical flow (OpenCV DIS) from each frame back to the one before it.

    :meth:`warp` moves a map that belongs to the previous frame onto the current one, so that an
    average over time follows the face instead of smearing it. Flow is computed on grey frames
    downscaled to at most ``max_side`` pixels and scaled back up.
    """

    def __init__(self, max_side: int = FLOW_MAX_SIDE) -> None:
        self.max_side = int(max_side)
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._prev: np.ndarray | None = None
        self._scale = 1.0

    def flow(self, frame: np.ndarray) -> np.ndarray | None:
        """Flow (H, W, 2) such that ``frame[y, x]`` shows what the previous frame showed at
        ``(x, y) + flow[y, x]``; None for the first frame (or after a change of frame size)."""
        h, w = np.asarray(frame).shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        cur = _gray(frame, scale)
        prev, self._prev = self._prev, cur
        if prev is None or prev.shape != cur.shape:
            return None
        small = self._dis.calc(cur, prev, None)
        if scale == 1.0:
            return small
        up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        up[..., 0] *= w / small.shape[1]
        up[..., 1] *= h / small.shape[0]
        return up

    @staticmethod
    def warp(prev_map: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``prev_map`` moved along ``flow`` onto the current frame, and where that was possible
        (bool: the flow points inside the previous frame; elsewhere the content is new)."""
        h, w = flow.shape[:2]
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        mx, my = xs + flow[..., 0], ys + flow[..., 1]
        warped = cv2.remap(
            np.asarray(prev_map, dtype=np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        valid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        return warped, valid


class TemporalSmoother:
    """Exponential moving average of a part map over video frames, optionally motion-compensated.

    ``update(frame, prob)`` returns the smoothed map for this frame. With ``motion=True`` the
    previous smoothed map is first warped onto the current frame along the optical flow
    (:class:`MotionCompensator`); pixels that just came into view start from the current map.
    ``alpha`` = 0 turns smoothing off.
    """

    def __init__(self, alpha: float, motion: bool = False) -> None:
        ema_smooth(None, np.zeros(1), alpha)  # validates alpha
        self.alpha = float(alpha)
        self.motion = bool(motion) and alpha > 0
        self._flow = MotionCompensator() if self.motion else None
        self.state: np.ndarray | None = None

    def update(self, frame: np.ndarray, prob: np.ndarray) -> np.ndarray:
        prob = np.asarray(prob, dtype=np.float32)
        prev = self.state
        if self._flow is not None:
            flow = self._flow.flow(frame)
            if flow is not None and prev is not None and prev.shape == prob.shape:
                prev, valid = self._flow.warp(prev, flow)
                prev = np.where(valid, prev, prob)
        self.state = ema_smooth(prev, prob, self.alpha)
        return self.state


def _check_sequence(masks: Sequence[np.ndarray] | np.ndarray, what: str) -> list[np.ndarray]:
    seq = [np.asarray(m, dtype=np.float32) for m in masks]
    if len(seq) < 2:
        raise ValueError(f"{what} needs at least 2 masks, got {len(seq)}")
    if any(m.shape != seq[0].shape for m in seq):
        raise ValueError(f"all masks must have the same shape, got {sorted({m.shape for m in seq})}")
    return seq


def flicker(masks: Sequence[np.ndarray] | np.ndarray, motion: Sequence[np.ndarray] | None = None) -> float:
    """Mean frame-to-frame absolute change of a mask sequence (bool or weights in [0, 1]).

    0 for a still mask; 1 would mean every pixel switches every frame. Needs at least 2 frames.

    With ``motion`` (one 2x3 affine matrix per frame, frame ``t-1`` coordinates to frame ``t``'s,
    as :class:`SyntheticClip` records the true motion) the previous mask is first moved by the
    true motion, so only change that the motion does not explain counts: the true moving mask
    then has (almost) no flicker. Pixels that just came into view are left out.
    """
    seq = _check_sequence(masks, "flicker")
    if motion is None:
        return float(np.mean([np.abs(b - a).mean() for a, b in zip(seq[:-1], seq[1:], strict=True)]))
    if len(motion) != len(seq):
        raise ValueError(f"motion needs one matrix per mask: {len(motion)} for {len(seq)} masks")
    h, w = seq[0].shape[:2]
    changes = []
    for a, b, m in zip(seq[:-1], seq[1:], motion[1:], strict=True):
        mat = np.asarray(m, dtype=np.float64)
        moved = cv2.warpAffine(a, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inside = cv2.warpAffine(np.ones((h, w), np.uint8), mat, (w, h), flags=cv2.INTER_NEAREST) > 0
        changes.append(float(np.abs(b - moved)[inside].mean()) if inside.any() else 0.0)
    return float(np.mean(changes))


def mask_error(masks: Sequence[np.ndarray] | np.ndarray, truth: Sequence[np.ndarray] | np.ndarray) -> float:
    """Mean absolute difference between each mask and the true one of its frame (0 = exact)."""
    seq, ref = _check_sequence(masks, "mask_error"), _check_sequence(truth, "mask_error")
    if len(seq) != len(ref) or seq[0].shape != ref[0].shape:
        raise ValueError(
            f"need one true mask of the same shape per mask: {len(ref)} x {ref[0].shape} "
            f"for {len(seq)} x {seq[0].shape}"
        )
    return float(np.mean([np.abs(a - b).mean() for a, b in zip(seq, ref, strict=True)]))


# ------------------------------------------------------------------------------------ recolouring
def recolor_sequence(
    frames: Iterable[np.ndarray],
    maps: Iterable[np.ndarray],
    part: str,
    color: Any,
    strength: float = 0.8,
    method: str = "lab",
    smooth: float = 0.0,
    feather: float | None = None,
    motion: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Recolour a frame sequence; yield ``(frame, weight)`` pairs.

    ``maps`` gives, per frame, a label map (H, W) or probabilities (H, W, 19). The part's
    probability is averaged over time with :func:`ema_smooth` (``smooth`` alpha, 0 = off) before it
    is feathered into a weight, so a jittery mask does not make the colour flicker. With ``motion``
    (the default) the average is motion-compensated (:class:`TemporalSmoother`): it follows a
    moving face instead of lagging behind it.
    """
    rgb = parse_color(color)
    part_classes(part)
    smoother = TemporalSmoother(smooth, motion=motion)
    for frame, m in zip(frames, maps, strict=False):  # maps may be an endless repeat of one map
        prob, from_labels = part_probability(m, part)
        if prob.shape != np.asarray(frame).shape[:2]:
            raise ValueError(
                f"mask of shape {prob.shape} does not match the frame {np.asarray(frame).shape[:2]}"
            )
        state = smoother.update(frame, prob)
        sigma = (default_feather(prob.shape) if from_labels else 0.0) if feather is None else feather
        weight = weight_from_probability(
            state, part, feather=sigma, from_labels=from_labels, labels=m, image=np.asarray(frame)
        )
        if not from_labels:  # a model's soft mask bleeds past the part: the same rule as part_weight
            weight = refine_weight(weight, np.asarray(frame))
        yield recolor(frame, weight, rgb, strength, method, saturation=(part == "lips")), weight


#: the three ways :func:`compare_smoothing` recolours a clip: (smooth alpha, motion compensation)
SMOOTHING_VARIANTS: dict[str, tuple[float, bool]] = {
    "per frame": (0.0, False),
    "EMA": (0.6, False),
    "motion-compensated EMA": (0.6, True),
}


@dataclass
class SmoothingRun:
    """One way of recolouring a clip and how it scored against the true moving mask."""

    frames: list[np.ndarray]
    weights: list[np.ndarray]
    ms_per_frame: float
    #: :func:`mask_error` against the true mask (0 = exact)
    error: float
    #: :func:`flicker`, all frame-to-frame change (true motion included)
    flicker: float
    #: :func:`flicker` with the true motion: the change the motion does not explain
    residual_flicker: float


def compare_smoothing(
    clip: SyntheticClip, part: str, color: Any, strength: float = 0.8, variants: dict | None = None
) -> dict[str, SmoothingRun]:
    """Recolour ``clip`` per frame, with an EMA and with a motion-compensated EMA (or ``variants``:
    name -> (alpha, motion)) and score each against the true moving mask; the key ``"true mask"``
    holds the true mask's own flicker (its error is 0)."""
    truth = [part_weight(c, part) for c in clip.clean]
    runs = {}
    for name, (alpha, motion) in (variants or SMOOTHING_VARIANTS).items():
        t0 = time.perf_counter()
        out = list(
            recolor_sequence(clip.frames, clip.labels, part, color, strength, smooth=alpha, motion=motion)
        )
        ms = (time.perf_counter() - t0) / len(out) * 1000
        weights = [w for _, w in out]
        runs[name] = SmoothingRun(
            frames=[f for f, _ in out],
            weights=weights,
            ms_per_frame=ms,
            error=mask_error(weights, truth),
            flicker=flicker(weights),
            residual_flicker=flicker(weights, clip.motion),
        )
    runs["true mask"] = SmoothingRun([], truth, 0.0, 0.0, flicker(truth), flicker(truth, clip.motion))
    return runs
