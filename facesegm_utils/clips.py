"""Synthetic clips whose true moving mask is known, to judge a video smoother.

:func:`make_jitter_clip` films a still photo with a shaky hand; :func:`make_motion_clip` moves the
camera 4 % of the frame per frame. Each :class:`SyntheticClip` holds the frames, the true moving
label maps, what a jittery per-frame predictor would give (the truth plus edge noise) and the true
motion, which :func:`facesegm_utils.video.flicker` and :func:`facesegm_utils.video.mask_error` use.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class SyntheticClip:
    """A synthetic clip: ``frames`` (RGB uint8), ``labels`` (what a jittery per-frame predictor would
    give: the true map plus edge noise), ``clean`` (the true, moving label maps) and ``motion`` (per
    frame, the 2x3 affine matrix from the previous frame's coordinates to this frame's; identity
    for the first)."""

    frames: list[np.ndarray]
    labels: list[np.ndarray]
    clean: list[np.ndarray]
    motion: list[np.ndarray]


def _edge_noise(lbl: np.ndarray, rng: np.random.Generator, radius: int, amount: float) -> np.ndarray:
    """Replace blobs along the class edges with the label ``radius`` px away, as a jittery predictor does."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    band = cv2.dilate(lbl, k) != cv2.erode(lbl, k)
    if amount <= 0 or not band.any():
        return lbl.copy()
    field = cv2.GaussianBlur(
        rng.standard_normal(lbl.shape).astype(np.float32), (0, 0), max(1.0, radius / 1.5)
    )
    sel = band & (field > np.quantile(field[band], 1.0 - amount))
    out = lbl.copy()
    half = rng.random(lbl.shape) < 0.5
    for part_sel in (sel & half, sel & ~half):
        dy, dx = rng.integers(-radius, radius + 1, size=2)
        out[part_sel] = np.roll(lbl, (int(dy), int(dx)), axis=(0, 1))[part_sel]
    return out


def _check_clip_input(image: np.ndarray, labels: np.ndarray, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image)
    lbl = np.asarray(labels)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be RGB uint8 (H, W, 3), got shape {img.shape} dtype {img.dtype}")
    if lbl.shape != img.shape[:2] or not np.issubdtype(lbl.dtype, np.integer):
        raise ValueError(
            f"labels must be an integer map of the image's shape {img.shape[:2]}, got {lbl.shape} {lbl.dtype}"
        )
    if n_frames < 2:
        raise ValueError(f"n_frames must be at least 2, got {n_frames}")
    return img, lbl.astype(np.uint8)


def _film(
    img: np.ndarray,
    lbl: np.ndarray,
    poses: Iterator[np.ndarray],
    n_frames: int,
    pad: int,
    edge_noise: float,
    rng: np.random.Generator,
) -> SyntheticClip:
    """Film a still scene (the photo, mirrored into a ``pad``-pixel border so that nothing outside
    it is undefined) with a camera at ``poses`` (2x3: photo coordinates to frame coordinates)."""
    h, w = lbl.shape
    scene = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    scene_lbl = cv2.copyMakeBorder(lbl, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    radius = max(1, round(0.01 * max(h, w)))
    clip = SyntheticClip([], [], [], [])
    prev = None
    for _, pose in zip(range(n_frames), poses, strict=False):
        cam = np.vstack([pose, [0.0, 0.0, 1.0]]) @ np.array([[1.0, 0, -pad], [0, 1.0, -pad], [0, 0, 1.0]])
        clip.frames.append(cv2.warpAffine(scene, cam[:2], (w, h), flags=cv2.INTER_LINEAR))
        moved = cv2.warpAffine(scene_lbl, cam[:2], (w, h), flags=cv2.INTER_NEAREST)
        clip.clean.append(moved)
        clip.labels.append(_edge_noise(moved, rng, radius, edge_noise))
        step = np.eye(3) if prev is None else cam @ np.linalg.inv(prev)
        clip.motion.append(step[:2].copy())
        prev = cam
    return clip


def make_jitter_clip(
    image: np.ndarray,
    labels: np.ndarray,
    n_frames: int = 24,
    seed: int = 0,
    max_shift: float = 0.01,
    max_angle: float = 1.5,
    edge_noise: float = 0.35,
) -> SyntheticClip:
    """A short synthetic clip of a still photo held by a slightly shaky hand, with per-frame mask noise.

    Each frame is the photo shifted (a random walk bounded by ``max_shift`` of the side) and rotated
    (bounded by ``max_angle`` degrees); its label map moves with it (``clean``). ``labels`` adds edge
    noise: a fraction ``edge_noise`` of a band ~1 % of the side wide along every class edge takes the
    label from a few pixels away, redrawn each frame, as an unstable per-frame predictor would.
    """
    img, lbl = _check_clip_input(image, labels, n_frames)
    rng = np.random.default_rng(seed)
    h, w = lbl.shape
    shift_px = max_shift * max(h, w)

    def poses() -> Iterator[np.ndarray]:
        pos = np.zeros(3)  # dx, dy, angle
        step = np.array([shift_px / 4, shift_px / 4, max_angle / 4])
        bound = np.array([shift_px, shift_px, max_angle])
        while True:
            pos = np.clip(pos + rng.normal(0.0, 1.0, 3) * step, -bound, bound)
            m = cv2.getRotationMatrix2D((w / 2, h / 2), float(pos[2]), 1.0)
            m[:, 2] += pos[:2]
            yield m

    pad = int(math.ceil(shift_px + math.radians(max_angle) * max(h, w))) + 2
    return _film(img, lbl, poses(), n_frames, pad, edge_noise, rng)


def make_motion_clip(
    image: np.ndarray,
    labels: np.ndarray,
    n_frames: int = 24,
    seed: int = 0,
    speed: float = 0.04,
    radius: float = 0.1,
    edge_noise: float = 0.35,
) -> SyntheticClip:
    """A clip with real motion: the camera circles over the photo at ``speed`` of the side per frame
    (a circle of ``radius`` of the side), in whole-pixel steps so the true moving mask is exact, with
    the same per-frame edge noise as :func:`make_jitter_clip`."""
    img, lbl = _check_clip_input(image, labels, n_frames)
    if not 0 < speed <= radius:
        raise ValueError(f"speed must be in (0, radius={radius}], got {speed}")
    rng = np.random.default_rng(seed)
    side = max(lbl.shape)
    r = radius * side
    turn = speed * side / r  # radians per frame

    def poses() -> Iterator[np.ndarray]:
        for t in itertools.count():
            dx, dy = round(r - r * math.cos(t * turn)), round(-r * math.sin(t * turn))
            yield np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])

    return _film(img, lbl, poses(), n_frames, int(math.ceil(2 * r)) + 2, edge_noise, rng)
