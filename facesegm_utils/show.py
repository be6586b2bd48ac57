"""``facesegm show``: draw one view of a model's work and save it as a PNG.

* ``mask`` / ``overlay``: parse ANY image file with :class:`~facesegm_utils.inference.FaceParser`;
* ``hair_color`` / ``lip_color``: recolour the hair or lips with :func:`~facesegm_utils.recolor.recolor_part`;
* ``confusion_matrix``: evaluate the model on a prepared split (or read a REPORT.json) and draw the
  row-normalised heatmap.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from facesegm_utils.celebamask import SPLITS
from facesegm_utils.fileio import FacesegmError, read_rgb
from facesegm_utils.labels import colorize
from facesegm_utils.viz import plot_confusion_matrix, plot_images, plot_overlay, save_png

VIEWS: tuple[str, ...] = ("mask", "overlay", "confusion_matrix", "hair_color", "lip_color")
#: view -> (part for recolor_part, default colour)
RECOLOR_VIEWS: dict[str, tuple[str, str]] = {
    "hair_color": ("hair", "#8b3a1a"),
    "lip_color": ("lips", "#b0204a"),
}


def _need(value: Any, option: str, view: str) -> Any:
    if value is None:
        raise FacesegmError(f"view {view!r} needs {option}")
    return value


def render(
    view: str,
    model: str | os.PathLike[str] | None = None,
    image: str | os.PathLike[str] | None = None,
    data: str | os.PathLike[str] | None = None,
    split: str = "test",
    report: str | os.PathLike[str] | None = None,
    color: str | None = None,
    strength: float = 0.8,
    batch_size: int = 8,
    align: str = "auto",
) -> Figure:
    """Build the figure of one view (see the module docstring for what each view needs).

    ``align`` (mask, overlay and the colour views): how the image is parsed, see
    :class:`~facesegm_utils.inference.FaceParser`."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    if view == "confusion_matrix":
        return _confusion_figure(model, data, split, report, batch_size)
    rgb = read_rgb(_need(image, "--image PATH", view))
    model = _need(model, "--model M.keras", view)
    name = Path(str(image)).name
    from facesegm_utils.inference import FaceParser

    if view in ("mask", "overlay"):
        labels = FaceParser(model, align=align).predict_labels(rgb)
        if view == "overlay":
            return plot_overlay(rgb, labels, title=name)
        return plot_images([rgb, colorize(labels)], [name, "predicted mask"])
    from facesegm_utils.recolor import parse_color, recolor_part

    part, default = RECOLOR_VIEWS[view]
    target = parse_color(color if color is not None else default)  # a bad colour fails before the model loads
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    recoloured = recolor_part(
        rgb, FaceParser(model, align=align).predict_proba(rgb), part, target, strength=strength
    )
    hex_color = "#" + "".join(f"{c:02x}" for c in target)
    return plot_images([rgb, recoloured], [name, f"{part} -> {hex_color}, strength {strength:g}"])


def _confusion_figure(
    model: Any, data: Any, split: str, report: str | os.PathLike[str] | None, batch_size: int
) -> Figure:
    if report is not None:
        path = Path(report)
        if not path.is_file():
            raise FileNotFoundError(
                f"report not found: {path} (expected a REPORT.json from `facesegm evaluate`)"
            )
        try:
            rep = json.loads(path.read_text())
            matrix = rep["confusion_matrix"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise FacesegmError(
                f"{path} is not an evaluation report: expected JSON with a confusion_matrix"
            ) from None
    else:
        from facesegm_utils.evaluation import evaluate_model

        _need(model, "--model M.keras (or --report REPORT.json)", "confusion_matrix")
        _need(data, "--data PREPARED (or --report REPORT.json)", "confusion_matrix")
        rep = evaluate_model(model, data, split, batch_size=batch_size)
        matrix = rep["confusion_matrix"]
    miou = rep.get("mean_iou")
    title = f"{rep.get('split', split)} split, rows normalised" + (
        f" (mIoU {100 * miou:.1f}%)" if isinstance(miou, float) else ""
    )
    return plot_confusion_matrix(matrix, title=title)


def show(view: str, out: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Render ``view`` (keywords as for :func:`render`) and save it as a PNG at ``out``, atomically."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png path, got {out}")
    return save_png(render(view, **kwargs), out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facesegm show``."""
    parser.add_argument("-v", "--view", required=True, choices=VIEWS, help="what to draw")
    parser.add_argument("--model", default=None, help="trained model (RUN/model.keras)")
    parser.add_argument(
        "--image", default=None, help="any RGB image file (mask, overlay, hair_color, lip_color)"
    )
    parser.add_argument("--data", default=None, help="prepared dataset (confusion_matrix)")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split (confusion_matrix)")
    parser.add_argument(
        "--report", default=None, help="an existing REPORT.json instead of evaluating (confusion_matrix)"
    )
    parser.add_argument("--color", default=None, help="target colour, e.g. '#8b3a1a' (hair_color, lip_color)")
    parser.add_argument("--strength", type=float, default=0.8, help="recolour strength 0..1 (default 0.8)")
    parser.add_argument("--out", required=True, help="output PNG")
    from facesegm_utils.inference import add_align_argument

    add_align_argument(parser)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm show``."""
    path = show(
        args.view,
        args.out,
        model=args.model,
        image=args.image,
        data=args.data,
        split=args.split,
        report=args.report,
        color=args.color,
        strength=args.strength,
        align=args.align,
    )
    print(f"wrote {path}")
    return 0
