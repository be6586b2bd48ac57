"""Tests for facesegm_utils.recolor: invariants, colour accuracy, texture, dark hair, parsing, parts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facesegm_utils.labels import NUM_CLASSES, class_id
from facesegm_utils.recolor import (
    densest_window,
    edge_window,
    guided_filter,
    mean_lightness,
    parse_color,
    part_probability,
    part_weight,
    recolor,
    recolor_part,
    refine_weight,
)

HAIR, SKIN, MOUTH, U_LIP, L_LIP = (class_id(n) for n in ("hair", "skin", "mouth", "u_lip", "l_lip"))


def textured(base_rgb: tuple[int, int, int], amp: float = 14.0, size: int = 64, seed: int = 0) -> np.ndarray:
    """A uint8 image of colour ``base_rgb`` with smooth grey texture (like hair strands) of amplitude ``amp``."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.2)
    noise /= noise.std()
    img = np.asarray(base_rgb, np.float32)[None, None, :] + amp * noise[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def lab(img: np.ndarray) -> np.ndarray:
    """Float CIELAB (L 0..100) of a uint8 RGB image."""
    return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def square_weight(size: int = 64, lo: int = 16, hi: int = 48) -> np.ndarray:
    w = np.zeros((size, size), np.float32)
    w[lo:hi, lo:hi] = 1.0
    return w


# ------------------------------------------------------------------------------------ invariants
@pytest.mark.parametrize("method", ["lab", "hsv"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_outside_unchanged_dtype_shape_kept(method: str, dtype: type) -> None:
    img8 = textured((120, 80, 60))
    img = img8 if dtype == np.uint8 else img8.astype(np.float32) / 255.0
    w = np.zeros(img.shape[:2], np.float32)
    w[10:30, 20:50] = np.linspace(0.0, 1.0, 30, dtype=np.float32)[None, :]  # soft, with exact zeros
    out = recolor(img, w, "#2080ff", 1.0, method)
    assert out.dtype == img.dtype and out.shape == img.shape
    outside = w == 0 if method == "lab" else w < 0.5  # hsv pastes with a hard mask
    assert np.array_equal(out[outside], img[outside])  # bit-identical
    inside = w == 1.0
    assert np.abs(out[inside].astype(np.float64) - img[inside]).max() > 0  # something did change
    assert img is not out


@pytest.mark.parametrize("method", ["lab", "hsv"])
def test_strength_zero_is_identity(method: str) -> None:
    img = textured((40, 30, 25))
    out = recolor(img, square_weight(), "gold", 0.0, method)
    assert np.array_equal(out, img)


def test_soft_weight_blends_between_original_and_full() -> None:
    img = textured((150, 100, 80))
    full = recolor(img, square_weight(), "#3050d0", 1.0).astype(np.float32)
    half = recolor(img, square_weight() * 0.5, "#3050d0", 1.0).astype(np.float32)
    inside = square_weight() > 0
    # halfway in RGB, up to the mean's dependence on the weight map (none: constant weight) and rounding
    assert np.abs(half[inside] - (img[inside] + full[inside]) / 2).max() <= 1.0


# ------------------------------------------------------------------------------- colour accuracy
def test_target_chroma_reached_within_tolerance() -> None:
    # Mid-lightness skin-like texture, a target of similar lightness so nothing leaves the sRGB gamut.
    # Tolerance: chroma distance sqrt(da^2 + db^2) <= 2.0 on average and <= 3.5 for 99 % of the pixels.
    # 2.3 is the usual just-noticeable difference; the error left is the uint8 quantisation of the LAB
    # intermediate (1 unit in a and b) plus rounding each RGB channel to an integer on the way back.
    img = textured((170, 120, 100), amp=10)
    target = "#c04060"
    out = recolor(img, square_weight(), target, strength=1.0)
    inside = square_weight() > 0
    got = lab(out)[inside][:, 1:]
    want = lab(np.array([[parse_color(target)]], np.uint8))[0, 0, 1:]
    de = np.linalg.norm(got - want, axis=1)
    assert de.mean() <= 2.0, de.mean()
    assert np.percentile(de, 99) <= 3.5, np.percentile(de, 99)


def test_texture_kept_when_lifting_dark_hair() -> None:
    img = textured((35, 28, 24), amp=8, seed=3)
    w = square_weight()
    out = recolor(img, w, "#d4a84b", strength=1.0)
    inside = w > 0

    def detail(x: np.ndarray) -> np.ndarray:  # lightness minus its mean inside the part
        L = lab(x)[..., 0][inside]
        return L - L.mean()

    d0, d1 = detail(img), detail(out)
    r = np.corrcoef(d0, d1)[0, 1]
    assert r >= 0.9, r
    assert d1.std() >= d0.std()  # lifted dark hair keeps (here gains) contrast, it is not flattened


def test_dark_hair_gets_visibly_lighter_hsv_does_not() -> None:
    img = textured((30, 24, 20), amp=6, seed=1)
    w = square_weight()
    inside = w > 0
    l0 = lab(img)[..., 0][inside].mean()
    l_lab = lab(recolor(img, w, "#d4a84b", 1.0, "lab"))[..., 0][inside].mean()
    l_hsv = lab(recolor(img, w, "#d4a84b", 1.0, "hsv"))[..., 0][inside].mean()
    # target L is 71; the default moves the mean 70 % of the way: expect > +25 L; HSV keeps V: < +5
    assert l_lab - l0 > 25, (l0, l_lab)
    assert l_hsv - l0 < 5, (l0, l_hsv)
    # and light hair can be darkened
    blond = textured((215, 185, 120), amp=10, seed=2)
    lb0 = lab(blond)[..., 0][inside].mean()
    lb1 = lab(recolor(blond, w, "#3b2418", 1.0))[..., 0][inside].mean()
    assert lb0 - lb1 > 25, (lb0, lb1)


# ------------------------------------------------------------------------------------ validation
def test_invalid_inputs_raise_clear_errors() -> None:
    img = textured((100, 100, 100))
    w = square_weight()
    with pytest.raises(ValueError, match="shape"):
        recolor(img, w[:-1], "red")
    with pytest.raises(ValueError, match="NaN"):
        recolor(img, np.where(w > 0, np.nan, 0).astype(np.float32), "red")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        recolor(img, w * 2, "red")
    with pytest.raises(ValueError, match="strength"):
        recolor(img, w, "red", strength=1.5)
    with pytest.raises(ValueError, match="method"):
        recolor(img, w, "red", method="rgb")
    with pytest.raises(ValueError, match="RGB"):
        recolor(img[..., 0], w, "red")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        recolor(img.astype(np.float32), w, "red")  # float images must be 0..1
    with pytest.raises(ValueError, match="colour"):
        recolor(img, w, "not-a-colour")


# --------------------------------------------------------------------------------------- colours
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("#b0204a", (176, 32, 74)),
        ("#B0204A", (176, 32, 74)),
        ("  #fa0 ", (255, 170, 0)),
        ("crimson", (220, 20, 60)),
        ("Dark Red", (139, 0, 0)),
        ((1, 2, 3), (1, 2, 3)),
        ([255, 0, 128], (255, 0, 128)),
        (np.array([10, 20, 30], np.uint8), (10, 20, 30)),
        ((1.0, 0.5, 0.0), (255, 128, 0)),
    ],
)
def test_parse_color_valid(value: object, expected: tuple[int, int, int]) -> None:
    assert parse_color(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "#12345",
        "#ggg",
        "notacolour",
        "",
        (1, 2),
        (1, 2, 300),
        (-1, 0, 0),
        (1.5, 0.0, 0.0),
        (True, 0, 0),
        None,
        7,
    ],
)
def test_parse_color_invalid(value: object) -> None:
    with pytest.raises(ValueError, match="expected '#RRGGBB'"):
        parse_color(value)


