"""A small recolour UI for notebooks: part, colour, strength and method controls over a before/after view.

All the work is done by the pure functions :func:`render` (one part) and :func:`render_parts` (every
part that has a colour), which tests call directly; :class:`RecolorUI` only wires ipywidgets to
them. Nothing is displayed at import or construction: :func:`show_recolor_ui` displays the UI when a
widget front end is there and otherwise prints one line (the notebook's static gallery stands in).

The UI is driven from the keyboard as well as the mouse: Tab moves between the controls, the arrow
keys move the strength slider and pick the part or the method, and a colour typed in the text box is
applied with Enter (or by leaving the box). Each part keeps its own colour and strength, so lips and
hair are recoloured together; the part list marks the parts that have a colour.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from facesegm_utils.fileio import encode_image
from facesegm_utils.recolor import METHODS, RECOLOR_PARTS, parse_color, part_weight, recolor

#: what the notebook prints instead of the UI when no widget front end is present
NO_FRONTEND_NOTE = "no widget front end here (e.g. papermill): the static gallery above stands in for the UI"


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


def render_parts(
    image: np.ndarray,
    labels_or_proba: np.ndarray,
    settings: Mapping[str, tuple[Any, float]],
    method: str = "lab",
    weights: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """``image`` with every part of ``settings`` (``{part: (colour, strength)}``) recoloured, in order.

    ``weights`` is an optional cache of part weights (filled as they are computed).
    """
    out = np.asarray(image)
    cache = {} if weights is None else weights
    for part, (color, strength) in settings.items():
        if part not in cache:
            cache[part] = part_weight(labels_or_proba, part, image=image)
        out = recolor(out, cache[part], color, strength, method, saturation=(part == "lips"))
    return out


def to_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB image (uint8, or float in [0, 1])."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8)
    return encode_image(a, ".png")


def side_by_side(before: np.ndarray, after: np.ndarray, gap: int = 4) -> np.ndarray:
    """``before`` and ``after`` next to each other with a white gap (uint8 RGB)."""
    a, b = (np.asarray(x) for x in (before, after))
    if a.dtype != np.uint8:
        a = np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8)
    if b.dtype != np.uint8:
        b = np.clip(b * 255 + 0.5, 0, 255).astype(np.uint8)
    spacer = np.full((a.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([a, spacer, b], axis=1)


def frontend_available() -> bool:
    """Whether this runs in a Jupyter kernel with ipywidgets installed (a front end can show widgets)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def show_recolor_ui(image: np.ndarray, labels_or_proba: np.ndarray, interactive: bool = True, **kwargs: Any):
    """Display a :class:`RecolorUI` and return it, or print one line and return None when
    ``interactive`` is off or no widget front end is present. ``kwargs`` go to :class:`RecolorUI`."""
    if not interactive:
        print("INTERACTIVE is False: the widget UI is skipped (the gallery above is the static version)")
        return None
    if not frontend_available():
        print(NO_FRONTEND_NOTE)
        return None
    from IPython.display import display

    ui = RecolorUI(image, labels_or_proba, **kwargs)
    display(ui.widget)
    return ui


