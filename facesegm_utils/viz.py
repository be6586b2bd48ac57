"""Figures for the course: colour-coded masks, overlays, error maps, per-class IoU, confusion matrix,
training curves and the class legend.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (safe under the Agg
backend and in papermill); nothing here calls ``plt.show()``. Save with
:func:`facesegm_utils.course.save_figure` or :func:`save_png`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from facesegm_utils.fileio import atomic_write_bytes, read_history
from facesegm_utils.labels import CLASSES, DISPLAY_NAMES, PALETTE, colorize

#: colour of wrongly labelled pixels in error maps
ERROR_COLOR = (255, 40, 40)


def _check_image(image: Any, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name} must be an RGB array of shape (H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _check_same_size(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(
            f"{what}: sizes differ, {a.shape[:2]} vs {b.shape[:2]}; expected the same height and width"
        )


def overlay(image: Any, labels: Any, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour-coded label map over an RGB image; background pixels stay untouched."""
    img = _check_image(image)
    lab = np.asarray(labels)
    _check_same_size(img, lab, "overlay")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    color = colorize(lab).astype(np.float32)
    out = img.astype(np.float32)
    fg = lab != 0
    out[fg] = (1 - alpha) * out[fg] + alpha * color[fg]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def error_map(y_true: Any, y_pred: Any, image: Any | None = None) -> np.ndarray:
    """RGB map of mistakes: wrong pixels in red over a dimmed grey image (or dark grey without one)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"error map: truth {t.shape} and prediction {p.shape} must have the same shape")
    if image is not None:
        img = _check_image(image)
        _check_same_size(img, t, "error map")
        grey = img.astype(np.float32).mean(axis=2, keepdims=True)
        base = np.repeat(0.35 * grey + 30, 3, axis=2).astype(np.uint8)
    else:
        base = np.full((*t.shape, 3), 60, dtype=np.uint8)
    base[t != p] = ERROR_COLOR
    return base


def _figure(nrows: int, ncols: int, cell: float = 2.4) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(cell * ncols, cell * nrows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    return fig, axes


def _show(ax: Any, arr: np.ndarray, title: str | None = None) -> None:
    ax.imshow(arr, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def plot_images(images: Sequence[Any], titles: Sequence[str] | None = None, cell: float = 4.0) -> Figure:
    """RGB images side by side in one row, with optional titles."""
    if len(images) == 0:
        raise ValueError("plot_images needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"plot_images: {len(titles)} titles for {len(images)} images")
    fig, axes = _figure(1, len(images), cell=cell)
    for k, img in enumerate(images):
        _show(axes[0, k], _check_image(img, f"images[{k}]"), titles[k] if titles else None)
    return fig


def plot_mask(labels: Any, title: str | None = "mask") -> Figure:
    """The colour-coded label map alone."""
    fig, axes = _figure(1, 1, cell=4)
    _show(axes[0, 0], colorize(np.asarray(labels)), title)
    return fig


def plot_overlay(image: Any, labels: Any, alpha: float = 0.5, title: str | None = None) -> Figure:
    """Image, colour-coded mask and their blend side by side."""
    img = _check_image(image)
    fig, axes = _figure(1, 3, cell=3.2)
    _show(axes[0, 0], img, "image")
    _show(axes[0, 1], colorize(np.asarray(labels)), "mask")
    _show(axes[0, 2], overlay(img, labels, alpha), "overlay")
    if title:
        fig.suptitle(title)
    return fig


def plot_grid(
    images: Sequence[Any],
    truths: Sequence[Any] | None = None,
    preds: Sequence[Any] | None = None,
    titles: Sequence[str] | None = None,
    show_error: bool = True,
) -> Figure:
    """One row per example: image, truth, prediction and (if both given) the error map."""
    n = len(images)
    if n == 0:
        raise ValueError("plot_grid needs at least one image")
    for name, seq in (("truths", truths), ("preds", preds), ("titles", titles)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"plot_grid: {name} has {len(seq)} entries, expected {n} (one per image)")
    cols = (
        ["image"] + (["truth"] if truths is not None else []) + (["prediction"] if preds is not None else [])
    )
    if show_error and truths is not None and preds is not None:
        cols.append("errors")
    fig, axes = _figure(n, len(cols))
    for i in range(n):
        img = _check_image(images[i])
        for j, col in enumerate(cols):
            if col == "image":
                arr, label = img, titles[i] if titles else "image"
            elif col == "truth":
                arr, label = colorize(np.asarray(truths[i])), "truth"
            elif col == "prediction":
                arr, label = colorize(np.asarray(preds[i])), "prediction"
            else:
                t, p = np.asarray(truths[i]), np.asarray(preds[i])
                arr = error_map(t, p, img)
                label = f"errors ({100 * np.mean(t != p):.1f}%)"
            _show(axes[i, j], arr, label)
    return fig


def plot_class_iou(
    iou: Sequence[float | None] | np.ndarray | Mapping[str, Any],
    class_names: Sequence[str] = CLASSES,
    title: str = "IoU per class",
) -> Figure:
    """Horizontal bars of per-class IoU, best first; absent classes (NaN/None) are listed as 'absent'.

    ``iou`` is an array indexed by class id, or a report's ``per_class`` mapping.
    """
    if isinstance(iou, Mapping):
        class_names = list(iou)
        values = [v["iou"] if isinstance(v, Mapping) else v for v in iou.values()]
    else:
        values = list(iou)
    if len(values) != len(class_names):
        raise ValueError(f"got {len(values)} IoU values for {len(class_names)} class names")
    vals = np.array([np.nan if v is None else float(v) for v in values])
    order = sorted(range(len(vals)), key=lambda k: (np.isnan(vals[k]), -np.nan_to_num(vals[k])))
    fig = Figure(figsize=(6.5, 0.3 * len(vals) + 1.2), layout="constrained")
    ax = fig.subplots()
    ypos = np.arange(len(order))
    shown = np.nan_to_num(vals[order])
    colors = [PALETTE[k] / 255 if k < len(PALETTE) else (0.5, 0.5, 0.5) for k in order]
    ax.barh(ypos, shown, color=colors, edgecolor="black", linewidth=0.4)
    for y, k in zip(ypos, order, strict=True):
        text = "absent" if np.isnan(vals[k]) else f"{100 * vals[k]:.1f}"
        ax.text(min(max(shown[y], 0) + 0.01, 0.93), y, text, va="center", fontsize=7)
    ax.set_yticks(ypos, [DISPLAY_NAMES.get(class_names[k], class_names[k]) for k in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    present = vals[~np.isnan(vals)]
    if present.size:
        ax.axvline(present.mean(), color="grey", linestyle="--", linewidth=1)
        title = f"{title} (mean {100 * present.mean():.1f}% over {present.size} classes)"
    ax.set_title(title, fontsize=10)
    return fig


def normalize_rows(matrix: Any) -> np.ndarray:
    """Row-normalise a confusion matrix (each true class sums to 1); rows without support are NaN."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
    rows = m.sum(axis=1, keepdims=True)
    out = np.full_like(m, np.nan)
    np.divide(m, rows, out=out, where=rows > 0)
    return out