# ----------------------------------------------------------------------------------------- parts
def mouth_scene(size: int = 48) -> np.ndarray:
    lbl = np.full((size, size), SKIN, np.uint8)
    lbl[18:22, 12:36] = U_LIP
    lbl[22:26, 14:34] = MOUTH
    lbl[26:31, 12:36] = L_LIP
    return lbl


def test_lips_exclude_the_mouth() -> None:
    lbl = mouth_scene()
    w = part_weight(lbl, "lips")
    assert np.all(w[lbl == MOUTH] == 0)
    assert np.all(w[lbl == U_LIP] > 0) and w.max() <= 1
    img = textured((200, 120, 120), size=48)
    out = recolor_part(img, lbl, "lips", "#b0204a", strength=1.0)
    assert np.array_equal(out[lbl == MOUTH], img[lbl == MOUTH])
    assert not np.array_equal(out[lbl == L_LIP], img[lbl == L_LIP])


def test_feathering_softens_only_the_edge() -> None:
    lbl = np.zeros((40, 40), np.uint8)
    lbl[10:30, 10:30] = HAIR
    hard = part_weight(lbl, "hair", feather=0)
    assert set(np.unique(hard)) == {0.0, 1.0}
    soft = part_weight(lbl, "hair", feather=2.0)
    assert soft[20, 20] == pytest.approx(1.0, abs=1e-4) and soft[0, 0] == 0.0
    edge = soft[20, 8:12]
    assert np.all((edge > 0) & (edge < 1)) and np.all(np.diff(edge) > 0)


