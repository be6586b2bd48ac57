"""A small recolour UI for notebooks: part, colour, strength and method controls over a before/after view.

All the work is done by the pure function :func:`render`, which tests call directly;
:class:`RecolorUI` only wires ipywidgets to it. Nothing is displayed at import or construction:
show ``ui.widget`` yourself (``display(ui.widget)`` or as a cell's last expression).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facesegm_utils.fileio import encode_image
from facesegm_utils.recolor import METHODS, RECOLOR_PARTS, part_weight, recolor


def render(
    image: np.ndarray,
    labels_or_proba: np.ndarray,
    part: str,
    color: Any,
    strength: float,
    method: str = "lab",
) -> np.ndarray:
    """The recoloured image for one setting of the controls (same dtype and shape as ``image``)."""
    weight = part_weight(labels_or_proba, part, image=image)
    return recolor(image, weight, color, strength, method, saturation=(part == "lips"))


def side_by_side(before: np.ndarray, after: np.ndarray, gap: int = 4) -> np.ndarray:
    """``before`` and ``after`` next to each other with a white gap (uint8 RGB)."""
    a, b = (np.asarray(x) for x in (before, after))
    if a.dtype != np.uint8:
        a = np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8)
    if b.dtype != np.uint8:
        b = np.clip(b * 255 + 0.5, 0, 255).astype(np.uint8)
    spacer = np.full((a.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([a, spacer, b], axis=1)


class RecolorUI:
    """Dropdown (part), ColorPicker, FloatSlider (strength), ToggleButtons (method) and an
    ``ipywidgets.Image`` showing before | after. ``widget`` is the box to display and ``result`` the
    latest recoloured array; changing any control's value re-renders."""

    def __init__(
        self,
        image: np.ndarray,
        labels_or_proba: np.ndarray,
        part: str = "lips",
        color: str = "#b0204a",
        strength: float = 0.8,
        method: str = "lab",
    ):
        import ipywidgets as w

        self.image = np.asarray(image)
        self.labels_or_proba = np.asarray(labels_or_proba)
        self.part = w.Dropdown(options=list(RECOLOR_PARTS), value=part, description="part")
        self.color = w.ColorPicker(value=color, description="colour", concise=False)
        self.strength = w.FloatSlider(value=strength, min=0.0, max=1.0, step=0.05, description="strength")
        self.method = w.ToggleButtons(options=list(METHODS), value=method, description="method")
        self.view = w.Image(format="png")
        self.status = w.HTML()
        self.widget = w.VBox(
            [w.HBox([self.part, self.color]), w.HBox([self.strength, self.method]), self.view, self.status]
        )
        self.result: np.ndarray = self.image
        for control in (self.part, self.color, self.strength, self.method):
            control.observe(self._on_change, names="value")
        self.update()

    def _on_change(self, _change: dict[str, Any]) -> None:
        self.update()

    def update(self) -> np.ndarray:
        """Re-render with the controls' current values; a bad value is shown, not raised."""
        try:
            self.result = render(
                self.image,
                self.labels_or_proba,
                self.part.value,
                self.color.value,
                float(self.strength.value),
                self.method.value,
            )
        except ValueError as exc:
            self.status.value = f"<b>cannot recolour:</b> {exc}"
            return self.result
        self.status.value = ""
        self.view.value = encode_image(side_by_side(self.image, self.result), ".png")
        return self.result
