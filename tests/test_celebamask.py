"""Raw CelebAMask-HQ layout: part scanning, merge order, nearest resizing, official and ratio splits."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facesegm_utils import celebamask as cm
from facesegm_utils.fileio import FacesegmError
from facesegm_utils.labels import NUM_CLASSES, class_id

SKIN, NOSE, L_EYE, HAIR, CLOTH = (class_id(n) for n in ("skin", "nose", "l_eye", "hair", "cloth"))


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def face_masks(mask_size: int) -> dict[str, np.ndarray]:
    """Hand-drawn overlapping parts on a mask_size grid (uint8 0/255)."""
    m = mask_size
    masks = {name: np.zeros((m, m), np.uint8) for name in ("skin", "l_eye", "nose", "hair", "cloth")}
    masks["skin"][m // 4 : 3 * m // 4, m // 4 : 3 * m // 4] = 255
    masks["l_eye"][3 * m // 8 : m // 2, m // 2 : 5 * m // 8] = 255  # image right = person's left
    masks["nose"][m // 2 : 5 * m // 8, 7 * m // 16 : 9 * m // 16] = 255
    masks["hair"][: 3 * m // 8, m // 8 : 7 * m // 8] = 255  # overlaps the top of the skin
    masks["cloth"][7 * m // 8 :, :] = 255
    return masks


def make_raw(
    root: Path,
    n: int = 6,
    image_size: int = 64,
    mask_size: int = 32,
    orig: list[int] | None = None,
    mapping: bool = True,
) -> Path:
    """A tiny raw dataset in the real layout: images {k}.jpg, masks {k//2000}/{k:05d}_{part}.png."""
    img_dir, mask_dir = root / cm.IMAGE_DIR, root / cm.MASK_DIR
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        img = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (image_size, image_size))
        assert cv2.imwrite(str(img_dir / f"{k}.jpg"), img)
        for part, mask in face_masks(mask_size).items():
            if part == "nose" and k % 2:
                continue  # odd ids have no nose file
            write_png(mask_dir / str(k // 2000) / f"{k:05d}_{part}.png", np.roll(mask, k, axis=1))
    if mapping:
        orig = orig if orig is not None else [k * 40000 for k in range(n)]
        rows = ["idx         orig_idx    orig_file"]
        rows += [f"{k}           {o}      {o + 1:06d}.jpg" for k, o in enumerate(orig)]
        (root / cm.MAPPING_FILE).write_text("\n".join(rows) + "\n")
    return root


def test_merge_order_later_part_wins_and_any_nonzero_counts() -> None:
    skin = np.zeros((4, 4), np.uint8)
    skin[1:, :] = 255
    hair = np.zeros((4, 4), np.uint8)
    hair[:2, :2] = 1  # any non-zero counts, not only 255
    eye3 = np.zeros((4, 4, 3), np.uint8)
    eye3[2, 3, 2] = 7  # a 3-channel mask, non-zero in one channel only
    cloth = np.zeros((4, 4), np.uint8)
    cloth[3, 0] = 255
    # given in scrambled order: the official order decides, not the mapping order
    label = cm.merge_parts({"cloth": cloth, "hair": hair, "l_eye": eye3, "skin": skin})
    expected = np.array(
        [
            [HAIR, HAIR, 0, 0],
            [HAIR, HAIR, SKIN, SKIN],
            [SKIN, SKIN, SKIN, L_EYE],
            [CLOTH, SKIN, SKIN, SKIN],
        ],
        np.uint8,
    )
    np.testing.assert_array_equal(label, expected)
    assert label.dtype == np.uint8


def test_merge_rejects_unknown_part_and_notes_resized_parts() -> None:
    with pytest.raises(KeyError, match="beard"):
        cm.merge_parts({"beard": np.ones((2, 2), np.uint8)})
    notes: list[str] = []
    big = np.zeros((8, 8), np.uint8)
    big[:4] = 255
    label = cm.merge_parts(
        {"skin": np.ones((4, 4), np.uint8), "nose": np.zeros((4, 4), np.uint8), "hair": big}, notes=notes
    )
    assert label.shape == (4, 4)
    assert notes and "hair" in notes[0] and "8x8" in notes[0]
    np.testing.assert_array_equal(label[:2], HAIR)
    np.testing.assert_array_equal(label[2:], SKIN)


def test_read_label_map_equals_merge_then_nearest_resize(tmp_path: Path) -> None:
    masks = face_masks(32)
    paths = {}
    for name, m in masks.items():
        arr = cv2.merge([m, m, m]) if name == "hair" else m  # one 3-channel file
        paths[name] = write_png(tmp_path / f"00000_{name}.png", arr)
    full = cm.merge_parts(masks)
    for size in (16, 12, 32, 48):
        got = cm.read_label_map(paths, size)
        np.testing.assert_array_equal(got, cm.resize_nearest(full, size))
        assert set(np.unique(got)) <= set(np.unique(full))


def test_nearest_keeps_valid_ids_and_bilinear_invents_some() -> None:
    lab = np.zeros((4, 4), np.uint8)
    lab[:, 2:] = 10  # background | mouth
    out = cm.bilinear_label_artifacts(lab, 8)
    assert set(np.unique(out["nearest"])) == {0, 10}
    # bilinear upsampling blends 0 and 10 across the edge: ids in between appear
    assert out["n_invented"] > 0
    invented_ids = set(np.unique(out["bilinear"][out["invented"]]))
    assert invented_ids and invented_ids.isdisjoint({0, 10}) and max(invented_ids) < 10
    assert out["n_changed"] >= out["n_invented"]


def test_official_split_thresholds_and_mapping_parsing(tmp_path: Path) -> None:
    orig = [0, 162770, 162771, 182637, 182638, 202598]
    make_raw(tmp_path, n=0, orig=orig)
    mapping = cm.read_mapping(tmp_path / cm.MAPPING_FILE)
    assert mapping == dict(enumerate(orig))
    split = cm.official_split(mapping, list(range(6)))
    assert split == {"train": [0, 1], "val": [2, 3], "test": [4, 5]}
    assert (cm.TRAIN_END, cm.VAL_END) == (162771, 182638)
    with pytest.raises(FacesegmError, match="not in the mapping"):
        cm.official_split(mapping, [0, 99])


def test_read_mapping_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.txt")):
        cm.read_mapping(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("idx orig_idx orig_file\n0 12 12.jpg\n1 x 13.jpg\n")
    with pytest.raises(FacesegmError, match="line 3"):
        cm.read_mapping(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("idx orig_idx orig_file\n")
    with pytest.raises(FacesegmError, match="no rows"):
        cm.read_mapping(empty)


def test_ratio_split_reproducible_disjoint_complete() -> None:
    ids = list(range(100, 200))
    a = cm.ratio_split(ids, (0.7, 0.2, 0.1), seed=3)
    assert a == cm.ratio_split(ids, (0.7, 0.2, 0.1), seed=3)
    assert a != cm.ratio_split(ids, (0.7, 0.2, 0.1), seed=4)
    assert [len(a[s]) for s in cm.SPLITS] == [70, 20, 10]
    together = a["train"] + a["val"] + a["test"]
    assert sorted(together) == ids and len(set(together)) == 100
    for bad in [(0.5, 0.2, 0.2), (0.7, 0.3), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1), (float("nan"), 0.5, 0.5)]:
        with pytest.raises(ValueError, match="ratios"):
            cm.ratio_split(ids, bad)


def test_scan_ignores_system_files_and_flags_unknown_parts(tmp_path: Path) -> None:
    make_raw(tmp_path, n=4)
    folder = tmp_path / cm.MASK_DIR / "0"
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / "Thumbs.db").write_bytes(b"junk")
    (folder / "notes.txt").write_text("hello")
    (folder / "._00000_skin.png").write_bytes(b"apple double")
    write_png(folder / "00003_beard.png", np.zeros((32, 32), np.uint8))
    scan = cm.scan_parts(tmp_path)
    assert sorted(scan.files) == [0, 1, 2]
    assert 3 in scan.problems and "beard" in scan.problems[3]
    assert sorted(scan.files[0]) == ["cloth", "hair", "l_eye", "nose", "skin"]
    assert sorted(scan.files[1]) == ["cloth", "hair", "l_eye", "skin"]
    assert cm.part_files(tmp_path) == scan.files
    assert cm.list_image_ids(tmp_path) == [0, 1, 2, 3]
    assert cm.image_path(tmp_path, 2) == tmp_path / cm.IMAGE_DIR / "2.jpg"


def test_resolve_raw_dir_accepts_parent_and_names_missing(tmp_path: Path) -> None:
    make_raw(tmp_path / "CelebAMask-HQ", n=1)
    assert cm.resolve_raw_dir(tmp_path) == tmp_path / "CelebAMask-HQ"
    assert cm.list_image_ids(tmp_path) == [0]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        cm.resolve_raw_dir(tmp_path / "nowhere")
    (tmp_path / "other").mkdir()
    with pytest.raises(FileNotFoundError, match="CelebA-HQ-img"):
        cm.resolve_raw_dir(tmp_path / "other")


def test_read_mask_truncated_and_missing(tmp_path: Path) -> None:
    good = write_png(tmp_path / "00000_skin.png", np.full((16, 16), 255, np.uint8))
    assert cm.read_mask(good).shape == (16, 16)
    cut = tmp_path / "00001_skin.png"
    cut.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(FacesegmError, match="00001_skin.png"):
        cm.read_mask(cut)
    with pytest.raises(FileNotFoundError, match="00002_skin.png"):
        cm.read_mask(tmp_path / "00002_skin.png")
    assert NUM_CLASSES == 19 and NOSE == 2