def test_part_weight_from_probabilities_sums_the_part_classes() -> None:
    proba = np.zeros((2, 2, NUM_CLASSES), np.float32)
    proba[..., 0] = 1.0
    proba[0, 0, [0, U_LIP, L_LIP]] = [0.2, 0.5, 0.3]  # lips 0.8
    proba[0, 1, [0, MOUTH, U_LIP]] = [0.1, 0.6, 0.3]  # lips 0.3, the mouth part does not count
    prob, from_labels = part_probability(proba, "lips")
    assert not from_labels
    np.testing.assert_allclose(prob, [[0.8, 0.3], [0.0, 0.0]], atol=1e-6)
    w = part_weight(proba, "lips")  # no feather for probabilities; below 2 % counts as zero
    np.testing.assert_allclose(w, (np.array([[0.8, 0.3], [0, 0]]) - 0.02).clip(0) / 0.98, atol=1e-6)


def test_group_and_class_names_accepted_unknown_part_lists_valid_ones() -> None:
    lbl = mouth_scene()
    assert part_weight(lbl, "u_lip", feather=0).sum() == (lbl == U_LIP).sum()
    assert part_weight(lbl, "face", feather=0).sum() == lbl.size
    with pytest.raises(ValueError, match="unknown part 'lipz'.*lips, hair, brows, eyes, skin"):
        part_weight(lbl, "lipz")
    with pytest.raises(ValueError, match="ids outside"):
        part_weight(np.full((4, 4), 19, np.uint8), "hair")
    with pytest.raises(ValueError, match="label map"):
        part_weight(np.zeros((4, 4, 3), np.float32), "hair")


def test_mean_lightness_hand_values() -> None:
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = 255  # white: L = 100, black: L = 0
    assert mean_lightness(img, np.array([[1, 0], [0, 0]], bool)) == pytest.approx(100, abs=0.01)
    assert mean_lightness(img, np.array([[1, 1], [0, 0]], np.float32)) == pytest.approx(50, abs=0.01)
    assert np.isnan(mean_lightness(img, np.zeros((2, 2), bool)))


def test_edge_window_centres_on_the_top_edge() -> None:
    m = np.zeros((40, 60), bool)
    m[20:, 10:50] = True  # top edge: row 20, columns 10..49 -> middle column 30
    ys, xs = edge_window(m, 5)
    assert (ys.start, ys.stop, xs.start, xs.stop) == (15, 25, 25, 35)
    ys, xs = edge_window(np.zeros((40, 60), bool), 5)  # no part: the centre
    assert (ys.start, xs.start) == (15, 25)
    with pytest.raises(ValueError, match="does not fit"):
        edge_window(m, 30)


