"""Small I/O helpers every stage shares: atomic writes, image reading with clear errors, the error type.

Every file the package writes goes through :func:`atomic_write_bytes` (a temporary file in the
same folder, fsync, then ``os.replace``), so an interrupted run never leaves a half-written file
under its final name. The file gets the mode an ordinary ``open()`` would give it under the
current umask (``0o666 & ~umask``), not the private 0600 of a temporary file.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np


class FacesegmError(Exception):
    """A user-facing error: the message names the thing that is wrong and what was expected."""


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` less the process's umask.

    Read from ``/proc/self/status`` where it is there (no change to the process); elsewhere the umask
    is set and restored at once.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:  # pragma: no cover - not Linux
        pass
    umask = os.umask(0o022)  # pragma: no cover
    os.umask(umask)  # pragma: no cover
    return 0o666 & ~umask  # pragma: no cover


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + rename); parent folders are created.

    ``fsync=False`` skips the flush to disk: the file is still never seen half-written under its
    final name, but may not survive a power cut. Only for bulk output that can be regenerated
    (e.g. thousands of synthetic masks, where one fsync per file dominates the run time).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_file_mode())  # mkstemp's 0600 would make every output private
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write JSON (indented, keys in insertion order) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def encode_image(array: np.ndarray, ext: str, *, jpeg_quality: int = 95) -> bytes:
    """Encode an image array with OpenCV. RGB(A) input is expected for 3/4 channels (converted to BGR)."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    params: list[int] = []
    if ext.lower() in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:
        raise FacesegmError(f"could not encode an image of shape {arr.shape} as {ext}")
    return buf.tobytes()


def write_image_atomic(path: str | os.PathLike[str], array: np.ndarray, *, jpeg_quality: int = 95) -> Path:
    """Write an RGB (or single-channel) image atomically; the format follows the suffix."""
    path = Path(path)
    return atomic_write_bytes(path, encode_image(array, path.suffix or ".png", jpeg_quality=jpeg_quality))


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); raise a clear error if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FacesegmError(f"could not decode image {path}: expected a readable JPEG/PNG file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label_map(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a single-channel label PNG as uint8 class ids; raise a clear error if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FacesegmError(f"could not decode label map {path}: expected a single-channel PNG")
    if img.ndim == 3:
        img = img[..., 0]
    return img.astype(np.uint8, copy=False)


def _number(value: str | None) -> float:
    try:
        return float(value) if value not in ("", None) else math.nan
    except ValueError:
        return math.nan


def read_history(path: str | os.PathLike[str]) -> dict[str, list[float]]:
    """A training ``history.csv`` (or any CSV of numbers) as ``{column: [value per row]}``.

    The package's one history reader: training (resume, best epoch), its callbacks and the plots
    use it. Empty or non-numeric cells are NaN; a file without rows gives empty columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training history not found: {path} (expected RUN/history.csv)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns: dict[str, list[float]] = {k: [] for k in reader.fieldnames or ()}
        for row in reader:
            for k in columns:
                columns[k].append(_number(row.get(k)))
    return columns
