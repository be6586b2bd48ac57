"""Tests for facesegm_utils.widgets: the pure render function and the ipywidgets wiring."""

from __future__ import annotations

import numpy as np

from facesegm_utils.labels import class_id
from facesegm_utils.recolor import part_weight, recolor
from facesegm_utils.widgets import RecolorUI, render, side_by_side


def scene() -> tuple[np.ndarray, np.ndarray]:
    lbl = np.full((32, 40), class_id("skin"), np.uint8)
    lbl[:10] = class_id("hair")
    lbl[20:23, 12:28] = class_id("u_lip")
    lbl[23:26, 12:28] = class_id("l_lip")
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(150, 20, (32, 40, 3)), 0, 255).astype(np.uint8)
    return img, lbl


def test_render_is_recolor_of_the_part() -> None:
    img, lbl = scene()
    out = render(img, lbl, "hair", "#00ff00", 0.7, "lab")
    assert np.array_equal(out, recolor(img, part_weight(lbl, "hair"), "#00ff00", 0.7))
    assert np.array_equal(out[15:], img[15:])  # far from the hair: untouched


def test_setting_a_widget_value_updates_the_output() -> None:
    img, lbl = scene()
    ui = RecolorUI(img, lbl)
    first = ui.result.copy()
    png = ui.view.value
    assert np.array_equal(first, render(img, lbl, "lips", "#b0204a", 0.8))
    ui.color.value = "#00ff00"
    assert np.array_equal(ui.result, render(img, lbl, "lips", "#00ff00", 0.8))
    assert ui.view.value != png and ui.view.value[:4] == b"\x89PNG"
    ui.part.value = "hair"
    assert np.array_equal(ui.result, render(img, lbl, "hair", "#00ff00", 0.8))
    ui.method.value = "hsv"
    assert np.array_equal(ui.result, render(img, lbl, "hair", "#00ff00", 0.8, "hsv"))
    ui.strength.value = 0.0
    assert np.array_equal(ui.result, img)
    assert ui.widget.children  # a box to display


def test_side_by_side_layout() -> None:
    a = np.zeros((4, 5, 3), np.uint8)
    b = np.full((4, 5, 3), 0.5, np.float32)
    out = side_by_side(a, b, gap=2)
    assert out.shape == (4, 12, 3) and out.dtype == np.uint8
    assert np.all(out[:, :5] == 0) and np.all(out[:, 5:7] == 255) and np.all(out[:, 7:] == 128)