def plot_confusion_matrix(
    matrix: Any,
    class_names: Sequence[str] = CLASSES,
    normalize: bool = True,
    title: str = "confusion matrix (rows: truth, normalised)",
    annotate: bool = True,
) -> Figure:
    """Heatmap of the (row-normalised) confusion matrix with class names; empty rows are grey."""
    m = np.asarray(matrix)
    if m.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix shape {m.shape} does not match {len(class_names)} class names")
    data = normalize_rows(m) if normalize else m.astype(np.float64)
    n = len(class_names)
    fig = Figure(figsize=(0.42 * n + 2.5, 0.42 * n + 1.5), layout="constrained")
    ax = fig.subplots()
    ax.set_facecolor("#d0d0d0")
    im = ax.imshow(np.ma.masked_invalid(data), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    names = [DISPLAY_NAMES.get(c, c) for c in class_names]
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    if annotate and normalize:
        for i in range(n):
            for j in range(n):
                v = data[i, j]
                if np.isfinite(v) and v >= 0.005:
                    ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=5.5,
                            color="white" if v > 0.5 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def plot_history(history: str | os.PathLike[str] | Mapping[str, Sequence[float]]) -> Figure:
    """Training curves from ``history.csv`` (or a Keras ``History.history`` dict): loss, pixel accuracy
    and mIoU, train and validation. Panels whose metric is missing are left out."""
    raw = history if isinstance(history, Mapping) else read_history(history)
    cols = {k: np.asarray(v, dtype=float) for k, v in raw.items()}
    if not any(len(v) for v in cols.values()):
        raise ValueError(
            f"training history {history if not isinstance(history, Mapping) else ''} has no epochs"
        )
    base = [k for k in cols if not k.startswith("val_") and k not in ("epoch", "lr", "learning_rate")]
    panels = [
        ("loss", [k for k in base if "loss" in k]),
        ("pixel accuracy", [k for k in base if "acc" in k]),
        ("mean IoU", [k for k in base if "iou" in k.lower()]),
    ]
    panels = [(t, keys) for t, keys in panels if keys]
    if not panels:
        raise ValueError(f"history has no loss/accuracy/IoU columns; found {', '.join(cols) or 'none'}")
    fig, axes = _figure(1, len(panels), cell=3.6)
    for ax, (title, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            epochs = np.arange(1, len(cols[key]) + 1)
            if "epoch" in cols:  # Keras' CSVLogger counts from 0, the package's HistoryCSV from 1
                epochs = cols["epoch"] + (1 if cols["epoch"].min() == 0 else 0)
            ax.plot(epochs, cols[key], marker="o", markersize=3, label=f"train {key}")
            if f"val_{key}" in cols:
                ax.plot(epochs, cols[f"val_{key}"], marker="s", markersize=3, label=f"val {key}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def plot_legend(class_names: Sequence[str] = CLASSES, palette: Any = PALETTE, ncols: int = 4) -> Figure:
    """The class colour legend: a swatch and the readable name of each class."""
    pal = np.asarray(palette)
    if len(pal) < len(class_names):
        raise ValueError(f"palette has {len(pal)} colours for {len(class_names)} classes")
    handles = [
        Patch(facecolor=pal[k] / 255, edgecolor="black", label=f"{k} {DISPLAY_NAMES.get(n, n)}")
        for k, n in enumerate(class_names)
    ]
    rows = -(-len(handles) // ncols)
    fig = Figure(figsize=(2.3 * ncols, 0.32 * rows + 0.4))
    ax = fig.add_subplot()  # an (invisible) axes, so that notebooks display the figure
    ax.axis("off")
    ax.legend(handles=handles, loc="center", ncols=ncols, frameon=False, fontsize=8)
    return fig


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def save_png(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save a figure as PNG, atomically."""
    return atomic_write_bytes(path, figure_png(fig, dpi))
