"""Procedural faces in the exact raw CelebAMask-HQ layout, so the course runs without the real data.

``facesegm synth --out DIR --count N --size S [--mask-size M] --seed K [--start 0]`` writes, in the
layout :mod:`facesegm_utils.layout` describes::

    DIR/CelebA-HQ-img/{k}.jpg                                   RGB, S x S
    DIR/CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png  M x M (default S), one channel, 0/255
    DIR/CelebA-HQ-to-CelebA-mapping.txt                         idx, orig_idx, orig_file

Each face is drawn from a handful of parametric shapes (face contour, eyes, brows, nose, lips,
ears, neck, clothes, one of five hair styles, optional glasses, hat, earrings and necklace) placed
with a random pose. The part masks overlap the way the real annotations do: the skin mask is the
whole face region and lies under the eyes, nose, brows and lips; hair overlaps skin (hairline or a
fringe over the forehead); glasses overlap eyes and skin; a hat overlaps hair; a necklace's edges
overlap neck and cloth. Merging the masks in :data:`facesegm_utils.labels.PART_ORDER` (a later part
overrides an earlier one, label = position + 1) gives the picture that was drawn.

Left and right: ``l_*`` parts are the *person's* left, i.e. the image's right (larger x) in a frontal
face. The real annotations follow that in about 93% of faces and the other way round in the rest;
the generator mimics this: about 7% of faces (chosen by the seed) name their sides the other way.

The real archive stores 1024x1024 images with 512x512 masks (``--size 1024 --mask-size 512``).
Masks at a size M other than S are the image-size masks nearest-resized (pixel centres matched, as
:func:`facesegm_utils.celebamask.resize_nearest` does) to M, part by part, so merging them gives the
nearest-resized label map of the face in the image; a part too small to survive the resize gets no file.

Face ``k`` depends only on ``(seed, k)`` (``np.random.default_rng([seed, k])``), so ids 0..99 in one
run equal ids 0..49 and then 50..99 with ``start=50``.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from facesegm_utils import layout
from facesegm_utils.fileio import atomic_write_bytes, atomic_write_text, encode_image
from facesegm_utils.labels import PART_ORDER

#: fraction of faces whose l_/r_ names are swapped (image left = person's left), as in the real data
SWAP_FRACTION = 0.07
MIN_SIZE = 32

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT

SKIN_TONES = np.array(
    [
        [255, 223, 196],
        [240, 200, 170],
        [234, 192, 158],
        [222, 170, 135],
        [200, 145, 110],
        [176, 120, 85],
        [141, 94, 64],
        [110, 72, 50],
        [84, 56, 40],
    ],
    dtype=np.float32,
)
HAIR_COLOURS = np.array(
    [
        [18, 16, 16],  # black
        [28, 22, 20],  # black
        [58, 40, 30],  # dark brown
        [95, 64, 42],  # brown
        [140, 62, 32],  # auburn
        [214, 182, 118],  # blond
        [236, 220, 178],  # platinum blond
        [165, 162, 160],  # grey
        [180, 90, 45],  # ginger
    ],
    dtype=np.float32,
)
EYE_COLOURS = np.array(
    [[70, 42, 25], [40, 25, 15], [70, 110, 160], [80, 120, 80], [120, 90, 50], [100, 110, 120]],
    dtype=np.float32,
)
METALS = np.array([[212, 175, 55], [200, 200, 205], [235, 215, 150], [180, 110, 80]], dtype=np.float32)
HAIR_STYLES = ("short", "long", "bun", "bald", "fringe")
HAIR_STYLE_P = (0.22, 0.46, 0.09, 0.06, 0.17)


# ----------------------------------------------------------------------------- cached textures
@functools.lru_cache(maxsize=8)
def _textures(size: int) -> dict[str, np.ndarray]:
    """Noise banks for one image size (computed once per process): strands, sensor noise, pixel grids."""
    rng = np.random.default_rng(12345 + size)
    n = 2 * size
    white = rng.random((n, n), dtype=np.float32)
    sig = max(size / 48.0, 1.5)
    strands = cv2.GaussianBlur(white, (0, 0), sigmaX=0.45 * max(size / 256, 1), sigmaY=sig)
    strands = (strands - strands.mean()) / (strands.std() + 1e-6)
    clumps = cv2.GaussianBlur(
        rng.random((n, n), dtype=np.float32), (0, 0), sigmaX=size / 40, sigmaY=size / 12
    )
    clumps = (clumps - clumps.mean()) / (clumps.std() + 1e-6)
    hair = np.clip(0.5 + 0.17 * strands + 0.1 * clumps, 0.0, 1.0).astype(np.float32)
    fine = cv2.GaussianBlur(rng.random((n, n), dtype=np.float32), (0, 0), 1.0)
    fine = ((fine - fine.mean()) / (fine.std() + 1e-6)).astype(np.float32)
    noise = rng.standard_normal((n, n, 3), dtype=np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return {"hair": hair, "fine": fine, "noise": noise, "xs": xs + 0.5, "ys": ys + 0.5}


def _window(bank: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random size x size view into a 2*size bank."""
    oy, ox = rng.integers(0, bank.shape[0] - size, size=2)
    return bank[oy : oy + size, ox : ox + size]