class RecolorUI:
    """Part list, colour box (+ swatch), strength slider, method buttons, reset, and the before and
    after images at their own size. ``settings`` maps each part given a colour to ``(colour,
    strength)``; ``result`` is the latest recoloured array; ``status`` shows a bad colour."""

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
        self._initial = (part, color, float(strength), method)
        self.settings: dict[str, tuple[str, float]] = {part: (color, float(strength))}
        self._weights: dict[str, np.ndarray] = {}
        self._syncing = False
        self.part = w.Dropdown(options=self._part_options(), value=part, description="part")
        self.color = w.Text(value=color, description="colour", continuous_update=False)
        self.color.layout.width = "16em"
        self.swatch = w.ColorPicker(value=_hex(color), concise=True, description="")
        self.strength = w.FloatSlider(
            value=strength, min=0.0, max=1.0, step=0.05, description="strength", continuous_update=False
        )
        self.method = w.ToggleButtons(
            options=list(METHODS), value=method, tooltips=["CIELAB", "HSV hue swap"]
        )
        self.method.style.button_width = "4em"
        self.reset = w.Button(description="reset", tooltip="back to the starting colours", icon="undo")
        self.status = w.HTML()
        h, wd = self.image.shape[:2]
        size = {"width": f"{wd}px", "height": f"{h}px", "object_fit": "none"}
        self.before = w.Image(value=to_png(self.image), format="png", layout=w.Layout(**size))
        self.after = w.Image(format="png", layout=w.Layout(**size))
        self.widget = w.VBox(
            [
                w.HBox([self.part, self.color, self.swatch]),
                w.HBox([self.strength, w.Label("method"), self.method, self.reset]),
                self.status,
                w.HBox([_captioned(w, "before", self.before), _captioned(w, "after", self.after)]),
            ]
        )
        self.widget.add_class("facesegm-recolor")
        self.result: np.ndarray = self.image
        self.part.observe(self._on_part, names="value")
        self.color.observe(self._on_color, names="value")
        self.swatch.observe(self._on_swatch, names="value")
        self.strength.observe(self._on_strength, names="value")
        self.method.observe(lambda _c: self.update(), names="value")
        self.reset.on_click(lambda _b: self.restart())
        self.update()

    def _part_options(self) -> list[tuple[str, str]]:
        return [(f"{p} ●" if p in self.settings else p, p) for p in RECOLOR_PARTS]

    def _set_controls(self, color: str, strength: float) -> None:
        self._syncing = True
        try:
            self.color.value, self.swatch.value, self.strength.value = color, _hex(color), strength
        finally:
            self._syncing = False

    def _on_part(self, change: dict[str, Any]) -> None:
        """A part chosen: it gets the current colour and strength unless it has its own already."""
        part = change["new"]
        if self._syncing:
            return
        if part not in self.settings:
            self.settings[part] = (self.color.value, float(self.strength.value))
        self._set_controls(*self.settings[part])
        self.update()

    def _on_color(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        text = str(change["new"]).strip()
        try:
            parse_color(text)
        except ValueError:
            self.status.value = (
                f"<b>not a colour:</b> {text!r}; try '#d4a84b', '#fa0' or a name such as 'crimson'"
            )
            return  # the image and the settings stay as they were
        self.settings[self.part.value] = (text, float(self.strength.value))
        self._set_controls(text, float(self.strength.value))
        self.update()

    def _on_swatch(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self.color.value = change["new"]  # goes through _on_color

    def _on_strength(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        color = self.settings.get(self.part.value, (self.color.value, 0.0))[0]
        self.settings[self.part.value] = (color, float(change["new"]))
        self.update()

    def restart(self) -> None:
        """The reset button: only the starting part, colour, strength and method again."""
        part, color, strength, method = self._initial
        self.settings = {part: (color, strength)}
        self._syncing = True
        try:
            self.part.options = self._part_options()
            self.part.value, self.method.value = part, method
        finally:
            self._syncing = False
        self._set_controls(color, strength)
        self.update()

    def update(self) -> np.ndarray:
        """Re-render every part that has a colour; a bad value is shown in the widget, not raised."""
        try:
            result = render_parts(
                self.image, self.labels_or_proba, self.settings, self.method.value, self._weights
            )
        except ValueError as exc:
            self.status.value = f"<b>cannot recolour:</b> {exc}"
            return self.result
        self.result = result
        self.status.value = ""
        self.after.value = to_png(result)
        options = self._part_options()
        if list(self.part.options) != options:
            self._syncing = True
            try:
                value = self.part.value
                self.part.options = options
                self.part.value = value
            finally:
                self._syncing = False
        return result


def _hex(color: str) -> str:
    """``#rrggbb`` of a colour the parser accepts (black for one it does not, for the swatch only)."""
    try:
        r, g, b = parse_color(color)
    except ValueError:
        return "#000000"
    return f"#{r:02x}{g:02x}{b:02x}"


def _captioned(w: Any, caption: str, image: Any) -> Any:
    """An image with its caption above it."""
    label = w.HTML(f"<b>{caption}</b>")
    return w.VBox([label, image])
