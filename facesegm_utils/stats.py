"""Dataset statistics for exploring a raw CelebAMask-HQ folder: class frequencies, presence, sizes,
and the figures notebook 01 draws from them (built without pyplot, so safe under papermill).

Reading all 30,000 x ~14 real masks takes a long time, so every function works on a sample of
ids (:func:`sample_ids` picks them evenly spread over the sorted ids, deterministically).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from facesegm_utils import celebamask
from facesegm_utils.fileio import FacesegmError, read_rgb
from facesegm_utils.labels import (
    CLASSES,
    DISPLAY_NAMES,
    NUM_CLASSES,
    PALETTE,
    PART_GROUPS,
    PART_ORDER,
    colorize,
)


def sample_ids(ids: Sequence[int], limit: int | None) -> list[int]:
    """At most ``limit`` of ``ids``, evenly spread over the sorted ids (all of them if ``limit`` is None)."""
    ordered = sorted(int(k) for k in ids)
    if limit is None or limit >= len(ordered):
        return ordered
    if limit < 1:
        raise ValueError(f"limit must be at least 1 (or None for all ids), got {limit}")
    picks = np.linspace(0, len(ordered) - 1, int(limit)).round().astype(int)
    return [ordered[i] for i in np.unique(picks)]


@dataclass
class ClassStats:
    """Per-class pixel counts and presence over a sample of faces."""

    #: face ids the statistics were computed on
    ids: list[int]
    #: pixels of each class summed over the faces, shape (19,)
    pixel_counts: np.ndarray
    #: number of faces in which each class has at least one pixel, shape (19,)
    presence_counts: np.ndarray
    #: (height, width) of the label maps -> number of faces
    mask_sizes: Counter = field(default_factory=Counter)

    @property
    def num_faces(self) -> int:
        return len(self.ids)

    @property
    def frequency(self) -> np.ndarray:
        """Fraction of all pixels that belong to each class (sums to 1)."""
        total = self.pixel_counts.sum()
        return self.pixel_counts / total if total else np.zeros(NUM_CLASSES)

    @property
    def presence(self) -> np.ndarray:
        """Fraction of faces in which each class appears."""
        return self.presence_counts / max(self.num_faces, 1)

    def median_frequency_weights(self) -> np.ndarray:
        """Class weights ``median(freq) / freq`` over the classes that occur (0 for absent classes).

        The usual "median frequency balancing": rare classes get weights above 1, common ones below.
        """
        freq = self.frequency
        present = freq > 0
        weights = np.zeros(NUM_CLASSES)
        if present.any():
            weights[present] = np.median(freq[present]) / freq[present]
        return weights

    def table(self) -> list[dict[str, Any]]:
        """One row per class: name, pixel frequency, presence rate and median-frequency weight."""
        w = self.median_frequency_weights()
        return [
            {
                "id": i,
                "class": name,
                "frequency": float(self.frequency[i]),
                "presence": float(self.presence[i]),
                "weight": float(w[i]),
            }
            for i, name in enumerate(CLASSES)
        ]

    def summary(self) -> dict[str, float | int]:
        """Key numbers for ``course.record_metrics``."""
        f = self.frequency
        present = f > 0
        ratio = float(f[present].max() / f[present].min()) if present.any() else 0.0
        return {
            "num_faces": self.num_faces,
            "background_fraction": float(f[CLASSES.index("background")]),
            "skin_fraction": float(f[CLASSES.index("skin")]),
            "hair_fraction": float(f[CLASSES.index("hair")]),
            "eyes_fraction": float(f[CLASSES.index("l_eye")] + f[CLASSES.index("r_eye")]),
            "classes_present": int(present.sum()),
            "max_min_frequency_ratio": ratio,
        }


def class_statistics(
    parts: Mapping[int, Mapping[str, str | os.PathLike[str]]],
    ids: Sequence[int] | None = None,
    size: int | None = None,
    progress: bool = True,
) -> ClassStats:
    """Merge each face's part masks (official order) and count pixels and presence per class.

    ``parts`` is ``celebamask.part_files(raw_dir)``; ``ids`` defaults to all of its ids; ``size``
    nearest-resizes each label map first (None keeps the mask resolution).
    """
    from tqdm.auto import tqdm

    chosen = sorted(parts) if ids is None else [int(k) for k in ids]
    if not chosen:
        raise FacesegmError("no faces to compute statistics on; expected at least one id with part masks")
    missing = [k for k in chosen if k not in parts]
    if missing:
        raise KeyError(f"{len(missing)} ids have no part masks (first: {missing[:5]})")
    counts = np.zeros(NUM_CLASSES, np.int64)
    presence = np.zeros(NUM_CLASSES, np.int64)
    sizes: Counter = Counter()
    for k in tqdm(chosen, desc="class statistics", unit="face", disable=not progress):
        label = celebamask.read_label_map(parts[k], size)
        h = np.bincount(label.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
        counts += h
        presence += h > 0
        sizes[label.shape[:2]] += 1
    return ClassStats(ids=chosen, pixel_counts=counts, presence_counts=presence, mask_sizes=sizes)


def size_report(
    raw_dir: str | os.PathLike[str],
    parts: Mapping[int, Mapping[str, str | os.PathLike[str]]],
    ids: Sequence[int],
) -> dict[str, Counter]:
    """Image and mask (height, width) -> count over ``ids`` (real data: images 1024x1024, masks 512x512)."""
    images: Counter = Counter()
    masks: Counter = Counter()
    for k in ids:
        images[read_rgb(celebamask.image_path(raw_dir, k)).shape[:2]] += 1
        for path in parts[k].values():
            masks[celebamask.read_mask(Path(path)).shape[:2]] += 1
    return {"images": images, "masks": masks}


# ----------------------------------------------------------------------------- figures
def plot_class_table() -> Figure:
    """The 19 classes as a table: palette swatch, id, part-file name, readable name and groups."""
    groups = {
        name: [g for g, members in PART_GROUPS.items() if name in members and g != name] for name in CLASSES
    }
    fig = Figure(figsize=(7.5, 0.3 * NUM_CLASSES + 0.6), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(NUM_CLASSES, -1)
    ax.axis("off")
    for x, head in ((0.9, "id"), (1.6, "file name"), (3.6, "meaning"), (5.8, "groups")):
        ax.text(x, -0.6, head, fontsize=9, fontweight="bold", va="center")
    for i, name in enumerate(CLASSES):
        ax.add_patch(_swatch(i))
        ax.text(0.9, i, str(i), fontsize=9, va="center")
        ax.text(1.6, i, name if i else "(no file)", fontsize=9, va="center", family="monospace")
        ax.text(3.6, i, DISPLAY_NAMES[name], fontsize=9, va="center")
        ax.text(5.8, i, ", ".join(groups[name]), fontsize=8, va="center", color="0.35")
    return fig


def _swatch(i: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((0.1, i - 0.4), 0.6, 0.8, facecolor=PALETTE[i] / 255, edgecolor="black", lw=0.5)


def plot_class_statistics(s: ClassStats) -> Figure:
    """Two bar charts in palette colours: pixel frequency (log scale) and the share of faces with each class."""
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    x = np.arange(NUM_CLASSES)
    colours = [PALETTE[i] / 255 for i in x]
    freq = np.where(s.frequency > 0, s.frequency, np.nan)
    ax1.bar(x, 100 * freq, color=colours, edgecolor="black", lw=0.5)
    ax1.set_yscale("log")
    ax1.set_ylabel("% of all pixels (log)")
    ax1.set_title(f"Pixel frequency per class over {s.num_faces} faces", fontsize=10)
    for i, f in enumerate(s.frequency):
        if f > 0:
            ax1.text(i, 100 * f * 1.15, f"{100 * f:.2g}", ha="center", fontsize=7)
    ax2.bar(x, 100 * s.presence, color=colours, edgecolor="black", lw=0.5)
    ax2.set_ylabel("% of faces")
    ax2.set_ylim(0, 105)
    ax2.set_title("Faces in which the class appears at all", fontsize=10)
    ax2.set_xticks(x, [DISPLAY_NAMES[c] for c in CLASSES], rotation=60, ha="right", fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
    return fig


def _blend(image: np.ndarray, label: np.ndarray, alpha: float) -> np.ndarray:
    colour = colorize(label).astype(np.float32)
    out = image.astype(np.float32)
    fg = label != 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colour[fg]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def plot_faces(
    images: Sequence[np.ndarray],
    label_maps: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    alpha: float = 0.55,
) -> Figure:
    """Faces in a grid, each shown as the photo above its colour-coded part overlay.

    A label map whose size differs from its image is compared after nearest-resizing the map
    (the real masks are 512x512 for 1024x1024 photos).
    """
    if len(images) == 0 or len(images) != len(label_maps):
        raise ValueError(
            f"plot_faces needs as many label maps as images, got {len(images)} and {len(label_maps)}"
        )
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"plot_faces: {len(titles)} titles for {len(images)} images")
    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(2.4 * ncols, 4.8 * nrows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(2 * nrows, ncols, squeeze=False))
    for ax in axes.ravel():
        ax.axis("off")
    for k, (img, lab) in enumerate(zip(images, label_maps, strict=True)):
        img = np.asarray(img)
        lab = np.asarray(lab)
        if lab.shape[:2] != img.shape[:2]:
            lab = celebamask.resize_nearest(lab, img.shape[:2])
        r, c = divmod(k, ncols)
        axes[2 * r, c].imshow(img)
        axes[2 * r, c].set_title(titles[k] if titles else f"face {k}", fontsize=9)
        axes[2 * r + 1, c].imshow(_blend(img, lab, alpha), interpolation="nearest")
    return fig


def plot_part_masks(masks: Mapping[str, np.ndarray], label_map: np.ndarray, ncols: int = 6) -> Figure:
    """Each part mask of one face on its own (white = part), then the merged, colour-coded label map.

    Shows how the masks overlap (skin under the eyes, hair over the forehead) and why the merge order matters.
    """
    names = [n for n in PART_ORDER if n in masks]
    if not names:
        raise ValueError("plot_part_masks needs at least one part mask")
    n = len(names) + 1
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(1.9 * ncols, 2.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, name in zip(axes, names, strict=False):
        m = np.asarray(masks[name])
        ax.imshow(m if m.ndim == 2 else m.max(axis=2), cmap="gray", vmin=0, vmax=max(int(m.max()), 1))
        ax.set_title(f"{PART_ORDER.index(name) + 1} {name}", fontsize=8)
    axes[len(names)].imshow(colorize(np.asarray(label_map)), interpolation="nearest")
    axes[len(names)].set_title("merged", fontsize=8, fontweight="bold")
    return fig
