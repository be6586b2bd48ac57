"""Natural recolouring of one face part: lips, hair, brows, eyes (iris tint), skin (foundation), ...

The default method (``"lab"``) keeps the photo's lightness texture. It works in CIELAB, where
lightness ``L`` and chroma ``(a, b)`` are separate:

* the chroma inside the part is moved to the target's ``(a, b)``;
* the lightness is moved as a whole: the part's mean ``L`` goes a fraction ``lightness`` of the
  way to the target's ``L``, while each pixel keeps its own detail ``L - mean(L)`` (scaled mildly,
  so lifted dark hair gains a little contrast and darkened light hair loses a little);
* the result is blended into the photo with ``alpha = strength * weight``, so a soft (feathered or
  probabilistic) mask gives soft edges and pixels with weight 0 stay bit-for-bit the same.

``method="hsv"`` is the earlier project's recipe kept for comparison: replace the HSV hue (and the
saturation for lips) and paste the result back with a hard mask (weight >= 0.5). Its lightness stays
that of the photo, which is why very dark hair barely changes.

Only the bounding box of ``weight > 0`` is processed, with OpenCV's uint8 LAB conversion for uint8
frames; that keeps the default method at a few milliseconds per 512x512 frame on one core (see
``benchmarks/bench_recolor.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import cv2
import numpy as np

from facesegm_utils.labels import CLASSES, NUM_CLASSES, PART_GROUPS, class_id

#: The parts the recolouring application offers first, with the classes they cover. Lips never
#: include the mouth (teeth, tongue); skin covers the nose too, as a foundation would.
RECOLOR_PARTS: dict[str, tuple[str, ...]] = {
    "lips": ("u_lip", "l_lip"),
    "hair": ("hair",),
    "brows": ("l_brow", "r_brow"),
    "eyes": ("l_eye", "r_eye"),
    "skin": ("skin", "nose"),
}
METHODS: tuple[str, ...] = ("lab", "hsv")
#: Probabilities below this count as "not the part" so that the untouched area stays untouched.
PROBA_FLOOR: float = 0.02
#: Edge-aware refinement of probability masks (:func:`refine_weight`): guided-filter radius as a
#: fraction of the part's size (the square root of its area, so hair gets a wide window and lips a
#: narrow one), its regulariser (guide in 0..1), and the confidence ramp applied after it (weights
#: below ``lo`` become 0, above ``hi`` 1). Tuned on model masks in ``benchmarks/bench_recolor.py``.
GUIDED_RADIUS_SCALE: float = 0.05
GUIDED_EPS: float = 1e-3
REFINE_RAMP: tuple[float, float] = (0.4, 0.8)

_HEX_RE = re.compile(r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_COLOR_FORMS = (
    "'#RRGGBB', '#RGB', a CSS colour name such as 'crimson', 3 ints in 0..255 such as (176, 32, 74), "
    "or 3 floats in 0..1 such as (0.69, 0.13, 0.29)"
)


def valid_parts() -> list[str]:
    """Every part name :func:`part_weight` accepts: the recolour parts, the label groups and the classes."""
    return list(dict.fromkeys([*RECOLOR_PARTS, *PART_GROUPS, *CLASSES]))


def parse_color(c: str | Sequence[int] | Sequence[float] | np.ndarray) -> tuple[int, int, int]:
    """Parse a colour into an RGB tuple of ints 0..255.

    Accepted: ``"#RRGGBB"``, ``"#RGB"``, a CSS4 colour name (matplotlib's table, case and spaces
    ignored), a sequence of 3 ints in 0..255, or a sequence of 3 floats in 0..1 (scaled by 255).
    A sequence mixing ints and floats is read as floats. Anything else raises ``ValueError``.
    """
    if isinstance(c, str):
        s = c.strip()
        m = _HEX_RE.match(s)
        if m:
            h = m.group(1)
            if len(h) == 3:
                h = "".join(ch * 2 for ch in h)
            return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
        from matplotlib.colors import CSS4_COLORS

        name = s.lower().replace(" ", "").replace("_", "")
        if name in CSS4_COLORS:
            return parse_color(CSS4_COLORS[name])
        raise ValueError(f"unknown colour {c!r}; expected {_COLOR_FORMS}")
    if isinstance(c, (Sequence, np.ndarray)) and not isinstance(c, (bytes, bytearray)):
        vals = list(np.asarray(c).ravel()) if isinstance(c, np.ndarray) else list(c)
        if len(vals) == 3 and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            for v in vals
        ):
            if all(isinstance(v, (int, np.integer)) for v in vals):
                if all(0 <= v <= 255 for v in vals):
                    return int(vals[0]), int(vals[1]), int(vals[2])
            elif all(math.isfinite(float(v)) and 0.0 <= float(v) <= 1.0 for v in vals):
                r, g, b = (int(round(float(v) * 255)) for v in vals)
                return r, g, b
    raise ValueError(f"invalid colour {c!r}; expected {_COLOR_FORMS}")


def _rgb_to_lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """CIELAB (L 0..100, a, b) of one RGB colour, with OpenCV's D65 conversion."""
    px = np.array([[rgb]], dtype=np.float32) / 255.0
    lab = cv2.cvtColor(px, cv2.COLOR_RGB2Lab)[0, 0]
    return float(lab[0]), float(lab[1]), float(lab[2])


