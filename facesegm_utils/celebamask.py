"""Read the raw CelebAMask-HQ layout: images, one binary PNG per face part, and the official split.

The raw layout (the real dataset, and what :mod:`facesegm_utils.synthetic` writes) is described
once in :mod:`facesegm_utils.layout`::

    RAW/CelebA-HQ-img/{k}.jpg                               30,000 RGB JPEGs, 1024x1024
    RAW/CelebAMask-HQ-mask-anno/{k//2000}/{k:05d}_{part}.png one 512x512 mask per present part
    RAW/CelebA-HQ-to-CelebA-mapping.txt                     idx, orig_idx, orig_file

A part file exists only where the part is present. Masks may be stored with one or three
channels; any non-zero pixel counts as the part. Parts are merged in the official order of
:data:`facesegm_utils.labels.PART_ORDER` (a later part overrides an earlier one), at mask
resolution, and the merged map is resized nearest-neighbour only.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facesegm_utils.fileio import FacesegmError
from facesegm_utils.labels import NUM_CLASSES, PART_ORDER

# the layout's names, also read as ``celebamask.IMAGE_DIR`` and so on by prepare and the tests
from facesegm_utils.layout import (
    DATASET_FOLDER,
    IMAGE_DIR,
    IMAGE_EXTENSIONS,
    IMAGE_FILE_RE,
    MAPPING_FILE,
    MASK_DIR,
    PART_FILE_RE,
    TRAIN_END,  # noqa: F401 - re-exported
    VAL_END,  # noqa: F401 - re-exported
    image_name,
    official_split_of,
    read_mapping,  # noqa: F401 - re-exported
)

SPLITS: tuple[str, ...] = ("train", "val", "test")
_PART_LABEL = {name: i + 1 for i, name in enumerate(PART_ORDER)}


def resolve_raw_dir(raw_dir: str | os.PathLike[str]) -> Path:
    """The folder holding ``CelebA-HQ-img/`` and ``CelebAMask-HQ-mask-anno/``.

    ``raw_dir`` may be that folder or, as a convenience, its parent when the parent holds exactly
    one ``CelebAMask-HQ/`` folder. Raise ``FileNotFoundError`` naming what was expected otherwise.
    """
    raw = Path(raw_dir).expanduser()
    if not raw.is_dir():
        raise FileNotFoundError(
            f"raw dataset folder not found: {raw} (expected a folder with {IMAGE_DIR}/ and {MASK_DIR}/)"
        )
    if (raw / IMAGE_DIR).is_dir() or (raw / MASK_DIR).is_dir():
        return raw
    nested = [p for p in raw.iterdir() if p.is_dir() and p.name == DATASET_FOLDER]
    if len(nested) == 1 and ((nested[0] / IMAGE_DIR).is_dir() or (nested[0] / MASK_DIR).is_dir()):
        return nested[0]
    raise FileNotFoundError(
        f"no CelebAMask-HQ layout in {raw}: expected {IMAGE_DIR}/ and {MASK_DIR}/ in it "
        f"(or in a single {DATASET_FOLDER}/ folder inside it)"
    )


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in ("thumbs.db", "desktop.ini")


@dataclass
class PartScan:
    """What :func:`scan_parts` found under the mask folder."""

    #: id -> part name -> mask file, for every id whose part files all parsed
    files: dict[int, dict[str, Path]] = field(default_factory=dict)
    #: id -> why it cannot be used (unknown part name, duplicate part file)
    problems: dict[int, str] = field(default_factory=dict)
    #: files that are not part masks and were ignored (non-png, unparsable names)
    ignored: list[str] = field(default_factory=list)


def scan_parts(raw_dir: str | os.PathLike[str]) -> PartScan:
    """Find every part mask ``{k:05d}_{part}.png`` under the mask folder (any sub-folder depth one).

    Hidden and system files and non-png files are ignored. A png named like a part file whose part
    name is not one of :data:`PART_ORDER` makes its id unusable (listed in ``problems``).
    """
    raw = resolve_raw_dir(raw_dir)
    mask_root = raw / MASK_DIR
    if not mask_root.is_dir():
        raise FileNotFoundError(f"mask folder not found: {mask_root} (expected {MASK_DIR}/ with 0/..14/)")
    scan = PartScan()
    found: dict[int, dict[str, Path]] = {}
    folders = [mask_root]
    with os.scandir(mask_root) as it:
        folders += sorted(Path(e.path) for e in it if e.is_dir() and not _is_hidden(e.name))
    for folder in folders:
        with os.scandir(folder) as it:
            entries = sorted((e.name for e in it if e.is_file()), key=str)
        for name in entries:
            if _is_hidden(name):
                continue
            match = PART_FILE_RE.match(name)
            if match is None:
                scan.ignored.append(str(folder / name))
                continue
            k, part = int(match.group(1)), match.group(2)
            if part not in _PART_LABEL:
                scan.problems.setdefault(k, f"unknown part name {part!r} in {folder / name}")
                continue
            parts = found.setdefault(k, {})
            if part in parts:
                scan.problems.setdefault(k, f"duplicate part file {folder / name} and {parts[part]}")
                continue
            parts[part] = folder / name
    scan.files = {k: found[k] for k in sorted(found) if k not in scan.problems}
    return scan


def part_files(raw_dir: str | os.PathLike[str]) -> dict[int, dict[str, Path]]:
    """id -> part name -> mask path, for every id whose part files are all valid (sorted by id)."""
    return scan_parts(raw_dir).files


def list_image_ids(raw_dir: str | os.PathLike[str]) -> list[int]:
    """Sorted ids ``k`` of the images ``CelebA-HQ-img/{k}.jpg``; raise if the folder is missing."""
    raw = resolve_raw_dir(raw_dir)
    img_root = raw / IMAGE_DIR
    if not img_root.is_dir():
        raise FileNotFoundError(f"image folder not found: {img_root} (expected {IMAGE_DIR}/ with {{k}}.jpg)")
    ids = set()
    with os.scandir(img_root) as it:
        for e in it:
            match = IMAGE_FILE_RE.match(e.name)
            if match and e.is_file():
                ids.add(int(match.group(1)))
    return sorted(ids)


def image_path(raw_dir: str | os.PathLike[str], k: int) -> Path:
    """``RAW/CelebA-HQ-img/{k}.jpg`` (or the ``.jpeg``/``.png`` file of that id if that is what exists)."""
    root = Path(raw_dir) / IMAGE_DIR
    if not root.is_dir():
        root = resolve_raw_dir(raw_dir) / IMAGE_DIR
    default = root / image_name(k)
    if default.exists():
        return default
    for ext in IMAGE_EXTENSIONS[1:]:
        for cand in (root / f"{int(k)}{ext}", root / f"{int(k)}{ext.upper()}"):
            if cand.exists():
                return cand
    return default


def official_split(mapping: Mapping[int, int], ids: Sequence[int]) -> dict[str, list[int]]:
    """The official CelebA partition of ``ids``: train if orig_idx < 162771, val if < 182638, else test.

    Raise ``FacesegmError`` naming the first ids the mapping does not know.
    """
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    missing = [k for k in ids if k not in mapping]
    if missing:
        raise FacesegmError(
            f"{len(missing)} ids are not in the mapping file (first: {missing[:5]}); "
            f"expected every image id in the idx column of {MAPPING_FILE}"
        )
    for k in sorted(ids):
        out[official_split_of(mapping[k])].append(int(k))
    return out


def validate_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Check train/val/test ratios: three finite non-negative numbers summing to 1, train > 0."""
    vals = tuple(float(r) for r in ratios)
    if len(vals) != 3 or not all(np.isfinite(vals)) or min(vals) < 0 or vals[0] <= 0:
        raise ValueError(
            f"ratios must be three non-negative numbers train,val,test with train > 0; got {ratios}"
        )
    if abs(sum(vals) - 1.0) > 1e-6:
        raise ValueError(f"ratios must sum to 1, got {ratios} (sum {sum(vals):.6f})")
    return vals  # type: ignore[return-value]