# ----------------------------------------------------------------------------- geometry helpers
def _ellipse(cx: float, cy: float, ax: float, ay: float, angle: float = 0.0, n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    x, y = ax * np.cos(t), ay * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def _arc_cap(cx: float, cy: float, ax: float, ay: float, y_cut: float, n: int = 40) -> np.ndarray:
    """The part of an ellipse above the horizontal line ``y = y_cut`` (closed by the chord)."""
    c = float(np.clip((cy - y_cut) / ay, -1.0, 1.0))
    t0 = math.acos(c)
    t = np.linspace(-t0, t0, n)
    return np.stack([cx + ax * np.sin(t), cy - ay * np.cos(t)], axis=1)


def _thick_curve(pts: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """A closed polygon around a centre line with per-point half-widths (a tapered stroke)."""
    d = np.gradient(pts, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1)
    upper = pts + normal * widths[:, None]
    lower = pts - normal * widths[:, None]
    return np.concatenate([upper, lower[::-1]], axis=0)


class _Frame:
    """Maps canonical face coordinates (unit square, face centre near (0.5, 0.5)) to pixels."""

    def __init__(self, size: int, angle: float, scale: float, shift: tuple[float, float]) -> None:
        self.size = size
        ca, sa = math.cos(angle) * scale, math.sin(angle) * scale
        # pixel = size * (R (u - c) + c + t)
        self.m = np.array(
            [
                [ca, -sa, 0.5 - ca * 0.5 + sa * 0.5 + shift[0]],
                [sa, ca, 0.5 - sa * 0.5 - ca * 0.5 + shift[1]],
            ],
            dtype=np.float64,
        )
        self.m *= size
        inv = cv2.invertAffineTransform(self.m)
        self.inv = inv.astype(np.float32)

    def pix(self, pts: np.ndarray) -> np.ndarray:
        """Canonical points (N, 2) -> int32 pixel points with ``_SHIFT`` fractional bits."""
        p = pts @ self.m[:, :2].T + self.m[:, 2]
        return np.round((p - 0.5) * _ONE).astype(np.int32)

    def length(self, v: float) -> float:
        return v * self.size * math.hypot(self.m[0, 0], self.m[1, 0]) / self.size

    def canonical_grid(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.inv
        return a[0, 0] * xs + a[0, 1] * ys + a[0, 2], a[1, 0] * xs + a[1, 1] * ys + a[1, 2]

    def fill(self, canvas: np.ndarray, polys: Iterable[np.ndarray], value: float | tuple = 1) -> np.ndarray:
        cv2.fillPoly(canvas, [self.pix(p) for p in polys], value, lineType=cv2.LINE_8, shift=_SHIFT)
        return canvas

    def stroke(
        self,
        canvas: np.ndarray,
        pts: np.ndarray,
        width: float,
        value: float | tuple = 1,
        closed: bool = False,
    ) -> np.ndarray:
        t = max(1, int(round(self.length(width))))
        cv2.polylines(canvas, [self.pix(pts)], closed, value, thickness=t, lineType=cv2.LINE_8, shift=_SHIFT)
        return canvas

    def new(self) -> np.ndarray:
        return np.zeros((self.size, self.size), np.uint8)


# ----------------------------------------------------------------------------- face parameters
def _pick(rng: np.random.Generator, table: np.ndarray, jitter: float) -> np.ndarray:
    c = table[rng.integers(len(table))] + rng.normal(0.0, jitter, 3)
    return np.clip(c, 0, 255).astype(np.float32)


def _sample_geometry(rng: np.random.Generator, p: dict) -> None:
    """Pose, side naming, face outline and the size and place of every facial feature."""
    p["angle"] = float(np.clip(rng.normal(0.0, 0.12), -0.32, 0.32))
    p["scale"] = float(rng.uniform(1.08, 1.28))
    p["shift"] = (float(rng.uniform(-0.05, 0.05)), float(rng.uniform(0.0, 0.07)))
    p["swap"] = bool(rng.random() < SWAP_FRACTION)
    p["a"] = float(rng.uniform(0.215, 0.25))  # face half-width
    p["b"] = float(rng.uniform(0.29, 0.33))  # face half-height (hairline to chin)
    p["jaw"] = float(rng.uniform(0.18, 0.38))
    p["yaw"] = float(rng.uniform(-0.025, 0.025))  # sideways shift of the features
    p["ew"] = float(rng.uniform(0.04, 0.05))
    p["eh"] = float(rng.uniform(0.015, 0.021))
    p["eye_dx"] = float(rng.uniform(0.088, 0.102))
    p["eye_tilt"] = float(rng.uniform(-0.08, 0.12))
    p["gaze"] = (float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.15, 0.15)))
    p["bt"] = float(rng.uniform(0.011, 0.016))  # brow half-thickness
    p["brow_arch"] = float(rng.uniform(0.004, 0.016))
    p["brow_gap"] = float(rng.uniform(0.028, 0.04))
    p["nw"] = float(rng.uniform(0.036, 0.05))
    p["nose_len"] = float(rng.uniform(0.95, 1.05))
    p["mw"] = float(rng.uniform(0.07, 0.09))
    p["ut"] = float(rng.uniform(0.019, 0.028))
    p["lt"] = float(rng.uniform(0.024, 0.036))
    p["gap"] = float(rng.uniform(0.014, 0.04)) if rng.random() < 0.38 else 0.0
    p["teeth"] = bool(rng.random() < 0.7)
    p["smile"] = float(rng.uniform(-0.004, 0.014))
    p["ear_h"] = float(rng.uniform(0.055, 0.07))
    p["ear_w"] = float(rng.uniform(0.024, 0.034))
    p["neck_w"] = float(rng.uniform(0.55, 0.7))


def _sample_hair_and_accessories(rng: np.random.Generator, p: dict) -> None:
    """Hair style and shape, clothes' neckline, and glasses, hat, earrings and necklace."""
    p["style"] = HAIR_STYLES[int(rng.choice(len(HAIR_STYLES), p=HAIR_STYLE_P))]
    p["volume"] = float(rng.uniform(0.05, 0.12))
    p["hair_len"] = float(rng.uniform(0.85, 1.15))
    p["hair_out"] = float(rng.uniform(0.12, 0.26))
    p["tucked"] = bool(rng.random() < 0.4)
    p["fringe_long"] = bool(rng.random() < 0.6)
    p["hairline"] = (float(rng.uniform(0.01, 0.03)), float(rng.uniform(0.03, 0.09)))
    p["fringe_y"] = float(rng.uniform(0.035, 0.07))
    p["fringe_slant"] = float(rng.uniform(-0.06, 0.06))
    p["fringe_tips"] = rng.uniform(0.0, 0.014, 24)
    p["neckline"] = int(rng.integers(3))
    p["shoulder_y"] = float(rng.uniform(0.8, 0.87))
    p["glasses"] = bool(rng.random() < 0.2)
    p["hat"] = bool(rng.random() < 0.1)
    p["earrings"] = bool(rng.random() < 0.2)
    p["necklace"] = bool(rng.random() < 0.1)
    p["glasses_round"] = bool(rng.random() < 0.5)
    p["frame_w"] = float(rng.uniform(0.006, 0.011))
    # studs, drops and hoops a few percent of the image wide: ~0.1-0.2% of all pixels, like the real ear_r
    p["earring_r"] = float(rng.uniform(0.018, 0.03))
    p["earring_kind"] = int(rng.integers(3))
    p["necklace_w"] = float(rng.uniform(0.006, 0.012))
    p["necklace_depth"] = float(rng.uniform(0.03, 0.08))


def _sample_colours(rng: np.random.Generator, p: dict) -> None:
    """Skin, hair, eye, lip, clothes and accessory colours, background, light, noise and JPEG quality."""
    p["skin"] = _pick(rng, SKIN_TONES, 7.0)
    p["hair_c"] = _pick(rng, HAIR_COLOURS, 6.0)
    p["eye_c"] = _pick(rng, EYE_COLOURS, 8.0)
    lipstick = rng.random() < 0.3
    natural = p["skin"] * np.array([0.8, 0.5, 0.52], np.float32) + np.array([20, 0, 5], np.float32)
    paint = np.array([rng.uniform(120, 220), rng.uniform(10, 70), rng.uniform(30, 110)], np.float32)
    p["lip_c"] = np.clip(paint if lipstick else natural, 0, 255).astype(np.float32)
    p["cloth_c"] = rng.uniform(10, 245, 3).astype(np.float32)
    p["cloth_stripes"] = bool(rng.random() < 0.25)
    p["hat_c"] = rng.uniform(10, 240, 3).astype(np.float32)
    p["frame_c"] = rng.uniform(10, 120, 3).astype(np.float32) if rng.random() < 0.7 else _pick(rng, METALS, 5)
    p["metal_c"] = _pick(rng, METALS, 8.0)
    p["bg"] = rng.uniform(20, 235, (2, 3)).astype(np.float32)
    p["bg_dir"] = float(rng.uniform(0, 2 * math.pi))
    p["clutter"] = [
        (int(rng.integers(3)), rng.uniform(-0.1, 1.1, 2), rng.uniform(0.04, 0.3, 2), rng.uniform(20, 235, 3))
        for _ in range(int(rng.integers(2, 7)))
    ]
    p["light_dir"] = float(rng.uniform(0, 2 * math.pi))
    p["light"] = float(rng.uniform(0.05, 0.3))
    p["noise"] = float(rng.uniform(1.5, 6.0))
    p["jpeg"] = int(rng.integers(85, 96))
    p["blush"] = float(rng.uniform(0, 22)) if rng.random() < 0.5 else 0.0
    p["strand_phase"] = float(rng.random())


def _sample(rng: np.random.Generator) -> dict:
    """All random choices of one face, drawn in a fixed order."""
    p: dict = {}
    for part in (_sample_geometry, _sample_hair_and_accessories, _sample_colours):
        part(rng, p)
    return p


# ----------------------------------------------------------------------------- part shapes
#: the canonical face centre
_CX, _CY = 0.5, 0.5


def _face_contour(p: dict, cx: float, cy: float, n: int = 56) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    c = np.cos(t)
    width = np.where(c < 0, 1.0 - p["jaw"] * c**2 * 0.9, 1.0 - 0.06 * c**2)
    return np.stack([cx + p["a"] * np.sin(t) * width, cy - p["b"] * c], axis=1)


def _shape_skin(p: dict, f: _Frame, m: dict, g: dict) -> None:
    """The face region (a bald head's scalp included), and the heights of eyes, nose and mouth."""
    cx, cy, a, b = _CX, _CY, p["a"], p["b"]
    face = _face_contour(p, cx, cy)
    skin = f.fill(f.new(), [face])
    if p["style"] == "bald":
        f.fill(skin, [_arc_cap(cx, cy - 0.02, a * 1.01, b + 0.05, cy - 0.05)])
    m["skin"] = skin
    g["face"] = face
    eye_y = cy - b / 3 + p["eh"] + p["brow_gap"] - 0.01
    nose_y = cy + b / 3 - 0.01
    mouth_y = nose_y + 0.075
    g.update(eye_y=eye_y, nose_y=nose_y, mouth_y=mouth_y, ear_y=(eye_y + nose_y) / 2, fx=cx + p["yaw"])
    # image-right is the person's left unless swapped
    g["sides"] = ((+1, "l"), (-1, "r")) if not p["swap"] else ((+1, "r"), (-1, "l"))


def _shape_eyes_and_brows(p: dict, f: _Frame, m: dict, g: dict) -> None:
    """Both eyes (almond outlines, tilted) and the tapered brows above them."""
    eye_y = g["eye_y"]
    t = np.linspace(0, math.pi, 14)
    eyes = {}
    for side, name in g["sides"]:
        ex = g["fx"] + side * p["eye_dx"]
        ew, eh = p["ew"], p["eh"]
        xs = np.concatenate([ew * np.cos(t), ew * np.cos(t[::-1])[1:-1]])
        ys = np.concatenate([-eh * np.sin(t) ** 0.8, 0.75 * eh * np.sin(t[::-1][1:-1])])
        tilt = p["eye_tilt"] * side
        ca, sa = math.cos(tilt), math.sin(tilt)
        # outer corner (side * x > 0) is slightly higher when tilt > 0
        pts = np.stack([ex + ca * xs, eye_y - side * sa * xs + ys], axis=1)
        eyes[side] = (ex, pts)
        m[f"{name}_eye"] = f.fill(f.new(), [pts])
        bx = np.linspace(-0.9 * ew, 1.25 * ew, 12)
        by = eye_y - eh - p["brow_gap"] - p["brow_arch"] * np.sin(np.linspace(0.2, math.pi - 0.4, 12))
        cpts = np.stack([ex + side * bx, by], axis=1)
        widths = p["bt"] * np.linspace(1.1, 0.55, 12)
        m[f"{name}_brow"] = f.fill(f.new(), [_thick_curve(cpts, widths)])
        g[f"brow_{side}"] = cpts
    g["eyes"] = eyes


def _shape_nose(p: dict, f: _Frame, m: dict, g: dict) -> None:
    """A narrow bridge widening to the alae, with a round tip."""
    fx, eye_y = g["fx"], g["eye_y"]
    nt = g["nose_y"] - eye_y
    ny = np.linspace(0, 1, 10)
    half = 0.016 + (p["nw"] - 0.016) * ny**2.2
    right = np.stack([fx + half, eye_y + 0.01 + nt * p["nose_len"] * ny * 0.93], axis=1)
    tip = _ellipse(fx, right[-1, 1], p["nw"], 0.022, n=24)
    tip = tip[tip[:, 1] >= right[-1, 1]]
    tip = tip[np.argsort(-tip[:, 0])]
    left = right[::-1] * np.array([-1, 1]) + np.array([2 * fx, 0])
    nose = np.concatenate([right, tip, left], axis=0)
    m["nose"] = f.fill(f.new(), [nose])
    g["nose"] = nose
    g["nose_tip"] = (fx, right[-1, 1])


def _shape_ears(p: dict, f: _Frame, m: dict, g: dict) -> None:
    """Ears outside the face contour (an ear overrides skin, so it must not cover the cheek)."""
    notface = 1 - m["skin"]
    ear_y = g["ear_y"]
    for side, name in g["sides"]:
        ex = _CX + side * (p["a"] * 0.98 + p["ear_w"] * 0.35)
        ear = _ellipse(ex, ear_y, p["ear_w"], p["ear_h"], angle=side * 0.12)
        m[f"{name}_ear"] = f.fill(f.new(), [ear]) & notface
        g[f"ear_{side}"] = (ex, ear_y)


def _shape_lips(p: dict, f: _Frame, m: dict, g: dict) -> None:
    """Upper and lower lip, and the mouth between them when it is open."""
    mw, gap, s = p["mw"], p["gap"], p["smile"]
    xs = np.linspace(-mw, mw, 21)
    r = (xs / mw) ** 2
    line = g["mouth_y"] - s * r + s * 0.3
    up_in = line - gap / 2 * (1 - r)
    lo_in = line + gap / 2 * (1 - r)
    env = (1 - r) ** 0.6 * (1 - 0.28 * np.exp(-((xs / (0.2 * mw)) ** 2)))
    up_out = up_in - p["ut"] * env - 0.002
    lo_out = lo_in + p["lt"] * (1 - r) ** 0.5 + 0.001
    X = g["fx"] + xs
    m["u_lip"] = f.fill(f.new(), [np.concatenate([np.stack([X, up_out], 1), np.stack([X, up_in], 1)[::-1]])])
    m["l_lip"] = f.fill(f.new(), [np.concatenate([np.stack([X, lo_in], 1), np.stack([X, lo_out], 1)[::-1]])])
    if gap > 0:
        inner = np.concatenate([np.stack([X, up_in], 1), np.stack([X, lo_in], 1)[::-1]])
        m["mouth"] = f.fill(f.new(), [inner])
        g["mouth"] = inner
    g["lips"] = (X, up_out, up_in, lo_in, lo_out)


def _shape_neck_and_cloth(p: dict, f: _Frame, m: dict, g: dict) -> None:
    """The neck below the face and the clothes over the shoulders, cut by one of three necklines."""
    cx, cy = _CX, _CY
    nwid = p["a"] * p["neck_w"]
    neck_top = cy + 0.05
    neck = np.array(
        [
            [cx - nwid, neck_top],
            [cx + nwid, neck_top],
            [cx + nwid * 1.05, 0.9],
            [cx + nwid * 1.35, 1.2],
            [cx - nwid * 1.35, 1.2],
            [cx - nwid * 1.05, 0.9],
        ]
    )
    m["neck"] = f.fill(f.new(), [neck]) & (1 - m["skin"])
    sy = p["shoulder_y"]
    sx = np.linspace(-0.75, 0.75, 31)
    top = sy + 0.09 * np.clip(np.abs(sx) - 0.3, 0, None)  # shoulders slope down outwards
    top = np.where(np.abs(sx) < nwid * 1.6, sy - 0.01, top)
    cloth_poly = np.concatenate([np.stack([cx + sx, top], 1), [[cx + 0.75, 1.3], [cx - 0.75, 1.3]]])
    cloth = f.fill(f.new(), [cloth_poly])
    neckline_w = nwid * (1.5 if p["neckline"] != 2 else 1.05)
    if p["neckline"] == 0:  # round neck
        cut = _ellipse(cx, sy - 0.01, neckline_w, 0.06)
    elif p["neckline"] == 1:  # v neck
        cut = np.array([[cx - neckline_w, sy - 0.03], [cx + neckline_w, sy - 0.03], [cx, sy + 0.1]])
    else:  # high collar
        cut = _ellipse(cx, sy - 0.04, neckline_w, 0.02)
    m["cloth"] = f.fill(cloth, [cut], 0)
    g["neck_top"] = neck_top
    g["nwid"] = nwid


def _long_hair(p: dict) -> bool:
    return p["style"] == "long" or (p["style"] == "fringe" and p["fringe_long"])


def _hair_bald(p: dict, f: _Frame, m: dict, g: dict) -> np.ndarray:
    """A bald head keeps a ring of hair at the sides, between the temples and the ears."""
    a, b, eye_y, ear_y = p["a"], p["b"], g["eye_y"], g["ear_y"]
    ring = f.fill(f.new(), [_ellipse(_CX, _CY - 0.03, a * 1.04 + 0.012, b + 0.04)])
    band = f.fill(
        f.new(), [np.array([[0, eye_y - 0.09], [1, eye_y - 0.09], [1, ear_y + 0.03], [0, ear_y + 0.03]])]
    )
    return ring & band & (1 - m["skin"])


def _hair_volume(p: dict, f: _Frame, g: dict) -> np.ndarray:
    """The hair's full extent before the face covers it: cap, bun, and side curtains of long hair."""
    cx, cy, a, b, vol = _CX, _CY, p["a"], p["b"], p["volume"]
    long_hair = _long_hair(p)
    hair = f.new()
    cap_cy, cap_ax, cap_ay = cy - 0.03, a + vol, b + vol * 1.3
    if p["style"] == "bun":
        cap_ax, cap_ay = a + 0.02, b + 0.03
        f.fill(hair, [_ellipse(cx, cy - b - 0.07, 0.075, 0.065)])
    f.fill(hair, [_arc_cap(cx, cap_cy, cap_ax, cap_ay, g["ear_y"] if not long_hair else cy)])
    if long_hair:
        ln, nwid = p["hair_len"], g["nwid"]
        out = a + p["hair_out"]
        for side in (+1, -1):
            curtain = np.array(
                [
                    [cx + side * (a * 0.7), cy - 0.1],
                    [cx + side * (cap_ax + 0.005), cy - 0.1],
                    [cx + side * out, cy + 0.25],
                    [cx + side * (out + 0.03), cy + 0.45 * ln],
                    [cx + side * (out - 0.02), cy + 0.55 * ln],
                    [cx + side * (nwid * 1.15), cy + 0.5 * ln],
                    [cx + side * (nwid * 0.9), cy + 0.2],
                ]
            )
            f.fill(hair, [curtain])
    return hair


def _hair_visible(p: dict, f: _Frame, m: dict, g: dict) -> np.ndarray:
    """Where hair may show: off the face, above the hairline, and over the forehead under a fringe."""
    cx, cy, a, b = _CX, _CY, p["a"], p["b"]
    d0, d1 = p["hairline"]
    hx = np.linspace(-a - 0.05, a + 0.05, 21)
    hl = np.concatenate(
        [
            np.stack([cx + hx, cy - b + d0 + d1 * (hx / a) ** 2], 1),
            [[cx + a + 0.05, -0.5], [cx - a - 0.05, -0.5]],
        ]
    )
    visible = (1 - m["skin"]) | f.fill(f.new(), [hl])
    if p["style"] == "fringe":
        eye_y = g["eye_y"]
        tips = p["fringe_tips"]
        fxs = np.linspace(-a * 1.05, a * 1.05, len(tips))
        fy = (
            eye_y
            - p["eh"]
            - p["brow_gap"]
            - 2.2 * p["bt"]
            - p["fringe_y"] * 0.4
            + p["fringe_slant"] * (fxs / a)
        )
        fy = np.minimum(fy, eye_y - p["eh"] - p["brow_gap"] - 2.2 * p["bt"]) - tips
        fringe = np.concatenate(
            [
                np.stack([cx + fxs, fy], 1),
                [[cx + a * 1.05, cy - b - 0.05], [cx - a * 1.05, cy - b - 0.05]],
            ]
        )
        f.fill(visible, [fringe])
        g["fringe"] = fringe
    return visible


def _shape_hair(p: dict, f: _Frame, m: dict, g: dict) -> None:
    """One of five styles; the hairline (or a fringe) comes down over the top of the face."""
    if p["style"] == "bald":
        m["hair"] = _hair_bald(p, f, m, g)
        return
    hair = _hair_volume(p, f, g)
    hair &= _hair_visible(p, f, m, g)
    if _long_hair(p) and p["tucked"]:  # tucked behind the ears
        hair &= 1 - (m["l_ear"] | m["r_ear"])
    m["hair"] = hair


def _shape_hat(p: dict, f: _Frame, m: dict, g: dict) -> None:
    """A crown and a brim over the top of the head."""
    hat_y = _CY - p["b"] + 0.06
    crown = _arc_cap(_CX, hat_y + 0.02, p["a"] + 0.075, 0.25, hat_y)
    brim = _ellipse(_CX, hat_y, p["a"] + 0.13, 0.03)
    m["hat"] = f.fill(f.new(), [crown, brim])
    g["hat"] = (crown, brim, hat_y)


def _shape_glasses(p: dict, f: _Frame, m: dict, g: dict) -> None:
    """Round or rectangular lenses with their frame, the bridge and the temples to the ears."""
    eyes, eye_y = g["eyes"], g["eye_y"]
    gl = f.new()
    lenses = []
    for side in (+1, -1):
        ex = eyes[side][0]
        if p["glasses_round"]:
            lens = _ellipse(ex, eye_y + 0.006, p["ew"] * 1.5, p["eh"] * 1.5 + 0.016)
        else:
            w, h = p["ew"] * 1.5, p["eh"] * 1.4 + 0.014
            lens = np.array(
                [
                    [ex - w, eye_y - h],
                    [ex + w, eye_y - h],
                    [ex + w * 0.92, eye_y + h],
                    [ex - w * 0.92, eye_y + h],
                ]
            )
        lenses.append(lens)
    f.fill(gl, lenses)
    for lens in lenses:
        f.stroke(gl, lens, p["frame_w"] * 2, closed=True)
    e1, e2 = eyes[+1][0] - p["ew"] * 1.45, eyes[-1][0] + p["ew"] * 1.45
    bridge = np.array([[e2, eye_y - 0.006], [g["fx"], eye_y - 0.012], [e1, eye_y - 0.006]])
    f.stroke(gl, bridge, p["frame_w"] * 1.6)
    temples = []
    for side in (+1, -1):
        x0 = eyes[side][0] + side * p["ew"] * 1.5
        tp = np.array([[x0, eye_y - 0.01], [_CX + side * (p["a"] + 0.015), g["ear_y"] - 0.02]])
        f.stroke(gl, tp, p["frame_w"] * 1.6)
        temples.append(tp)
    m["eye_g"] = gl
    g["glasses"] = (lenses, bridge, temples)


def _shape_earrings(p: dict, f: _Frame, m: dict, g: dict) -> np.ndarray:
    """Studs, drops or hoops under both ear lobes; returns what neck and cloth must leave free."""
    er = f.new()
    drops = []
    r = p["earring_r"]
    for side in (+1, -1):
        ex, ey = g[f"ear_{side}"]
        c = (ex - side * 0.004, ey + p["ear_h"] * 0.92 + r)
        if p["earring_kind"] == 0:
            shape = _ellipse(c[0], c[1], r, r)
        elif p["earring_kind"] == 1:
            shape = _ellipse(c[0], c[1] + r, r * 0.7, r * 1.6)
        else:
            shape = _ellipse(c[0], c[1] + r, r * 1.5, r * 1.7)
        drops.append(shape)
        if p["earring_kind"] == 2:
            f.stroke(er, shape, 0.007, closed=True)
        else:
            f.fill(er, [shape])
    m["ear_r"] = er
    g["earrings"] = drops
    return er


def _shape_necklace(p: dict, f: _Frame, m: dict, g: dict) -> np.ndarray:
    """A chain hanging below the neck; returns its core, which neck and cloth must leave free."""
    nwid, sy = g["nwid"], p["shoulder_y"]
    nx = np.linspace(-nwid * 1.05, nwid * 1.05, 25)
    ny_ = sy - 0.07 + p["necklace_depth"] * (1 - (nx / (nwid * 1.05)) ** 2)
    chain = np.stack([_CX + nx, ny_], 1)
    core = f.stroke(f.new(), chain, p["necklace_w"])
    # the annotated necklace is a pixel wider on each side than what neck and cloth leave free
    m["neck_l"] = cv2.dilate(core, np.ones((3, 3), np.uint8))
    g["necklace"] = chain
    return core


def _shapes(p: dict, f: _Frame) -> tuple[dict[str, np.ndarray], dict]:
    """Part extents (uint8 0/1) in merge-ready form, plus geometry the renderer reuses."""
    g: dict = {}
    m: dict[str, np.ndarray] = {}
    for shape in (_shape_skin, _shape_eyes_and_brows, _shape_nose, _shape_ears, _shape_lips):
        shape(p, f, m, g)
    _shape_neck_and_cloth(p, f, m, g)
    _shape_hair(p, f, m, g)
    if p["hat"]:
        _shape_hat(p, f, m, g)
    if p["glasses"]:
        _shape_glasses(p, f, m, g)
    excl = f.new()
    if p["earrings"]:
        excl |= _shape_earrings(p, f, m, g)
    if p["necklace"]:
        excl |= _shape_necklace(p, f, m, g)
    # neck and cloth are painted last in the official order: keep them off what is in front of them
    m["neck"] = m["neck"] & (1 - excl)
    m["cloth"] = m["cloth"] & (1 - excl) & (1 - m["hair"])
    return m, g


# ----------------------------------------------------------------------------- rendering
_CLS = {name: i + 1 for i, name in enumerate(PART_ORDER)}


def _merge(masks: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Merge part masks in the official order: a later part overrides, label = position + 1."""
    label = np.zeros((size, size), np.uint8)
    for i, name in enumerate(PART_ORDER):
        mk = masks.get(name)
        if mk is not None:
            label[mk.astype(bool)] = i + 1
    return label


class _Regions:
    """Flat pixel indices of every class of a label map (one stable sort instead of 19 scans)."""

    def __init__(self, label: np.ndarray) -> None:
        flat = label.ravel()
        self.order = np.argsort(flat, kind="stable")
        counts = np.bincount(flat, minlength=len(_CLS) + 1)
        self.bounds = np.concatenate([[0], np.cumsum(counts)])

    def idx(self, *names: str) -> np.ndarray:
        parts = [self.order[self.bounds[_CLS[n]] : self.bounds[_CLS[n] + 1]] for n in names]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _draw_clipped(
    img: np.ndarray, region: np.ndarray, f: _Frame, draws: list[tuple[np.ndarray, tuple | list]]
) -> None:
    """Fill polygons on ``img`` but keep only the pixels inside ``region`` (uint8 0/1 mask)."""
    x, y, w, h = cv2.boundingRect(region)
    if w == 0 or h == 0:
        return
    sub = img[y : y + h, x : x + w]
    tmp = sub.copy()
    off = np.array([x * _ONE, y * _ONE], np.int32)
    for poly, colour in draws:
        cv2.fillPoly(tmp, [f.pix(poly) - off], colour, lineType=cv2.LINE_8, shift=_SHIFT)
    np.copyto(sub, tmp, where=region[y : y + h, x : x + w, None].astype(bool))


def _background(p: dict, size: int) -> np.ndarray:
    """A two-colour gradient with blurred clutter, drawn at half size and scaled up."""
    half = max(size // 2, 16)
    ys, xs = np.mgrid[0:half, 0:half].astype(np.float32) / half
    d = math.cos(p["bg_dir"]) * xs + math.sin(p["bg_dir"]) * ys
    d = (d - d.min()) / (d.max() - d.min() + 1e-6)
    c0, c1 = p["bg"]
    bg = c0 + (c1 - c0) * d[..., None]
    for kind, centre, hw, colour in p["clutter"]:
        c = (int(centre[0] * half), int(centre[1] * half))
        h = (max(1, int(hw[0] * half)), max(1, int(hw[1] * half)))
        col = colour.tolist()
        if kind == 0:
            cv2.rectangle(bg, (c[0] - h[0], c[1] - h[1]), (c[0] + h[0], c[1] + h[1]), col, -1)
        elif kind == 1:
            cv2.ellipse(bg, c, h, 0, 0, 360, col, -1)
        else:
            cv2.line(bg, (c[0] - h[0], c[1] - h[1]), (c[0] + h[0], c[1] + h[1]), col, max(1, h[0] // 6))
    bg = cv2.GaussianBlur(bg, (0, 0), max(half / 100, 0.8))
    return cv2.resize(bg, (size, size), interpolation=cv2.INTER_LINEAR)


@dataclass
class _Canvas:
    """One face being painted: its parameters, shapes and label map, the image and per-pixel coordinates.

    ``flat`` is a (N, 3) view of ``img``; ``U``/``V`` are each pixel's canonical coordinates and
    ``Uf``/``Vf``, ``fine`` and ``strands`` their flattened forms (fine noise, hair strands).
    """

    p: dict
    f: _Frame
    m: dict[str, np.ndarray]
    g: dict
    tex: dict[str, np.ndarray]
    label: np.ndarray
    reg: _Regions
    img: np.ndarray
    flat: np.ndarray
    U: np.ndarray
    V: np.ndarray
    Uf: np.ndarray
    Vf: np.ndarray
    fine: np.ndarray
    strands: np.ndarray

    def mask(self, *names: str) -> np.ndarray:
        """uint8 0/1 map of the pixels labelled with any of ``names``."""
        out = self.label == _CLS[names[0]]
        for name in names[1:]:
            out = out | (self.label == _CLS[name])
        return out.view(np.uint8)


def _canvas(p: dict, f: _Frame, m: dict[str, np.ndarray], g: dict, rng: np.random.Generator) -> _Canvas:
    """Merge the parts, draw the background and set up the coordinate and texture maps."""
    size = f.size
    tex = _textures(size)
    label = _merge(m, size)
    img = _background(p, size)
    U, V = f.canonical_grid(tex["xs"], tex["ys"])
    fine = np.ascontiguousarray(_window(tex["fine"], size, rng)).ravel()
    strands = np.ascontiguousarray(_window(tex["hair"], size, rng)).ravel()
    return _Canvas(
        p,
        f,
        m,
        g,
        tex,
        label,
        _Regions(label),
        img,
        img.reshape(-1, 3),
        U,
        V,
        U.ravel(),
        V.ravel(),
        fine,
        strands,
    )


def _skin_shade(c: _Canvas, i: np.ndarray) -> np.ndarray:
    """The skin tone at pixels ``i`` with soft radial shading, a shadow under the lip and blush."""
    p, g = c.p, c.g
    fx = 0.5 + p["yaw"]
    chin_y = g["mouth_y"] + p["gap"] / 2 + p["lt"] + 0.022
    u, v = c.Uf[i], c.Vf[i]
    r2 = ((u - 0.5) / p["a"]) ** 2 + ((v - 0.48) / p["b"]) ** 2
    shade = 1.03 - 0.2 * np.minimum(r2, 1.6) + 0.015 * c.fine[i]
    # a soft shadow under the lower lip, and cheeks that catch a little colour
    shade -= 0.08 * np.exp(-(((u - fx) / 0.05) ** 2 + ((v - chin_y) / 0.012) ** 2))
    cheeks = np.exp(-(((np.abs(u - fx) - 0.12) / 0.05) ** 2 + ((v - g["nose_y"] + 0.02) / 0.04) ** 2))
    out = p["skin"] * shade[:, None]
    out += (p["blush"] * cheeks)[:, None] * np.array([1.0, -0.45, -0.35], np.float32)
    return out


def _paint_skin(c: _Canvas) -> None:
    """Skin, ears and the glasses' background in the shaded tone; the nose lit from one side; the neck
    in the chin's shadow."""
    p, g, reg, flat = c.p, c.g, c.reg, c.flat
    i = reg.idx("skin", "eye_g", "l_ear", "r_ear")
    flat[i] = _skin_shade(c, i)
    i = reg.idx("nose")
    side = 1.0 if p["light_dir"] < math.pi else -1.0
    flank = np.clip((c.Uf[i] - g["nose_tip"][0]) / 0.05, -1, 1)
    flat[i] = _skin_shade(c, i) * (1.0 - 0.1 * side * flank)[:, None]
    i = reg.idx("neck")
    flat[i] = (
        _skin_shade(c, i) * (0.72 + 0.2 * np.clip((c.Vf[i] - g["neck_top"] - 0.28) / 0.2, 0, 1))[:, None]
    )


def _paint_skin_details(c: _Canvas) -> None:
    """Ear hollows, nostrils and a highlight on the bridge, each kept inside its part."""
    p, g, skin_c = c.p, c.g, c.p["skin"]
    hollows = [
        (_ellipse(ex + s * 0.004, ey, p["ear_w"] * 0.45, p["ear_h"] * 0.6, n=16), (skin_c * 0.78).tolist())
        for s, (ex, ey) in ((s, g[f"ear_{s}"]) for s in (+1, -1))
    ]
    _draw_clipped(c.img, c.mask("l_ear", "r_ear"), c.f, hollows)
    tx, ty = g["nose_tip"]
    nostrils = [
        (_ellipse(tx + s * p["nw"] * 0.5, ty + 0.012, p["nw"] * 0.28, 0.008, n=12), (skin_c * 0.45).tolist())
        for s in (1, -1)
    ]
    bridge = (_ellipse(tx, ty - 0.035, 0.008, 0.045, n=12), np.minimum(skin_c * 1.1, 255).tolist())
    _draw_clipped(c.img, c.mask("nose", "skin"), c.f, [*nostrils, bridge])


def _paint_hair_and_brows(c: _Canvas) -> None:
    """Hair with strands radiating from the crown and a sheen; brows in a darker shade of it."""
    p, flat, size = c.p, c.flat, c.f.size
    i = c.reg.idx("hair")
    # strands radiate from the crown: sample the streak texture in polar coordinates around it
    du, dv = c.Uf[i] - 0.5, c.Vf[i] - (0.5 - p["b"] - 0.12)
    bank = c.tex["hair"]
    n = bank.shape[0]
    rows = (np.sqrt(du * du + dv * dv) * size).astype(np.int64) % n
    cols = (np.arctan2(du, dv) * (0.45 * size) + p["strand_phase"] * n).astype(np.int64) % n
    st = bank.ravel()[rows * n + cols]
    sheen = 0.35 * np.exp(-(((c.Vf[i] - (0.5 - p["b"] - 0.02)) / 0.05) ** 2))
    flat[i] = p["hair_c"] * (0.45 + st + sheen)[:, None] + 12 * (st[:, None] - 0.5)
    i = c.reg.idx("l_brow", "r_brow")
    brow_c = np.minimum(p["hair_c"], 75) * 0.7 + p["skin"] * 0.12
    flat[i] = brow_c * (0.75 + 0.5 * c.strands[i])[:, None]


def _paint_eyes(c: _Canvas) -> None:
    """Sclera, iris, pupil and glint, then the upper lid line."""
    p, g = c.p, c.g
    i = c.reg.idx("l_eye", "r_eye")
    c.flat[i] = np.array([225, 218, 212], np.float32) * (0.92 + 0.03 * c.fine[i])[:, None]
    draws = []
    for ex, _pts in g["eyes"].values():
        ix = ex + p["gaze"][0] * p["ew"]
        iy = g["eye_y"] + p["gaze"][1] * p["eh"]
        ir = p["eh"] * 1.15
        draws += [
            (_ellipse(ix, iy, ir, ir, n=20), p["eye_c"].tolist()),
            (_ellipse(ix, iy, ir * 0.45, ir * 0.45, n=12), [12, 10, 10]),
            (_ellipse(ix + ir * 0.3, iy - ir * 0.3, ir * 0.16, ir * 0.16, n=8), [250, 250, 250]),
        ]
    _draw_clipped(c.img, c.mask("l_eye", "r_eye"), c.f, draws)
    for _ex, pts in g["eyes"].values():
        c.f.stroke(c.img, pts[:14], 0.006, (25, 20, 20))


def _paint_lips(c: _Canvas) -> None:
    """The upper lip darker, the lower one with a highlight; an open mouth is dark, with teeth."""
    p, g, flat = c.p, c.g, c.flat
    lip = p["lip_c"]
    i = c.reg.idx("u_lip")
    flat[i] = lip * (0.78 + 0.04 * c.fine[i])[:, None]
    i = c.reg.idx("l_lip")
    hl = 1.0 + 0.18 * np.exp(-(((c.Vf[i] - g["mouth_y"] - p["gap"] / 2 - p["lt"] * 0.45) / 0.01) ** 2))
    flat[i] = np.minimum(lip * hl[:, None], 255)
    if "mouth" not in c.m:
        return
    flat[c.reg.idx("mouth")] = np.array([70, 22, 28], np.float32)
    if p["teeth"]:
        X, _uo, up_in, lo_in, _lo = g["lips"]
        teeth = np.concatenate(
            [np.stack([X, up_in], 1), np.stack([X, up_in + (lo_in - up_in) * 0.55], 1)[::-1]]
        )
        _draw_clipped(c.img, c.mask("mouth"), c.f, [(teeth, [232, 228, 215])])


def _paint_hat(c: _Canvas) -> None:
    """The hat's colour, lit from one side, with a darker band above the brim."""
    p = c.p
    _crown, _brim, hat_y = c.g["hat"]
    i = c.reg.idx("hat")
    c.flat[i] = p["hat_c"] * (0.8 + 0.3 * np.clip((c.Uf[i] - 0.3) / 0.4, 0, 1) + 0.05 * c.fine[i])[:, None]
    band = np.array([[0, hat_y - 0.05], [1, hat_y - 0.05], [1, hat_y - 0.02], [0, hat_y - 0.02]])
    _draw_clipped(c.img, c.mask("hat"), c.f, [(band, (p["hat_c"] * 0.5).tolist())])


def _paint_glasses(c: _Canvas) -> None:
    """Tinted lenses over what lies behind them, and the frame in its own colour."""
    p, f, flat = c.p, c.f, c.flat
    lenses, bridge, temples = c.g["glasses"]
    i = c.reg.idx("eye_g")
    flat[i] = flat[i] * 0.85 + np.array([150, 170, 190], np.float32) * 0.15
    frame = f.new()
    for lens in lenses:
        f.stroke(frame, lens, p["frame_w"] * 2, closed=True)
    f.stroke(frame, bridge, p["frame_w"] * 1.6)
    for tp in temples:
        f.stroke(frame, tp, p["frame_w"] * 1.6)
    sel = (frame.ravel()[i]).astype(bool)
    flat[i[sel]] = p["frame_c"]


def _paint_jewellery_and_cloth(c: _Canvas) -> None:
    """Metal earrings and necklace, and the clothes (plain with a weave, or striped)."""
    p, flat, Uf, Vf = c.p, c.flat, c.Uf, c.Vf
    if "ear_r" in c.m:
        i = c.reg.idx("ear_r")
        flat[i] = np.minimum(p["metal_c"] * (0.8 + 0.4 * c.strands[i])[:, None], 255)
    if "neck_l" in c.m:
        i = c.reg.idx("neck_l")
        flat[i] = np.minimum(p["metal_c"] * (0.75 + 0.5 * (np.sin(Uf[i] * 260) > 0))[:, None], 255)
    i = c.reg.idx("cloth")
    if p["cloth_stripes"]:
        pattern = 0.8 + 0.25 * (np.sin(Vf[i] * 90 + Uf[i] * 10) > 0)
    else:
        pattern = 0.9 + 0.1 * np.sin(Uf[i] * 40 + Vf[i] * 25) * np.clip(c.fine[i], -1, 1)
    flat[i] = p["cloth_c"] * pattern[:, None]


def _finish(c: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Lighting gradient, a slight blur (anti-aliasing) and sensor noise; the uint8 image."""
    p, size = c.p, c.f.size
    ca, sa = math.cos(p["light_dir"]), math.sin(p["light_dir"])
    light = 1.0 + 2.0 * p["light"] * (ca * (c.U - 0.5) + sa * (c.V - 0.5))
    img = c.img
    img *= light[..., None]
    img = cv2.GaussianBlur(img, (3, 3), 0.6 * max(size / 256, 0.5))
    img += p["noise"] * _window(c.tex["noise"], size, rng)
    return np.clip(img, 0, 255).astype(np.uint8)


def _render(p: dict, f: _Frame, m: dict[str, np.ndarray], g: dict, rng: np.random.Generator) -> np.ndarray:
    """Paint the face layer by layer over the background, inside the merged parts; the uint8 image."""
    c = _canvas(p, f, m, g, rng)
    _paint_skin(c)
    _paint_skin_details(c)
    _paint_hair_and_brows(c)
    _paint_eyes(c)
    _paint_lips(c)
    if "hat" in m:
        _paint_hat(c)
    if "eye_g" in m:
        _paint_glasses(c)
    _paint_jewellery_and_cloth(c)
    return _finish(c, rng)


# ----------------------------------------------------------------------------- public API
def _check(count: int | None, size: int, mask_size: int | None = None) -> None:
    if count is not None and int(count) < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if int(size) < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} pixels, got {size}")
    if mask_size is not None and int(mask_size) < MIN_SIZE:
        raise ValueError(f"mask size must be at least {MIN_SIZE} pixels, got {mask_size}")


def generate_face(
    seed: int, index: int, size: int, mask_size: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One synthetic face: an RGB uint8 (size, size, 3) image and part name -> bool mask (present parts only).

    Masks are ``mask_size`` x ``mask_size`` (default ``size``). The result depends only on
    ``(seed, index, size, mask_size)``.
    """
    _check(None, size, mask_size)
    image, masks, _ = _generate(seed, index, size)
    masks = _resize_masks(masks, mask_size)
    return image, {k: v.astype(bool) for k, v in masks.items()}


def face_landmarks(seed: int, index: int, size: int) -> np.ndarray:
    """The five landmarks of face ``index`` as drawn at ``size``: (5, 2) float pixel coordinates (x, y).

    Rows: image-left eye centre, image-right eye centre, nose tip, image-left and image-right mouth
    corner (the order :mod:`facesegm_utils.detect` returns). Coordinates are pixel centres (pixel
    (0, 0) is the point (0, 0)), as ``cv2.warpAffine`` reads them.
    """
    _check(None, size)
    p = _sample(np.random.default_rng([int(seed), int(index)]))
    frame = _Frame(size, p["angle"], p["scale"], p["shift"])
    g: dict = {}
    m: dict[str, np.ndarray] = {}
    for shape in (_shape_skin, _shape_eyes_and_brows, _shape_nose, _shape_lips):
        shape(p, frame, m, g)
    x, corner_y = g["lips"][0], g["mouth_y"] - 0.7 * p["smile"]
    pts = np.array(
        [
            [g["eyes"][-1][0], g["eye_y"]],
            [g["eyes"][+1][0], g["eye_y"]],
            list(g["nose_tip"]),
            [x[0], corner_y],
            [x[-1], corner_y],
        ]
    )
    return pts @ frame.m[:, :2].T + frame.m[:, 2] - 0.5


def _resize_masks(masks: dict[str, np.ndarray], mask_size: int | None) -> dict[str, np.ndarray]:
    """Part masks nearest-resized (pixel centres matched) to ``mask_size``; parts left empty are dropped."""
    if mask_size is None or all(mk.shape[0] == mask_size for mk in masks.values()):
        return masks
    dim = (int(mask_size), int(mask_size))
    resized = {name: cv2.resize(mk, dim, interpolation=cv2.INTER_NEAREST_EXACT) for name, mk in masks.items()}
    return {name: mk for name, mk in resized.items() if mk.any()}


def _generate(seed: int, index: int, size: int) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    if int(seed) < 0 or int(index) < 0:
        raise ValueError(f"seed and face index must be >= 0, got seed {seed} and index {index}")
    rng = np.random.default_rng([int(seed), int(index)])
    p = _sample(rng)
    frame = _Frame(size, p["angle"], p["scale"], p["shift"])
    shapes, geo = _shapes(p, frame)
    image = _render(p, frame, shapes, geo, rng)
    masks = {name: shapes[name] for name in PART_ORDER if name in shapes and shapes[name].any()}
    return image, masks, p["jpeg"]


def orig_index(seed: int, k: int) -> int:
    """The CelebA index face ``k`` claims to come from: a seed-dependent bijection of 0..202598.

    ``(step * k + offset) mod 202599`` with a step near the golden ratio spreads consecutive ids
    evenly over the official partition, so about 80/10/10 of them land in train/val/test.
    """
    rng = np.random.default_rng([int(seed), 0x5EED])
    count = layout.CELEBA_COUNT
    step = int(count * 0.6180339887) + int(rng.integers(-5000, 5000))
    while math.gcd(step, count) != 1:
        step += 1
    offset = int(rng.integers(count))
    return (step * int(k) + offset) % count


def write_mapping(out: str | os.PathLike[str], ids: Iterable[int], seed: int) -> Path:
    """Write ``CelebA-HQ-to-CelebA-mapping.txt`` for ``ids`` (merged with ids already listed there)."""
    path = Path(out) / layout.MAPPING_FILE
    rows = layout.read_mapping(path) if path.is_file() else {}
    for k in ids:
        rows[int(k)] = orig_index(seed, int(k))
    return atomic_write_text(path, layout.mapping_text(rows))


#: 8-bit PNG, no row filter + run-length deflate: about 5x faster than the defaults for 0/255 masks
_PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION, 1,
    cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
    cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
]  # fmt: skip


def _write_one(args: tuple[str, int, int, int, int | None]) -> int:
    """Generate face ``k`` and write its JPEG and part masks (atomically, without a per-file fsync:
    the dataset is regenerable from the seed, and one fsync per mask would dominate the run time)."""
    out, seed, k, size, mask_size = args
    root = Path(out)
    image, masks, quality = _generate(seed, k, size)
    masks = _resize_masks(masks, mask_size)
    jpeg = encode_image(image, ".jpg", jpeg_quality=quality)
    atomic_write_bytes(layout.image_file(root, k), jpeg, fsync=False)
    for name, mk in masks.items():
        ok, buf = cv2.imencode(".png", mk * np.uint8(255), _PNG_PARAMS)
        if not ok:  # pragma: no cover - cv2 failing on a plain uint8 array
            raise RuntimeError(f"could not encode mask {name} of face {k}")
        atomic_write_bytes(layout.mask_file(root, k, name), buf.tobytes(), fsync=False)
    return k


def write_dataset(
    out: str | os.PathLike[str],
    count: int,
    size: int = 256,
    seed: int = 0,
    start: int = 0,
    workers: int = 1,
    mask_size: int | None = None,
) -> Path:
    """Write faces ``start .. start+count-1`` in the raw CelebAMask-HQ layout under ``out``; return ``out``.

    Images are ``size`` x ``size``, part masks ``mask_size`` x ``mask_size`` (default ``size``; the
    real archive is 1024 and 512).
    """
    from tqdm.auto import tqdm

    _check(count, size, mask_size)
    mask_size = None if mask_size is None else int(mask_size)
    if int(start) < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = range(int(start), int(start) + int(count))
    jobs = [(str(out), int(seed), k, int(size), mask_size) for k in ids]
    bar = tqdm(total=len(jobs), desc="synthetic faces", unit="img")
    try:
        if workers == 1:
            for job in jobs:
                _write_one(job)
                bar.update()
        else:
            with get_context("spawn").Pool(int(workers)) as pool:
                for _ in pool.imap_unordered(_write_one, jobs, chunksize=8):
                    bar.update()
    finally:
        bar.close()
    write_mapping(out, ids, seed)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facesegm synth``."""
    parser.add_argument("--out", required=True, help="dataset folder to write (raw CelebAMask-HQ layout)")
    parser.add_argument("--count", type=int, required=True, help="number of faces")
    parser.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    parser.add_argument(
        "--mask-size",
        type=int,
        default=None,
        help="part mask size in pixels (default: the image size; the real archive has 1024 images, 512 masks)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--start", type=int, default=0, help="first face id (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm synth``."""
    out = write_dataset(
        args.out, args.count, args.size, args.seed, args.start, args.workers, mask_size=args.mask_size
    )
    masks = "" if args.mask_size is None else f", masks {args.mask_size}x{args.mask_size}"
    print(f"wrote {args.count} faces ({args.size}x{args.size}{masks}, seed {args.seed}) to {out}")
    return 0