def part_classes(part: str) -> tuple[int, ...]:
    """Class ids of a recolour part, label group or class name; ``ValueError`` listing the valid names."""
    if not isinstance(part, str):
        raise ValueError(f"part must be a name such as 'lips', got {part!r}")
    if part in RECOLOR_PARTS:
        return tuple(class_id(n) for n in RECOLOR_PARTS[part])
    if part in PART_GROUPS:
        return tuple(class_id(n) for n in PART_GROUPS[part])
    if part in CLASSES:
        return (class_id(part),)
    raise ValueError(f"unknown part {part!r}; expected one of: {', '.join(valid_parts())}")


def part_probability(labels_or_proba: np.ndarray, part: str) -> tuple[np.ndarray, bool]:
    """The raw, unfeathered part map (H, W) float32 in [0, 1] and whether the input was a label map.

    A label map (H, W) of integer class ids gives a 0/1 mask; probabilities (H, W, 19) give the sum
    of the part's class probabilities. This is what video smoothing averages over time.
    """
    ids = part_classes(part)
    arr = np.asarray(labels_or_proba)
    if arr.ndim == 2 and (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        if arr.size and (arr.min() < 0 or arr.max() >= NUM_CLASSES):
            raise ValueError(
                f"label map holds ids outside [0, {NUM_CLASSES}): min {arr.min()}, max {arr.max()}"
            )
        return np.isin(arr, ids).astype(np.float32), True
    if arr.ndim == 3 and arr.shape[2] == NUM_CLASSES and np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("class probabilities contain NaN or infinity")
        prob = arr[..., list(ids)].sum(axis=2, dtype=np.float32)
        return np.clip(prob, 0.0, 1.0), False
    raise ValueError(
        f"expected a label map (H, W) of integer class ids or probabilities (H, W, {NUM_CLASSES}) float, "
        f"got shape {arr.shape} dtype {arr.dtype}"
    )


def default_feather(shape: tuple[int, ...]) -> float:
    """The Gaussian sigma (pixels) used to soften a label-map edge: about 0.3 % of the image side, >= 1."""
    return max(1.0, 0.003 * max(shape[:2]))


def _bbox(mask: np.ndarray, pad: int = 0) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        slice(max(0, rows[0] - pad), min(h, rows[-1] + 1 + pad)),
        slice(max(0, cols[0] - pad), min(w, cols[-1] + 1 + pad)),
    )


