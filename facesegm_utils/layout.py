"""The raw CelebAMask-HQ file layout: one description for the writer and the reader.

:mod:`facesegm_utils.synthetic` writes this layout and :mod:`facesegm_utils.celebamask` reads it;
both take every name, folder scheme and file format from here::

    RAW/CelebA-HQ-img/{k}.jpg                                 RGB images (1024x1024 in the archive)
    RAW/CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png one mask per present part (512x512)
    RAW/CelebA-HQ-to-CelebA-mapping.txt                       columns idx, orig_idx, orig_file

The mapping file starts with a header line; each row names a face id ``idx``, the index
``orig_idx`` of the CelebA photo it was cropped from and that photo's file name
(``{orig_idx + 1:06d}.jpg``), in columns padded to 12 characters. The official CelebA partition of
``orig_idx`` gives the official train/val/test split.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from facesegm_utils.fileio import FacesegmError

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
#: the folder name the official archive unpacks to (``--raw`` may point at its parent)
DATASET_FOLDER = "CelebAMask-HQ"
#: ids per mask sub-folder: face ``k``'s masks are in ``MASK_DIR/{k // FOLDER_SIZE}/``
FOLDER_SIZE = 2000
#: image file extensions a reader accepts (the archive uses the first)
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
#: the mapping file's columns, each but the last padded to ``MAPPING_WIDTH`` characters
MAPPING_COLUMNS: tuple[str, ...] = ("idx", "orig_idx", "orig_file")
MAPPING_WIDTH = 12
#: official CelebA partition: ``orig_idx < TRAIN_END`` is train, ``< VAL_END`` is val, the rest test
TRAIN_END = 162771
VAL_END = 182638
#: number of CelebA photos, so ``0 <= orig_idx < CELEBA_COUNT``
CELEBA_COUNT = 202599

#: a part mask file name: group 1 the id, group 2 the part name
PART_FILE_RE = re.compile(r"^(\d{5})_(.+)\.png$", re.IGNORECASE)
#: an image file name: group 1 the id
IMAGE_FILE_RE = re.compile(r"^(\d+)\.(jpe?g|png)$", re.IGNORECASE)


def image_name(k: int) -> str:
    """``{k}.jpg``, the file name of face ``k``'s image."""
    return f"{int(k)}{IMAGE_EXTENSIONS[0]}"


def mask_folder(k: int) -> str:
    """``{k // 2000}``, the sub-folder of ``MASK_DIR`` holding face ``k``'s masks."""
    return str(int(k) // FOLDER_SIZE)


def mask_name(k: int, part: str) -> str:
    """``{k:05d}_{part}.png``, the file name of one part mask."""
    return f"{int(k):05d}_{part}.png"


def image_file(raw: str | os.PathLike[str], k: int) -> Path:
    """``RAW/CelebA-HQ-img/{k}.jpg``."""
    return Path(raw) / IMAGE_DIR / image_name(k)


def mask_file(raw: str | os.PathLike[str], k: int, part: str) -> Path:
    """``RAW/CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png``."""
    return Path(raw) / MASK_DIR / mask_folder(k) / mask_name(k, part)


def official_split_of(orig_idx: int) -> str:
    """``"train"``, ``"val"`` or ``"test"``: the official CelebA partition of a CelebA index."""
    return "train" if orig_idx < TRAIN_END else "val" if orig_idx < VAL_END else "test"


def mapping_text(rows: Mapping[int, int]) -> str:
    """The mapping file's text for ``{idx: orig_idx}`` (header line, rows sorted by idx)."""
    w = MAPPING_WIDTH
    lines = ["".join(f"{c:<{w}}" for c in MAPPING_COLUMNS[:-1]) + MAPPING_COLUMNS[-1]]
    lines += [f"{k:<{w}d}{o:<{w}d}{o + 1:06d}.jpg" for k, o in sorted(rows.items())]
    return "\n".join(lines) + "\n"


def read_mapping(path: str | os.PathLike[str]) -> dict[int, int]:
    """Parse a mapping file into ``{idx: orig_idx}``.

    The first line may be a header; rows are separated by runs of whitespace. Raise
    ``FileNotFoundError`` if missing and ``FacesegmError`` for a malformed or empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"mapping file not found: {path} (expected {MAPPING_FILE} with columns {' '.join(MAPPING_COLUMNS)})"
        )
    mapping: dict[int, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        cols = line.split()
        if not cols:
            continue
        if lineno == 1 and not cols[0].isdigit():
            continue  # header
        try:
            mapping[int(cols[0])] = int(cols[1])
        except (ValueError, IndexError):
            raise FacesegmError(
                f"{path} line {lineno}: expected 'idx orig_idx orig_file' with integer idx and orig_idx, "
                f"got {line.strip()!r}"
            ) from None
    if not mapping:
        raise FacesegmError(f"mapping file {path} holds no rows; expected 'idx orig_idx orig_file' lines")
    return mapping
