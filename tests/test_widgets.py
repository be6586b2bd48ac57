"""Tests for facesegm_utils.widgets: the pure render functions and the ipywidgets wiring."""

from __future__ import annotations

import numpy as np

from facesegm_utils.labels import NUM_CLASSES, class_id
from facesegm_utils.recolor import part_weight, recolor
from facesegm_utils.widgets import (
    NO_FRONTEND_NOTE,
    RecolorUI,
    render,
    render_parts,
    show_recolor_ui,
    side_by_side,
)


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


def test_render_refines_model_probabilities_with_the_photo() -> None:
    img, lbl = scene()
    proba = np.eye(NUM_CLASSES, dtype=np.float32)[lbl]
    out = render(img, proba, "hair", "#00ff00", 0.7)
    assert np.array_equal(out, recolor(img, part_weight(proba, "hair", image=img), "#00ff00", 0.7))


def test_render_parts_applies_every_part_in_turn() -> None:
    img, lbl = scene()
    both = render_parts(img, lbl, {"lips": ("#b0204a", 0.8), "hair": ("gold", 0.5)})
    lips = recolor(img, part_weight(lbl, "lips"), "#b0204a", 0.8, saturation=True)
    assert np.array_equal(both, recolor(lips, part_weight(lbl, "hair"), "gold", 0.5))
    assert np.array_equal(render_parts(img, lbl, {}), img)


def test_controls_update_the_after_image_only() -> None:
    img, lbl = scene()
    ui = RecolorUI(img, lbl, part="lips", color="#b0204a", strength=0.8)
    before_png, after_png = ui.before.value, ui.after.value
    assert np.array_equal(ui.result, render(img, lbl, "lips", "#b0204a", 0.8))
    ui.color.value = "#00ff00"  # what Enter (or leaving the box) sends
    assert np.array_equal(ui.result, render(img, lbl, "lips", "#00ff00", 0.8))
    assert ui.after.value != after_png and ui.after.value[:4] == b"\x89PNG"
    assert ui.swatch.value == "#00ff00"
    ui.strength.value = 0.5
    assert ui.settings == {"lips": ("#00ff00", 0.5)}
    ui.part.value = "hair"  # a new part starts from the current colour and strength; lips keep theirs
    assert ui.settings == {"lips": ("#00ff00", 0.5), "hair": ("#00ff00", 0.5)}
    ui.color.value = "gold"
    ui.strength.value = 0.9
    expected = render_parts(img, lbl, {"lips": ("#00ff00", 0.5), "hair": ("gold", 0.9)})
    assert np.array_equal(ui.result, expected)
    assert [label for label, _ in ui.part.options][:2] == ["lips ●", "hair ●"]
    ui.part.value = "lips"  # back to lips: the controls show the lips' own setting
    assert (ui.color.value, ui.strength.value) == ("#00ff00", 0.5)
    assert np.array_equal(ui.result, expected)
    ui.method.value = "hsv"
    assert np.array_equal(ui.result, render_parts(img, lbl, ui.settings, "hsv"))
    assert ui.before.value == before_png  # the before image never changes


def test_invalid_colour_shows_a_message_and_keeps_the_image() -> None:
    img, lbl = scene()
    ui = RecolorUI(img, lbl)
    png, result = ui.after.value, ui.result.copy()
    ui.color.value = "not-a-colour"
    assert "not a colour" in ui.status.value and "not-a-colour" in ui.status.value
    assert ui.after.value == png and np.array_equal(ui.result, result)
    assert ui.settings == {"lips": ("#b0204a", 0.8)}
    ui.color.value = "crimson"  # a valid colour clears the message
    assert ui.status.value == "" and ui.after.value != png


def test_reset_goes_back_to_the_start() -> None:
    img, lbl = scene()
    ui = RecolorUI(img, lbl, part="hair", color="gold", strength=0.6)
    start = ui.after.value
    ui.part.value = "lips"
    ui.color.value = "#123456"
    ui.method.value = "hsv"
    ui.restart()
    assert ui.settings == {"hair": ("gold", 0.6)}
    assert (ui.part.value, ui.color.value, ui.strength.value, ui.method.value) == ("hair", "gold", 0.6, "lab")
    assert ui.after.value == start


def test_images_are_shown_at_their_own_size() -> None:
    img, lbl = scene()
    ui = RecolorUI(img, lbl)
    assert (ui.after.layout.width, ui.after.layout.height) == ("40px", "32px")
    assert (ui.before.layout.width, ui.before.layout.height) == ("40px", "32px")


def test_without_a_front_end_one_line_is_printed(capsys) -> None:
    img, lbl = scene()
    assert show_recolor_ui(img, lbl, interactive=True) is None  # pytest is no Jupyter kernel
    assert capsys.readouterr().out.strip() == NO_FRONTEND_NOTE
    assert show_recolor_ui(img, lbl, interactive=False) is None
    assert "INTERACTIVE is False" in capsys.readouterr().out


def test_side_by_side_layout() -> None:
    a = np.zeros((4, 5, 3), np.uint8)
    b = np.full((4, 5, 3), 0.5, np.float32)
    out = side_by_side(a, b, gap=2)
    assert out.shape == (4, 12, 3) and out.dtype == np.uint8
    assert np.all(out[:, :5] == 0) and np.all(out[:, 5:7] == 255) and np.all(out[:, 7:] == 128)