def feather_weight(prob: np.ndarray, sigma: float, from_labels: bool) -> np.ndarray:
    """Turn a raw part map into a weight: Gaussian-blur it by ``sigma`` px (0 = none) and, for
    probabilities, zero everything below :data:`PROBA_FLOOR` so the untouched area stays exact."""
    w = np.asarray(prob, dtype=np.float32)
    if not from_labels:
        w = np.clip((w - PROBA_FLOOR) / (1.0 - PROBA_FLOOR), 0.0, 1.0)
    if sigma and sigma > 0:
        pad = int(math.ceil(3 * sigma)) + 1
        box = _bbox(w > 0, pad)
        out = np.zeros_like(w)
        if box is not None:
            out[box] = cv2.GaussianBlur(w[box], (0, 0), float(sigma), borderType=cv2.BORDER_REPLICATE)
            out[out < 1e-3] = 0.0
        w = np.clip(out, 0.0, 1.0)
    return w


def _iris_factor(image: np.ndarray, eye: np.ndarray) -> np.ndarray:
    """1 on the darker (iris/pupil) pixels of the eye region, 0 on the white, a smooth ramp between."""
    img8 = (
        image if image.dtype == np.uint8 else np.clip(np.asarray(image) * 255 + 0.5, 0, 255).astype(np.uint8)
    )
    lum = cv2.cvtColor(img8, cv2.COLOR_RGB2GRAY).astype(np.float32)
    inside = eye > 0.5
    if not inside.any():
        return np.ones_like(eye)
    ref = float(np.median(lum[inside]))
    return np.clip((ref + 12.0 - lum) / 24.0, 0.0, 1.0)


def part_weight(
    labels_or_proba: np.ndarray,
    part: str,
    feather: float | None = None,
    image: np.ndarray | None = None,
    refine: bool | None = None,
) -> np.ndarray:
    """Recolour weight (H, W) float32 in [0, 1] of one part.

    ``labels_or_proba`` is a label map (H, W) of class ids, feathered with a Gaussian of
    ``feather`` px (default :func:`default_feather`), or class probabilities (H, W, 19), whose part
    sum is already soft (``feather`` defaults to 0 there). ``part`` is ``lips`` (upper + lower lip,
    never the mouth), ``hair``, ``brows``, ``eyes``, ``skin`` (skin + nose), or any
    ``labels.PART_GROUPS`` name or class name. For ``eyes``, passing ``image`` limits the tint to the
    darker iris pixels instead of the whole eye. ``refine`` runs :func:`refine_weight` with ``image``
    as the guide; by default (``None``) it does so for probabilities when ``image`` is given, since a
    model's soft mask bleeds past the part (a label map's feathered edge does not).
    """
    prob, from_labels = part_probability(labels_or_proba, part)
    if refine is None:
        refine = image is not None and not from_labels
    if refine and image is None:
        raise ValueError("refine=True needs the photo as image= (it guides the refinement)")
    if feather is None:
        feather = default_feather(prob.shape) if from_labels else 0.0
    if not math.isfinite(feather) or feather < 0:
        raise ValueError(f"feather must be a finite sigma >= 0 in pixels, got {feather!r}")
    w = weight_from_probability(
        prob, part, feather=float(feather), from_labels=from_labels, labels=labels_or_proba, image=image
    )
    return refine_weight(w, image) if refine else w