def test_guided_filter_keeps_constants_and_follows_the_guide() -> None:
    rng = np.random.default_rng(1)
    guide = rng.random((40, 48)).astype(np.float32)
    const = np.full((40, 48), 0.3, np.float32)
    # a constant input has zero covariance with the guide: a = 0, b = 0.3 everywhere
    assert np.allclose(guided_filter(guide, const, radius=3, eps=1e-3, subsample=1), 0.3, atol=1e-5)
    # the guide filtered by itself with a tiny eps: a ~ 1, b ~ 0, the guide comes back
    assert np.abs(guided_filter(guide, guide, radius=3, eps=1e-6, subsample=1) - guide).max() < 0.02


def _edge_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dark hair on the left of column 32, light background right; a model-like blurry hair probability."""
    img = np.full((64, 64, 3), 220, np.uint8)
    img[:, :32] = 40
    true = np.zeros((64, 64), bool)
    true[:, :32] = True
    x = np.arange(64, dtype=np.float32)
    proba = np.zeros((64, 64, NUM_CLASSES), np.float32)
    hair = np.clip(1.0 - (x - 26) / 14, 0.0, 1.0)  # 1 up to column 26, fades to 0 at 40: a halo past 32
    proba[..., class_id("hair")] = hair[None, :]
    proba[..., class_id("background")] = 1.0 - hair[None, :]
    return img, proba, true


def test_refinement_removes_the_halo_and_keeps_the_part() -> None:
    img, proba, true = _edge_scene()
    raw = part_weight(proba, "hair", refine=False)
    refined = part_weight(proba, "hair", image=img)  # probabilities + photo: refined by default
    assert np.array_equal(refined, refine_weight(raw, img))
    outside = ~true
    outside[:, 32:35] = False  # the halo is measured beyond 3 px of the true edge
    assert raw[outside].mean() > 0.02
    assert refined[outside].mean() < 0.75 * raw[outside].mean()  # less colour past the edge
    # the weight drops at the photo's edge (columns 31 -> 33) much more steeply than the model's
    assert np.all(refined[:, 31] - refined[:, 33] > 2 * (raw[:, 31] - raw[:, 33]))
    assert refined[:, :26].min() == 1.0  # the confident part stays fully recoloured
    assert np.all(refined[:, 50:] == 0.0)  # untouched far away: exactly zero, so pixels stay bit-identical


def test_refinement_is_off_for_label_maps_and_needs_the_photo() -> None:
    img, proba, true = _edge_scene()
    labels = np.where(true, class_id("hair"), 0).astype(np.uint8)
    assert np.array_equal(part_weight(labels, "hair", image=img), part_weight(labels, "hair"))
    with pytest.raises(ValueError, match="image"):
        part_weight(proba, "hair", refine=True)
    with pytest.raises(ValueError, match="radius"):
        refine_weight(np.ones((8, 8), np.float32), img[:8, :8], radius=-1)
    assert np.all(refine_weight(np.zeros((8, 8), np.float32), img[:8, :8]) == 0.0)


def test_densest_window_holds_the_most_and_stays_inside() -> None:
    v = np.zeros((20, 30), np.float32)
    v[12:15, 22:25] = 1.0  # a 3x3 block: every 6x6 window holding it sums to 9
    ys, xs = densest_window(v, 3)
    assert (ys.stop - ys.start, xs.stop - xs.start) == (6, 6)
    assert v[ys, xs].sum() == 9.0
    corner = np.zeros((20, 30), np.float32)
    corner[19, 29] = 5.0  # in the last corner: the window is clipped to end at the image border
    assert densest_window(corner, 4) == (slice(12, 20), slice(22, 30))
    with pytest.raises(ValueError, match="does not fit"):
        densest_window(v, 11)
