"""Tests for facesegm_utils.synthetic: raw layout, determinism, overlaps, mapping file, CLI."""

from __future__ import annotations

import hashlib
import json
import re

import cv2
import numpy as np
import pytest
from conftest import SYNTH_COUNT, SYNTH_SEED, SYNTH_SIZE

from facesegm_utils import celebamask as cm
from facesegm_utils import cli, layout, prepare, synthetic
from facesegm_utils.labels import PART_ORDER, class_id

MASK_RE = re.compile(r"^(\d{5})_([a-z_]+)\.png$")


def merge(masks: dict[str, np.ndarray], size: int) -> np.ndarray:
    """The official merge, written out here independently: label = position + 1, later overrides."""
    label = np.zeros((size, size), np.uint8)
    for pos, name in enumerate(PART_ORDER):
        if name in masks:
            label[masks[name] > 0] = pos + 1
    return label


def read_masks(root, k: int) -> dict[str, np.ndarray]:
    folder = root / layout.MASK_DIR / str(k // 2000)  # the scheme, written out independently
    out = {}
    for path in folder.glob(f"{k:05d}_*.png"):
        out[MASK_RE.match(path.name).group(2)] = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return out


def test_layout_names_sizes_and_values(synthetic_raw):
    images = sorted(p.name for p in (synthetic_raw / layout.IMAGE_DIR).iterdir())
    assert images == sorted(f"{k}.jpg" for k in range(SYNTH_COUNT))
    img = cv2.imread(str(synthetic_raw / layout.IMAGE_DIR / "3.jpg"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (SYNTH_SIZE, SYNTH_SIZE, 3)
    assert [p.name for p in (synthetic_raw / layout.MASK_DIR).iterdir()] == ["0"]
    names = [p.name for p in (synthetic_raw / layout.MASK_DIR / "0").iterdir()]
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")]  # no leftovers
    for name in names:
        match = MASK_RE.match(name)
        assert match, name
        assert int(match.group(1)) < SYNTH_COUNT and match.group(2) in PART_ORDER
    for mask in read_masks(synthetic_raw, 5).values():
        assert mask.shape == (SYNTH_SIZE, SYNTH_SIZE) and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 255}
        assert mask.max() == 255  # only parts that are present get a file


def test_mask_folder_is_id_div_2000(tmp_path):
    synthetic.write_dataset(tmp_path, count=2, size=32, seed=1, start=3999)
    assert (tmp_path / layout.MASK_DIR / "1" / "03999_skin.png").is_file()
    assert (tmp_path / layout.MASK_DIR / "2" / "04000_skin.png").is_file()
    assert sorted(p.name for p in (tmp_path / layout.IMAGE_DIR).iterdir()) == ["3999.jpg", "4000.jpg"]


def test_generate_face_api_and_determinism():
    img, masks = synthetic.generate_face(7, 3, 48)
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    assert set(masks) <= set(PART_ORDER) and {"skin", "hair", "nose"} <= set(masks)
    assert all(m.dtype == bool and m.shape == (48, 48) and m.any() for m in masks.values())
    img2, masks2 = synthetic.generate_face(7, 3, 48)
    np.testing.assert_array_equal(img, img2)
    assert all(np.array_equal(masks[k], masks2[k]) for k in masks) and masks.keys() == masks2.keys()
    img3, _ = synthetic.generate_face(8, 3, 48)
    img4, _ = synthetic.generate_face(7, 4, 48)
    assert not np.array_equal(img, img3) and not np.array_equal(img, img4)


def _tree_bytes(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_start_offset_equals_full_run(tmp_path):
    full, again, split, other = (tmp_path / n for n in ("full", "again", "split", "other"))
    synthetic.write_dataset(full, count=6, size=40, seed=3)
    synthetic.write_dataset(again, count=6, size=40, seed=3)
    synthetic.write_dataset(split, count=3, size=40, seed=3)
    synthetic.write_dataset(split, count=3, size=40, seed=3, start=3)
    synthetic.write_dataset(other, count=6, size=40, seed=4)
    ref = _tree_bytes(full)
    assert _tree_bytes(again) == ref
    assert _tree_bytes(split) == ref  # images, masks and the mapping file
    different = _tree_bytes(other)
    assert different[f"{layout.IMAGE_DIR}/0.jpg"] != ref[f"{layout.IMAGE_DIR}/0.jpg"]


def test_workers_give_the_same_files(tmp_path):
    synthetic.write_dataset(tmp_path / "one", count=4, size=32, seed=2, workers=1)
    synthetic.write_dataset(tmp_path / "two", count=4, size=32, seed=2, workers=2)
    assert _tree_bytes(tmp_path / "one") == _tree_bytes(tmp_path / "two")


def test_parts_overlap_like_real_annotations():
    hair_over_skin = 0
    for k in range(12):
        _, m = synthetic.generate_face(0, k, 128)
        skin = m["skin"]
        for part in ("nose", "l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip"):
            inside = (m[part] & skin).sum() / m[part].sum()
            assert inside > 0.9, (k, part, inside)  # the skin mask lies under the facial features
        hair_over_skin += (m["hair"] & skin).sum() > 0
        if "eye_g" in m:
            assert (m["eye_g"] & (m["l_eye"] | m["r_eye"])).any() and (m["eye_g"] & skin).any()
        if "hat" in m:
            assert (m["hat"] & m["hair"]).any()
    assert hair_over_skin >= 10  # hairline or fringe over the forehead in (almost) every face


def test_accessories_survive_the_merge():
    """Earrings and necklaces come before neck and cloth in the official order, so those masks
    must leave room for them; the necklace's edges still overlap neck or cloth, as in real masks."""
    seen = set()
    for k in range(80):
        _, m = synthetic.generate_face(0, k, 96)
        label = merge(m, 96)
        for part in ("ear_r", "neck_l", "eye_g", "hat"):
            if part in m:
                assert (label == class_id(part)).sum() > 0.25 * m[part].sum(), (k, part)
                seen.add(part)
        if "neck_l" in m:
            assert (m["neck_l"] & (m["neck"] | m["cloth"])).any()
    assert seen == {"ear_r", "neck_l", "eye_g", "hat"}


def test_left_parts_are_on_the_image_right_in_about_93_percent():
    on_right = 0
    n = 240
    for k in range(n):
        _, m = synthetic.generate_face(5, k, 32)
        xs_l = np.nonzero(m["l_eye"])[1].mean()
        xs_r = np.nonzero(m["r_eye"])[1].mean()
        on_right += xs_l > xs_r
    assert 0.86 <= on_right / n <= 0.98


def parse_mapping(path):
    lines = path.read_text().splitlines()
    rows = [line.split() for line in lines[1:]]
    return lines[0], [(int(a), int(b), c) for a, b, c in rows]


def test_mapping_file_format_and_split(tmp_path):
    ids = range(200)
    synthetic.write_mapping(tmp_path, ids, seed=0)
    header, rows = parse_mapping(tmp_path / layout.MAPPING_FILE)
    assert header.split() == ["idx", "orig_idx", "orig_file"]
    assert header == "idx         orig_idx    orig_file"
    assert [r[0] for r in rows] == list(ids)
    assert all(r[2] == f"{r[1] + 1:06d}.jpg" for r in rows)
    origs = [r[1] for r in rows]
    assert len(set(origs)) == len(origs) and all(0 <= o < 202599 for o in origs)
    train = sum(o < 162771 for o in origs) / len(origs)
    val = sum(162771 <= o < 182638 for o in origs) / len(origs)
    test = sum(o >= 182638 for o in origs) / len(origs)
    assert abs(train - 0.8) < 0.05 and abs(val - 0.1) < 0.04 and abs(test - 0.1) < 0.04
    # the real file's column layout: idx and orig_idx padded to 12 characters
    assert (tmp_path / layout.MAPPING_FILE).read_text().splitlines()[1] == (
        f"{0:<12d}{origs[0]:<12d}{origs[0] + 1:06d}.jpg"
    )
    synthetic.write_mapping(tmp_path, [500], seed=0)  # extends, keeps earlier rows
    assert [r[0] for r in parse_mapping(tmp_path / layout.MAPPING_FILE)[1]] == [*ids, 500]
    synthetic.write_mapping(tmp_path / "other", ids, seed=1)
    assert [r[1] for r in parse_mapping(tmp_path / "other" / layout.MAPPING_FILE)[1]] != origs


def test_fixture_mapping_matches(synthetic_raw):
    _, rows = parse_mapping(synthetic_raw / layout.MAPPING_FILE)
    assert [r[0] for r in rows] == list(range(SYNTH_COUNT))
    assert [r[1] for r in rows] == [synthetic.orig_index(SYNTH_SEED, k) for k in range(SYNTH_COUNT)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"count": 0}, "count"), ({"count": 2, "size": 31}, "size"), ({"count": 2, "start": -1}, "start")],
)
def test_bad_input_raises_valueerror(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic.write_dataset(tmp_path, **kwargs)
    with pytest.raises(ValueError, match="size"):
        synthetic.generate_face(0, 0, 16)
    with pytest.raises(ValueError, match="seed"):
        synthetic.generate_face(-1, 0, 64)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--count", "0"], "count must be at least 1"), (["--count", "3", "--size", "8"], "size")],
)
def test_cli_bad_input(tmp_path, capsys, args, message):
    assert cli.main(["synth", "--out", str(tmp_path / "x"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x" / layout.IMAGE_DIR).exists()


@pytest.mark.slow
def test_cli_200_faces_all_have_the_core_parts(tmp_path):
    assert cli.main(["synth", "--out", str(tmp_path), "--count", "200", "--size", "256"]) == 0
    assert len(list((tmp_path / layout.IMAGE_DIR).glob("*.jpg"))) == 200
    required = ["skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip", "hair"]
    counts = np.zeros(19)
    for k in range(200):
        masks = read_masks(tmp_path, k)
        label = merge(masks, 256)
        present = set(np.unique(label).tolist())
        missing = [name for name in required if class_id(name) not in present]
        assert not missing, f"face {k} lost {missing} after merging"
        counts += np.bincount(label.ravel(), minlength=19)
    freq = counts / counts.sum()
    # roughly the real data's balance: background, skin and hair dominate; an eye is a fraction of a percent
    for name in ("background", "skin", "hair"):
        assert 0.15 < freq[class_id(name)] < 0.45, (name, freq[class_id(name)])
    for name in ("l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip"):
        assert 0.001 < freq[class_id(name)] < 0.01, (name, freq[class_id(name)])


# ----------------------------------------------------------------------------- frozen output
def _face_digest(seed: int, ids, size: int) -> str:
    """sha256 over image bytes, JPEG quality and every present part mask (in official order)."""
    h = hashlib.sha256()
    for k in ids:
        image, masks, quality = synthetic._generate(seed, k, size)
        h.update(image.tobytes())
        h.update(bytes([quality]))
        for name in PART_ORDER:
            if name in masks:
                h.update(name.encode())
                h.update(np.ascontiguousarray(masks[name]).tobytes())
    return h.hexdigest()


#: recorded with the code before synthetic.py was split into named parts (commit 0632239);
#: seed 0 ids 0..59 cover every hair style, accessory, earring kind, neckline, open mouth and side swap
FROZEN_FACES = [
    (0, range(60), 64, "dc43106120038680e4572d4e5534f789bcdb7d4218be4c8219bf295a34ee594f"),
    (3, range(4), 256, "3203f0452a5b7d6495195b32bb21f6a703354746898955f1ddf4ee04913e9db0"),
    (1, [7], 333, "0ec8a9f6b83f070088634805a76244e29df4a135ed8ec9fbd6b36d698320994c"),
    (2, [11], 1024, "9eda3f353993ae56fd8e0afd5ed647b3c33ea6410ae2cc02868e2c217257d283"),
]
#: the files ``write_dataset(count=3, size=48, seed=5, start=1999)`` writes (paths and bytes)
FROZEN_TREE = "d7110ab1e7b2c506ba23a678dd448cc04af3a2ec25c146e269c23647e453acbf"


@pytest.mark.parametrize(("seed", "ids", "size", "expected"), FROZEN_FACES)
def test_faces_are_identical_to_the_recorded_ones(seed, ids, size, expected):
    """Refactoring the generator must not change a single pixel (same numpy / OpenCV versions)."""
    assert _face_digest(seed, ids, size) == expected


def test_written_files_are_identical_to_the_recorded_ones(tmp_path):
    synthetic.write_dataset(tmp_path, count=3, size=48, seed=5, start=1999)
    h = hashlib.sha256()
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(tmp_path)).encode())
            h.update(path.read_bytes())
    assert h.hexdigest() == FROZEN_TREE


# ----------------------------------------------------------------------------- masks at another size
def test_mask_size_writes_the_archive_sizes_of_the_same_face(tmp_path):
    synthetic.write_dataset(tmp_path, count=3, size=96, seed=4, mask_size=48)
    for k in range(3):
        img = cv2.imread(str(tmp_path / layout.IMAGE_DIR / f"{k}.jpg"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (96, 96, 3)
        masks = read_masks(tmp_path, k)
        assert masks and all(m.shape == (48, 48) and m.max() == 255 for m in masks.values())
        # the masks describe the face in the image: their merge is the image-size merge, nearest-resized
        _, full = synthetic.generate_face(4, k, 96)
        expected = cm.resize_nearest(merge(full, 96), 48)
        np.testing.assert_array_equal(merge(masks, 48), expected)
        visible = {PART_ORDER[i - 1] for i in np.unique(expected) if i}
        assert visible <= set(masks)  # every class in the merged map has its file
        _, small = synthetic.generate_face(4, k, 96, mask_size=48)
        assert small.keys() == masks.keys()
        assert all(np.array_equal(small[n], masks[n] > 0) for n in masks)


def test_mask_size_drops_parts_that_vanish_and_default_is_image_size(tmp_path):
    _, full = synthetic.generate_face(0, 3, 256)
    _, tiny = synthetic.generate_face(0, 3, 256, mask_size=32)
    expected = {n for n, m in full.items() if cm.resize_nearest(m, 32).any()}
    assert set(tiny) == expected
    _, same = synthetic.generate_face(0, 3, 256, mask_size=256)
    assert same.keys() == full.keys() and all(np.array_equal(same[n], full[n]) for n in full)
    with pytest.raises(ValueError, match="mask size"):
        synthetic.write_dataset(tmp_path, count=1, size=64, mask_size=8)


def test_prepare_reads_images_and_masks_of_different_sizes(tmp_path):
    """Like the real archive (1024 images, 512 masks): prepare resizes each to the target size."""
    raw = synthetic.write_dataset(tmp_path / "raw", count=4, size=128, seed=2, mask_size=64)
    out = tmp_path / "prep"
    summary = prepare.prepare_dataset(raw, out, 48, split="ratio", ratios=(0.5, 0.25, 0.25), workers=1)
    assert sum(summary["counts"].values()) == 4
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["skipped"] == [] and report["resized_parts"] == []
    for split in ("train", "val", "test"):
        for path in (out / split / "labels").glob("*.png"):
            k = int(path.stem)
            label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            image = cv2.imread(str(out / split / "images" / f"{k}.jpg"))
            assert label.shape == (48, 48) and image.shape == (48, 48, 3)
            _, full = synthetic.generate_face(2, k, 128)
            # nearest 128 -> 64 -> 48 at pixel centres, as prepare reads the 64x64 masks
            expected = cm.resize_nearest(cm.resize_nearest(merge(full, 128), 64), 48)
            np.testing.assert_array_equal(label, expected)


def test_cli_mask_size(tmp_path, capsys):
    assert (
        cli.main(["synth", "--out", str(tmp_path), "--count", "1", "--size", "64", "--mask-size", "32"]) == 0
    )
    assert "masks 32x32" in capsys.readouterr().out
    assert all(m.shape == (32, 32) for m in read_masks(tmp_path, 0).values())
    assert cli.main(["synth", "--out", str(tmp_path / "x"), "--count", "1", "--mask-size", "4"]) == 2
    assert "mask size must be at least" in capsys.readouterr().err


def test_face_landmarks_sit_on_the_drawn_parts() -> None:
    """Eye centres in the eyes, the nose tip in the nose, mouth corners at the lips' ends."""
    for k in range(6):
        _, masks = synthetic.generate_face(3, k, 128)
        lm = np.round(synthetic.face_landmarks(3, k, 128)).astype(int)
        eyes = masks["l_eye"] | masks["r_eye"]
        if "eye_g" in masks:
            eyes |= masks["eye_g"]
        assert eyes[lm[0, 1], lm[0, 0]] and eyes[lm[1, 1], lm[1, 0]]
        assert lm[0, 0] < lm[1, 0]  # image-left eye first
        assert masks["nose"][lm[2, 1] - 1, lm[2, 0]]
        lips = masks["u_lip"] | masks["l_lip"]
        for x, y in lm[3:]:
            assert lips[y - 2 : y + 3, x - 2 : x + 3].any()