def _guided_coefficients(
    guide: np.ndarray, src: np.ndarray, radius: int, eps: float, subsample: int
) -> tuple[np.ndarray, np.ndarray]:
    """Box-averaged guided-filter coefficients ``(a, b)`` of ``src`` with guide ``guide`` (both float32,
    same shape), computed on a ``subsample``-times smaller grid and returned at that grid's size."""
    h, w = src.shape
    s = subsample if min(h, w) >= 4 * subsample else 1
    if s > 1:
        small = (max(1, w // s), max(1, h // s))
        guide = cv2.resize(guide, small, interpolation=cv2.INTER_AREA)
        src = cv2.resize(src, small, interpolation=cv2.INTER_AREA)
    k = (2 * max(1, round(radius / s)) + 1,) * 2

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, k, borderType=cv2.BORDER_REFLECT)

    mean_g, mean_p = box(guide), box(src)
    a = (box(guide * src) - mean_g * mean_p) / (box(guide * guide) - mean_g * mean_g + eps)
    b = mean_p - a * mean_g
    return box(a), box(b)


def guided_filter(
    guide: np.ndarray, src: np.ndarray, radius: int, eps: float, subsample: int = 2
) -> np.ndarray:
    """Fast guided filter (He & Sun 2015) of ``src`` (H, W) float32 with a grey ``guide`` (H, W) in 0..1.

    The output is locally an affine function of the guide, so it follows the guide's edges. The
    coefficients are computed from OpenCV box filters on a ``subsample``-times smaller grid and
    upsampled bilinearly (the "fast" variant: a few times cheaper, visually the same).
    """
    h, w = src.shape
    a, b = _guided_coefficients(guide, src, radius, eps, subsample)
    if a.shape != (h, w):
        a = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)
    return a * guide + b


