"""The 19 CelebAMask-HQ classes, their palette, the left/right swap and named part groups.

Everything else in the package takes class ids and names from here, so the official order
lives in one place. Ids are positions in :data:`CLASSES`; id 0 is background and ids 1..18
are the annotated parts in the order the official ``g_mask.py`` paints them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

#: The 19 classes in the official order. Names 1..18 are also the part names used in the raw
#: annotation file names, e.g. ``00012_l_brow.png``.
CLASSES: tuple[str, ...] = (
    "background",
    "skin",
    "nose",
    "eye_g",
    "l_eye",
    "r_eye",
    "l_brow",
    "r_brow",
    "l_ear",
    "r_ear",
    "mouth",
    "u_lip",
    "l_lip",
    "hair",
    "hat",
    "ear_r",
    "neck_l",
    "neck",
    "cloth",
)
NUM_CLASSES: int = len(CLASSES)
BACKGROUND: int = 0

#: The 18 annotated parts in painting order: a later part overrides an earlier one and a
#: part's label is its position here plus one.
PART_ORDER: tuple[str, ...] = CLASSES[1:]

#: Readable names for figures and tables.
DISPLAY_NAMES: dict[str, str] = {
    "background": "background",
    "skin": "skin",
    "nose": "nose",
    "eye_g": "eyeglasses",
    "l_eye": "left eye",
    "r_eye": "right eye",
    "l_brow": "left brow",
    "r_brow": "right brow",
    "l_ear": "left ear",
    "r_ear": "right ear",
    "mouth": "mouth",
    "u_lip": "upper lip",
    "l_lip": "lower lip",
    "hair": "hair",
    "hat": "hat",
    "ear_r": "earring",
    "neck_l": "necklace",
    "neck": "neck",
    "cloth": "cloth",
}

#: The official CelebAMask-HQ colour palette (RGB), indexed by class id.
PALETTE: np.ndarray = np.array(
    [
        [0, 0, 0],
        [204, 0, 0],
        [76, 153, 0],
        [204, 204, 0],
        [51, 51, 255],
        [204, 0, 204],
        [0, 255, 255],
        [255, 204, 204],
        [102, 51, 0],
        [255, 0, 0],
        [102, 204, 0],
        [255, 255, 0],
        [0, 0, 153],
        [0, 0, 204],
        [255, 51, 153],
        [0, 204, 204],
        [0, 51, 0],
        [255, 153, 51],
        [0, 204, 0],
    ],
    dtype=np.uint8,
)
PALETTE.setflags(write=False)

_LR_PAIRS: tuple[tuple[str, str], ...] = (("l_eye", "r_eye"), ("l_brow", "r_brow"), ("l_ear", "r_ear"))


def _flip_permutation() -> np.ndarray:
    perm = np.arange(NUM_CLASSES, dtype=np.int64)
    for left, right in _LR_PAIRS:
        a, b = CLASSES.index(left), CLASSES.index(right)
        perm[a], perm[b] = b, a
    perm.setflags(write=False)
    return perm


#: ``FLIP_PERMUTATION[c]`` is the class that ``c`` becomes after a horizontal flip:
#: l_eye<->r_eye, l_brow<->r_brow, l_ear<->r_ear; every other class maps to itself.
FLIP_PERMUTATION: np.ndarray = _flip_permutation()

#: Named groups of classes, for recolouring, figures and per-group metrics.
PART_GROUPS: dict[str, tuple[str, ...]] = {
    "skin": ("skin",),
    "nose": ("nose",),
    "glasses": ("eye_g",),
    "eyes": ("l_eye", "r_eye"),
    "brows": ("l_brow", "r_brow"),
    "ears": ("l_ear", "r_ear"),
    "mouth": ("mouth",),
    "lips": ("u_lip", "l_lip"),
    "hair": ("hair",),
    "hat": ("hat",),
    "earrings": ("ear_r",),
    "necklace": ("neck_l",),
    "neck": ("neck",),
    "cloth": ("cloth",),
    "face": ("skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip"),
    "accessories": ("eye_g", "hat", "ear_r", "neck_l"),
}


def class_id(name: str) -> int:
    """Return the id of a class name such as ``"l_brow"``; raise ``KeyError`` naming the valid ones."""
    try:
        return CLASSES.index(name)
    except ValueError:
        raise KeyError(f"unknown class {name!r}; expected one of {', '.join(CLASSES)}") from None


def group_ids(group: str | Iterable[str]) -> tuple[int, ...]:
    """Class ids of a named group (``"lips"``), a class name (``"hair"``) or several of either."""
    names = [group] if isinstance(group, str) else list(group)
    ids: list[int] = []
    for name in names:
        if name in PART_GROUPS:
            ids.extend(class_id(n) for n in PART_GROUPS[name])
        elif name in CLASSES:
            ids.append(class_id(name))
        else:
            valid = sorted(set(PART_GROUPS) | set(CLASSES))
            raise KeyError(f"unknown part {name!r}; expected a class or group: {', '.join(valid)}")
    return tuple(dict.fromkeys(ids))


def flip_labels(label_map: np.ndarray) -> np.ndarray:
    """Mirror a label map left-right and swap the left/right classes, as a flipped photo needs."""
    arr = np.asarray(label_map)
    return FLIP_PERMUTATION[arr[..., ::-1]].astype(arr.dtype)


def colorize(label_map: np.ndarray, palette: Sequence[Sequence[int]] | np.ndarray = PALETTE) -> np.ndarray:
    """Map an integer label map (H, W) to an RGB image (H, W, 3) with the official palette.

    Ids outside [0, 19) raise ``ValueError`` rather than wrapping around silently.
    """
    arr = np.asarray(label_map)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"label map must hold integer class ids, got dtype {arr.dtype}")
    pal = np.asarray(palette, dtype=np.uint8)
    if arr.size and (arr.min() < 0 or arr.max() >= len(pal)):
        raise ValueError(f"label map holds ids outside [0, {len(pal)}): min {arr.min()}, max {arr.max()}")
    return pal[arr]