def ratio_split(
    ids: Sequence[int], ratios: Sequence[float] = (0.7, 0.2, 0.1), seed: int = 0
) -> dict[str, list[int]]:
    """A seeded random train/val/test split of ``ids`` by ``ratios`` (disjoint, complete, sorted lists)."""
    r = validate_ratios(ratios)
    uniq = sorted({int(k) for k in ids})
    if len(uniq) != len(ids):
        raise ValueError(f"ids must be unique; got {len(ids) - len(uniq)} duplicates")
    order = np.random.default_rng(seed).permutation(len(uniq))
    n = len(uniq)
    n_train = int(round(r[0] * n))
    n_val = min(int(round(r[1] * n)), n - n_train)
    cuts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return {s: sorted(uniq[i] for i in idx) for s, idx in cuts.items()}


# ----------------------------------------------------------------------------------------------
# masks


def _check_png(data: bytes, path: Path) -> None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or b"IEND" not in data[-16:]:
        raise FacesegmError(f"truncated or not a PNG file: {path} (expected a complete part mask PNG)")


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """One part mask as uint8 (H, W) or (H, W, C); any non-zero value means the part is there.

    Read unchanged (one or three channels kept; an alpha channel is dropped). Raise
    ``FacesegmError`` for a truncated or undecodable file and ``FileNotFoundError`` if missing.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"part mask not found: {path}") from None
    _check_png(data, path)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.size == 0:
        raise FacesegmError(f"could not decode part mask {path}: expected a readable PNG")
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = (arr != 0).astype(np.uint8)
    return arr


def _nonzero(mask: np.ndarray) -> np.ndarray:
    """Collapse a (H, W) or (H, W, C) mask to a bool (H, W): any channel non-zero."""
    m = np.asarray(mask)
    if m.ndim == 3:
        return np.any(m != 0, axis=2)
    if m.ndim != 2:
        raise ValueError(f"a part mask must be (H, W) or (H, W, C), got shape {m.shape}")
    return m != 0


def resize_nearest(array: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize to ``size`` (an int for square, or (H, W)); pixel centres are matched."""
    h, w = (size, size) if isinstance(size, int) else size
    arr = np.asarray(array)
    if arr.shape[:2] == (h, w):
        return arr
    if arr.dtype == bool:
        return cv2.resize(arr.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST_EXACT).view(bool)
    return cv2.resize(arr, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def _common_size(masks: Mapping[str, np.ndarray], notes: list[str] | None) -> dict[str, np.ndarray]:
    """Nearest-resize masks whose size differs to the most common size (ties: the first seen)."""
    sizes = {name: np.asarray(m).shape[:2] for name, m in masks.items()}
    counts = Counter(sizes.values())
    if len(counts) <= 1:
        return dict(masks)
    target = max(counts, key=lambda s: (counts[s], -list(sizes.values()).index(s)))
    out = {}
    for name, m in masks.items():
        if sizes[name] != target:
            msg = f"part {name} is {sizes[name][0]}x{sizes[name][1]}, resized (nearest) to {target[0]}x{target[1]}"
            if notes is None:
                warnings.warn(msg, stacklevel=3)
            else:
                notes.append(msg)
            m = resize_nearest(np.asarray(m), target)
        out[name] = m
    return out


def merge_parts(masks: Mapping[str, np.ndarray], notes: list[str] | None = None) -> np.ndarray:
    """Merge per-part masks into one uint8 label map in the official painting order.

    The label of a part is its position in :data:`PART_ORDER` plus one; a later part overrides an
    earlier one; any non-zero value (in any channel) counts. Masks of a different size than the
    most common one are nearest-resized to it, and a line saying so is appended to ``notes``
    (or issued as a warning when ``notes`` is None). Pixels no part covers are background (0).
    """
    if not masks:
        raise ValueError("merge_parts needs at least one part mask")
    unknown = [n for n in masks if n not in _PART_LABEL]
    if unknown:
        raise KeyError(f"unknown part names {unknown}; expected names from labels.PART_ORDER")
    masks = _common_size(masks, notes)
    h, w = next(iter(masks.values())).shape[:2]
    label = np.zeros((h, w), np.uint8)
    for name in PART_ORDER:
        if name in masks:
            np.copyto(label, np.uint8(_PART_LABEL[name]), where=_nonzero(masks[name]))
    return label


def read_label_map(
    parts: Mapping[str, str | os.PathLike[str]],
    size: int | None = None,
    notes: list[str] | None = None,
    reader: Callable[[str | os.PathLike[str]], np.ndarray] | None = None,
) -> np.ndarray:
    """Read an id's part masks and merge them into a uint8 label map, nearest-resized to ``size``.

    Equal to ``resize_nearest(merge_parts(masks), size)``, but each mask is nearest-sampled to
    ``size`` before merging (the merge is per pixel, so the result is the same and cheaper).
    ``reader`` reads one mask like :func:`read_mask` (the default); prepare passes a faster one.
    """
    masks = {name: (reader or read_mask)(p) for name, p in parts.items()}
    if not masks:
        raise FacesegmError("no part masks given; expected at least one {k:05d}_{part}.png file")
    masks = _common_size(masks, notes)
    if size is not None:
        masks = {name: resize_nearest(m, size) for name, m in masks.items()}
    label = merge_parts(masks)
    if label.max() >= NUM_CLASSES:  # pragma: no cover - merge_parts cannot produce this
        raise FacesegmError(f"merged label map holds id {label.max()} >= {NUM_CLASSES}")
    return label


def bilinear_label_artifacts(label_map: np.ndarray, size: int) -> dict[str, np.ndarray | int]:
    """Show what resizing a label map like a photo does: ids invented along part edges.

    Returns ``nearest`` and ``bilinear`` resized maps (both uint8, ``size`` x ``size``), ``invented``
    (bool: the bilinear id is not a class of the original map at all), ``changed`` (bool: the
    bilinear id differs from the nearest one) and their pixel counts ``n_invented``/``n_changed``.
    """
    lab = np.asarray(label_map)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"label map must be an integer (H, W) array, got {lab.dtype} {lab.shape}")
    lab = lab.astype(np.uint8)
    nearest = resize_nearest(lab, size)
    bilinear = cv2.resize(lab, (size, size), interpolation=cv2.INTER_LINEAR)
    invented = ~np.isin(bilinear, np.unique(lab))
    changed = bilinear != nearest
    return {
        "nearest": nearest,
        "bilinear": bilinear,
        "invented": invented,
        "changed": changed,
        "n_invented": int(invented.sum()),
        "n_changed": int(changed.sum()),
    }