def refine_weight(
    weight: np.ndarray, image: np.ndarray, radius: float | None = None, eps: float = GUIDED_EPS
) -> np.ndarray:
    """Edge-aware refinement of a soft part mask, guided by the photo: no colour halo around the part.

    A guided filter with the photo's grey levels as guide makes the mask's edge follow the photo's
    edge (radius ``radius`` px, default :data:`GUIDED_RADIUS_SCALE` times the square root of the
    part's area); the confidence ramp :data:`REFINE_RAMP` then drops the low, uncertain weights a
    model spreads around a part (the halo) and makes confident ones full. Only the padded bounding box
    of the weights of at least half the ramp's floor is filtered, and weights below
    :data:`PROBA_FLOOR` become exactly 0, so the rest of the photo stays bit-for-bit untouched.
    """
    img = _check_image(image)
    w = _check_weight(weight, img.shape[:2])
    r = max(1.0, GUIDED_RADIUS_SCALE * math.sqrt(float(w.sum()))) if radius is None else float(radius)
    if not math.isfinite(r) or r <= 0 or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"radius and eps must be positive numbers, got {radius!r} and {eps!r}")
    out = np.zeros_like(w)
    lo, hi = REFINE_RAMP
    # far from any weight of half the ramp's floor nothing can reach the floor: filter only near the part
    box = _bbox(w >= lo / 2, int(math.ceil(2 * r)) + 2)
    if box is None:
        return out
    img8 = img if img.dtype == np.uint8 else np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    grey = cv2.cvtColor(np.ascontiguousarray(img8[box]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    # the fast variant's grid: step 2, growing with the radius (r / 4, as its authors suggest) up to 4
    step = int(min(4, max(2, r // 4)))
    a, b = _guided_coefficients(grey / 255.0, np.ascontiguousarray(w[box]), round(r), float(eps), step)
    # fold the ramp (q - lo) / (hi - lo) and the guide's 1/255 into the coefficients on the small grid,
    # so the full-size work is two resizes, one multiply-add, a clip and the floor
    a = a / (255.0 * (hi - lo))
    b = (b - lo) / (hi - lo)
    hb, wb = grey.shape
    if a.shape != (hb, wb):
        a = cv2.resize(a, (wb, hb), interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(b, (wb, hb), interpolation=cv2.INTER_LINEAR)
    q = cv2.min(cv2.add(cv2.multiply(a, grey), b), 1.0)
    out[box] = cv2.threshold(q, PROBA_FLOOR, 0.0, cv2.THRESH_TOZERO)[1]
    return out


def weight_from_probability(
    prob: np.ndarray,
    part: str,
    *,
    feather: float,
    from_labels: bool,
    labels: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """The second half of :func:`part_weight`, for a part map that was processed in between (e.g.
    averaged over video frames): feather it, keep the mouth out of the lips (``labels`` given as a
    label map), and limit the eyes to the iris (``image`` given)."""
    w = feather_weight(prob, feather, from_labels)
    if part == "lips" and labels is not None and np.ndim(labels) == 2:
        # the blur must not tint the teeth: the mouth class stays exactly untouched
        w[np.asarray(labels) == class_id("mouth")] = 0.0
    if part == "eyes" and image is not None:
        img = np.asarray(image)
        if img.shape[:2] != w.shape or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                f"image of shape {img.shape} does not match the part map {w.shape} (H, W, 3 expected)"
            )
        w = w * _iris_factor(img, prob)
    return w.astype(np.float32, copy=False)


def mean_lightness(image: np.ndarray, weight: np.ndarray) -> float:
    """Weighted mean CIELAB lightness (0..100) of ``image`` (RGB uint8 or float 0..1) under ``weight``
    (a bool mask or weights in [0, 1]); NaN when the weight is all zero."""
    img = _check_image(image)
    w = _check_weight(np.asarray(weight, dtype=np.float32), img.shape[:2])
    total = float(w.sum())
    if total == 0:
        return float("nan")
    L = cv2.cvtColor(img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0), cv2.COLOR_RGB2Lab)[
        ..., 0
    ]
    return float((L * w).sum() / total)


def edge_window(mask: np.ndarray, half: int) -> tuple[slice, slice]:
    """A (2*half)-pixel square window centred on the part's top edge (the middle one of the pixels
    where the mask starts going down), clipped to the image: where a close-up shows the mask's edge."""
    m = np.asarray(mask).astype(bool)
    h, w = m.shape
    if 2 * half > min(h, w):
        raise ValueError(f"a window of {2 * half} px does not fit in a {w}x{h} image")
    edge = m.copy()
    edge[1:] &= ~m[:-1]
    ys, xs = np.nonzero(edge if edge.any() else m)
    if len(xs):
        i = np.argsort(xs, kind="stable")[len(xs) // 2]
        cy, cx = int(ys[i]), int(xs[i])
    else:
        cy, cx = h // 2, w // 2
    y0 = int(np.clip(cy - half, 0, h - 2 * half))
    x0 = int(np.clip(cx - half, 0, w - 2 * half))
    return slice(y0, y0 + 2 * half), slice(x0, x0 + 2 * half)


def densest_window(values: np.ndarray, half: int) -> tuple[slice, slice]:
    """The (2*half)-pixel square window holding the largest sum of ``values`` (H, W), inside the
    image: where a close-up shows most of something, e.g. the colour a refinement took away."""
    v = np.asarray(values, dtype=np.float32)
    h, w = v.shape
    if half < 1 or 2 * half > min(h, w):
        raise ValueError(f"a window of {2 * half} px does not fit in a {w}x{h} image")
    sums = cv2.boxFilter(v, -1, (2 * half, 2 * half), normalize=False, borderType=cv2.BORDER_CONSTANT)
    # box sums are anchored at the window centre; keep only windows fully inside the image
    inside = sums[half : h - half + 1, half : w - half + 1]
    y0, x0 = np.unravel_index(int(np.argmax(inside)), inside.shape)
    return slice(int(y0), int(y0) + 2 * half), slice(int(x0), int(x0) + 2 * half)


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"image must be RGB (H, W, 3), got shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    if np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            raise ValueError("image contains NaN or infinity")
        if img.min() < 0.0 or img.max() > 1.0:
            raise ValueError(
                f"float images must be RGB in [0, 1], got values in [{img.min():.3g}, {img.max():.3g}]"
            )
        return img
    raise ValueError(f"image must be uint8 (0..255) or float (0..1), got dtype {img.dtype}")


def _check_weight(weight: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    w = np.asarray(weight)
    if w.ndim == 3 and w.shape[2] == 1:
        w = w[..., 0]
    if w.shape != shape:
        raise ValueError(f"weight must have the image's shape {shape}, got {w.shape}")
    w = w.astype(np.float32, copy=False)
    if w.size:
        lo, hi = float(w.min()), float(w.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("weight contains NaN or infinity")
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"weight must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
        if lo < 0 or hi > 1:
            w = np.clip(w, 0.0, 1.0)
    return w


def _lightness_move(mean_l: float, target_l: float, lightness: float) -> tuple[float, float]:
    """New mean lightness and detail gain for a part whose weighted mean ``L`` is ``mean_l`` (0..100)."""
    new_mean = mean_l + lightness * (target_l - mean_l)
    # mild contrast change with the lightness move: lifted dark hair shows its strands, darkened
    # light hair does not look grey; bounded so texture is kept, never flattened or exaggerated
    gain = float(np.clip(math.sqrt(max(new_mean, 5.0) / max(mean_l, 5.0)), 0.75, 1.5))
    return new_mean, gain


def _lab_box_u8(
    img: np.ndarray, w: np.ndarray, target_lab: tuple[float, float, float], lightness: float
) -> np.ndarray:
    """Fully recoloured uint8 box (as at strength 1, weight 1); ``w`` only sets the part's mean ``L``.

    Chroma becomes the constant target (a, b) and the new lightness is an affine function of the old,
    so the output colour depends on the input's 8-bit ``L`` alone: one 256-entry RGB table, built
    with OpenCV's own LAB->RGB conversion, replaces a per-pixel conversion back.
    """
    lt, at, bt = target_lab
    l8 = cv2.extractChannel(cv2.cvtColor(img, cv2.COLOR_RGB2Lab), 0)
    mean_l = float(np.dot(l8.ravel().astype(np.float32), w.ravel()) / float(w.sum())) / 2.55
    new_mean, gain = _lightness_move(mean_l, lt, lightness)
    l_new = np.clip(np.rint(2.55 * (new_mean + gain * (np.arange(256) / 2.55 - mean_l))), 0, 255)
    lab_table = np.empty((1, 256, 3), np.uint8)
    lab_table[0, :, 0] = l_new
    lab_table[0, :, 1] = int(np.clip(round(at + 128), 0, 255))
    lab_table[0, :, 2] = int(np.clip(round(bt + 128), 0, 255))
    rgb_table = cv2.cvtColor(lab_table, cv2.COLOR_Lab2RGB)
    return cv2.LUT(cv2.merge([l8, l8, l8]), rgb_table)


def _lab_box_float(
    img: np.ndarray, w: np.ndarray, target_lab: tuple[float, float, float], lightness: float
) -> np.ndarray:
    """Float version of :func:`_lab_box_u8` for images in [0, 1]; returns float32."""
    lt, at, bt = target_lab
    lab = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2Lab)
    L = lab[..., 0]
    mean_l = float((L * w).sum() / float(w.sum()))
    new_mean, gain = _lightness_move(mean_l, lt, lightness)
    lab[..., 0] = np.clip(new_mean + gain * (L - mean_l), 0.0, 100.0)
    lab[..., 1] = at
    lab[..., 2] = bt
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)


def _hsv_box(img: np.ndarray, rgb: tuple[int, int, int], saturation: bool) -> np.ndarray:
    """The earlier recipe on a box: hue replaced (and saturation for lips), value kept; image's dtype."""
    scale = 255.0 if img.dtype == np.uint8 else 1.0
    hsv = cv2.cvtColor(img.astype(np.float32) / scale, cv2.COLOR_RGB2HSV)
    th, ts, _ = cv2.cvtColor(np.array([[rgb]], dtype=np.float32) / 255.0, cv2.COLOR_RGB2HSV)[0, 0]
    hsv[..., 0] = th
    if saturation:
        hsv[..., 1] = ts
    rec = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0)
    if img.dtype == np.uint8:
        return np.rint(rec * 255.0).astype(np.uint8)
    return rec


def recolor(
    image: np.ndarray,
    weight: np.ndarray,
    color: str | Sequence[int] | Sequence[float],
    strength: float = 0.8,
    method: str = "lab",
    *,
    lightness: float = 0.7,
    saturation: bool = False,
) -> np.ndarray:
    """Recolour ``image`` where ``weight`` > 0 toward ``color``; return a new array of the same dtype/shape.

    ``image`` is RGB uint8 (H, W, 3) or float in [0, 1]; ``weight`` (H, W) in [0, 1] (a soft mask);
    ``strength`` in [0, 1] (0 = identity). ``method="lab"`` (default) sets the chroma to the target's
    and moves the part's mean lightness ``lightness`` of the way to the target's, keeping each
    pixel's lightness detail; the result is blended in with ``alpha = strength * weight``.
    ``method="hsv"`` swaps the hue (and the saturation when ``saturation``, as the earlier project
    did for lips) and pastes with a hard mask ``weight >= 0.5``. Pixels with weight 0 are
    bit-identical to the input.
    """
    img = _check_image(image)
    w = _check_weight(weight, img.shape[:2])
    rgb = parse_color(color)
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating, np.integer)):
        raise ValueError(f"strength must be a number in [0, 1], got {strength!r}")
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be a number in [0, 1], got {strength!r}")
    if not isinstance(lightness, (int, float, np.floating, np.integer)) or not 0.0 <= float(lightness) <= 1.0:
        raise ValueError(f"lightness must be a number in [0, 1], got {lightness!r}")
    if method not in METHODS:
        raise ValueError(f"unknown recolour method {method!r}; expected one of {', '.join(METHODS)}")
    strength = float(strength)
    if method == "hsv":
        w = (w >= 0.5).astype(np.float32)
    inside = w > 0
    box = _bbox(inside)
    out = img.copy()
    if strength == 0.0 or box is None:
        return out
    src = np.ascontiguousarray(img[box])
    wb = np.ascontiguousarray(w[box])
    if method == "lab":
        if img.dtype == np.uint8:
            rec = _lab_box_u8(src, wb, _rgb_to_lab(rgb), float(lightness))
        else:
            rec = _lab_box_float(src, wb, _rgb_to_lab(rgb), float(lightness))
    else:
        rec = _hsv_box(src, rgb, saturation)
    alpha = wb * strength if strength != 1.0 else wb
    if img.dtype == np.uint8:
        blended = cv2.blendLinear(rec, src, alpha, 1.0 - alpha)
    else:
        srcf = src.astype(np.float32)
        blended = np.clip(srcf + alpha[..., None] * (rec - srcf), 0.0, 1.0).astype(img.dtype)
    # copy only where the weight is positive: every other pixel keeps its exact input value
    out[box] = cv2.copyTo(blended, inside[box].view(np.uint8), src.copy())
    return out


def recolor_part(
    image: np.ndarray,
    labels_or_proba: np.ndarray,
    part: str,
    color: str | Sequence[int] | Sequence[float],
    strength: float = 0.8,
    method: str = "lab",
    feather: float | None = None,
    **kwargs: float,
) -> np.ndarray:
    """Recolour one named part (see :func:`part_weight`) of ``image``; extra keywords go to :func:`recolor`.

    With ``method="hsv"`` the lips also take the target's saturation, as in the earlier project.
    """
    img = _check_image(image)
    weight = part_weight(labels_or_proba, part, feather=feather, image=img)
    if weight.shape != img.shape[:2]:
        raise ValueError(
            f"label map/probabilities of shape {weight.shape} do not match the image {img.shape[:2]}"
        )
    return recolor(img, weight, color, strength, method, saturation=(part == "lips"), **kwargs)
