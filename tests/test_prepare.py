"""``facesegm prepare``: outputs, reduced decoding, resumability, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_celebamask import face_masks, make_raw, write_png

from facesegm_utils import celebamask as cm
from facesegm_utils import cli
from facesegm_utils import prepare as prep
from facesegm_utils.fileio import FacesegmError
from facesegm_utils.labels import NUM_CLASSES

SIZE = 16


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_prepare_writes_layout_labels_and_stats(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", n=6)  # orig_idx 0, 40000, ..., 200000
    out = tmp_path / "out"
    summary = prep.prepare_dataset(raw, out, SIZE, workers=1)
    # official split: orig < 162771 train (ids 0..4 have orig 0..160000), 200000 -> test
    assert summary["counts"] == {"train": 5, "val": 0, "test": 1}
    with (out / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == [str(k) for k in range(6)]
    assert rows[5] == {"id": "5", "split": "test", "image": "test/images/5.jpg", "label": "test/labels/5.png"}
    pixels = np.zeros(NUM_CLASSES, np.int64)
    presence = np.zeros(NUM_CLASSES, np.int64)
    parts = cm.part_files(raw)
    for r in rows:
        img = cv2.imread(str(out / r["image"]))
        lab = cv2.imread(str(out / r["label"]), cv2.IMREAD_UNCHANGED)
        assert img.shape == (SIZE, SIZE, 3) and lab.shape == (SIZE, SIZE) and lab.dtype == np.uint8
        np.testing.assert_array_equal(lab, cm.read_label_map(parts[int(r["id"])], SIZE))
        if r["split"] == "train":
            h = np.bincount(lab.ravel(), minlength=NUM_CLASSES)
            pixels += h
            presence += h > 0
    info = json.loads((out / "dataset.json").read_text())
    assert info["size"] == SIZE and info["num_classes"] == NUM_CLASSES and info["split"] == "official"
    assert info["class_pixel_counts"] == pixels.tolist()
    assert info["class_presence"] == presence.tolist()
    np.testing.assert_allclose(info["class_pixel_frequency"], pixels / pixels.sum(), atol=1e-9)
    assert info["class_presence"][2] == 3  # nose only in even ids 0, 2, 4 of train
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["skipped"] == [] and report["resized_parts"] == []


def test_reduced_jpeg_decode_matches_full_decode(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    img = cv2.resize(
        rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), (512, 512), interpolation=cv2.INTER_CUBIC
    )
    path = tmp_path / "0.jpg"
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = path.read_bytes()
    assert prep._image_size(data) == (512, 512)
    assert prep._reduced_flag((1024, 1024), 256) == cv2.IMREAD_REDUCED_COLOR_4
    assert prep._reduced_flag((1024, 1024), 512) == cv2.IMREAD_REDUCED_COLOR_2
    assert prep._reduced_flag((1024, 1024), 100) == cv2.IMREAD_REDUCED_COLOR_8
    assert prep._reduced_flag((1024, 1024), 600) == cv2.IMREAD_COLOR
    assert prep._reduced_flag((512, 500), 128) == cv2.IMREAD_REDUCED_COLOR_2  # 500/4 < 128
    for size in (64, 100, 128, 256):
        fast = prep.read_image_resized(path, size)
        slow = cv2.resize(cv2.imread(str(path)), (size, size), interpolation=cv2.INTER_AREA)
        assert fast.shape == (size, size, 3)
        assert np.abs(fast.astype(int) - slow.astype(int)).mean() < 2.0


class Interrupt(BaseException):
    """Stands in for Ctrl-C / a killed worker in the middle of a run."""


def test_interrupted_run_resumes_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw(tmp_path / "raw", n=8)
    clean = tmp_path / "clean"
    prep.prepare_dataset(raw, clean, SIZE, split="ratio", ratios=(0.5, 0.25, 0.25), seed=1, workers=1)

    out = tmp_path / "resumed"
    real = prep.process_task
    calls = {"n": 0}

    def flaky(task: prep.Task, size: int):
        calls["n"] += 1
        if calls["n"] > 3:
            raise Interrupt
        return real(task, size)

    monkeypatch.setattr(prep, "process_task", flaky)
    with pytest.raises(Interrupt):
        prep.prepare_dataset(raw, out, SIZE, split="ratio", ratios=(0.5, 0.25, 0.25), seed=1, workers=1)
    monkeypatch.setattr(prep, "process_task", real)
    assert len(list(out.glob("*/labels/*.png"))) == 3  # what was written survives
    assert not (out / "manifest.csv").exists()
    summary = prep.prepare_dataset(raw, out, SIZE, split="ratio", ratios=(0.5, 0.25, 0.25), seed=1, workers=1)
    assert summary["processed_now"] == 5
    assert tree(out) == tree(clean)
    # losing an output file: only that id is redone, the result is the same again
    next(out.glob("train/labels/*.png")).unlink()
    assert (
        prep.prepare_dataset(raw, out, SIZE, split="ratio", ratios=(0.5, 0.25, 0.25), seed=1)["processed_now"]
        == 1
    )
    assert tree(out) == tree(clean)
    # a file a power cut left incomplete (written without fsync) is redone too
    cut = next(out.glob("val/images/*.jpg"))
    cut.write_bytes(cut.read_bytes()[:100])
    assert (
        prep.prepare_dataset(raw, out, SIZE, split="ratio", ratios=(0.5, 0.25, 0.25), seed=1)["processed_now"]
        == 1
    )
    assert tree(out) == tree(clean)
    with pytest.raises(FacesegmError, match="other settings"):
        prep.prepare_dataset(raw, out, SIZE, split="ratio", ratios=(0.5, 0.25, 0.25), seed=2, workers=1)


@pytest.mark.slow
def test_process_pool_gives_the_same_files(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", n=8)
    prep.prepare_dataset(raw, tmp_path / "one", SIZE, workers=1)
    summary = prep.prepare_dataset(raw, tmp_path / "two", SIZE, workers=2)
    assert summary["workers"] == 2
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


def test_bad_inputs_are_skipped_and_reported(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", n=9, orig=[0, 1, 2, 3, 4, 5, 6, 7, 8])
    img_dir, mask_dir = raw / cm.IMAGE_DIR, raw / cm.MASK_DIR / "0"
    (img_dir / "1.jpg").write_bytes(b"this is not a jpeg")  # undecodable image
    data = (img_dir / "2.jpg").read_bytes()
    (img_dir / "2.jpg").write_bytes(data[: len(data) // 2])  # truncated image
    skin = (mask_dir / "00003_skin.png").read_bytes()
    (mask_dir / "00003_skin.png").write_bytes(skin[: len(skin) // 2])  # truncated mask
    write_png(mask_dir / "00004_moustache.png", np.zeros((32, 32), np.uint8))  # unknown part
    for p in mask_dir.glob("00005_*.png"):
        p.unlink()  # image without masks
    (img_dir / "6.jpg").unlink()  # masks without image
    write_png(mask_dir / "00007_hair.png", face_masks(64)["hair"])  # one part at another size
    lines = (raw / cm.MAPPING_FILE).read_text().splitlines()
    (raw / cm.MAPPING_FILE).write_text("\n".join(line for line in lines if not line.startswith("8 ")) + "\n")

    out = tmp_path / "out"
    summary = prep.prepare_dataset(raw, out, SIZE, workers=1)
    report = json.loads((out / "prepare_report.json").read_text())
    reasons = {r["id"]: r["reason"] for r in report["skipped"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 8]
    assert "1.jpg" in reasons[1] and "truncated" in reasons[2] and "00003_skin.png" in reasons[3]
    assert "moustache" in reasons[4] and "without any mask" in reasons[5] and "without an image" in reasons[6]
    assert "mapping" in reasons[8].lower() or "not in" in reasons[8]
    assert summary["counts"]["train"] == 2 and summary["skipped"] == 7
    assert report["resized_parts"][0]["id"] == 7 and "hair" in report["resized_parts"][0]["notes"][0]
    lab7 = cv2.imread(str(out / "train/labels/7.png"), cv2.IMREAD_UNCHANGED)
    assert lab7.shape == (SIZE, SIZE) and lab7.max() < NUM_CLASSES
    assert not list(out.glob("*/*/1.*")) and not list(out.glob("*/*/3.*"))


def test_fatal_input_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        prep.prepare_dataset(tmp_path / "missing", tmp_path / "o", SIZE)
    empty = tmp_path / "empty"
    (empty / cm.IMAGE_DIR).mkdir(parents=True)
    (empty / cm.MASK_DIR).mkdir()
    with pytest.raises(FacesegmError, match="empty dataset"):
        prep.prepare_dataset(empty, tmp_path / "o", SIZE, split="ratio")
    raw = make_raw(tmp_path / "raw", n=2, mapping=False)
    with pytest.raises(FileNotFoundError, match=str(raw / cm.MAPPING_FILE)):
        prep.prepare_dataset(raw, tmp_path / "o", SIZE, split="official")
    with pytest.raises(ValueError, match="ratios"):
        prep.prepare_dataset(raw, tmp_path / "o", SIZE, split="ratio", ratios=(0.5, 0.5, 0.5))


def test_cli_prepare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = make_raw(tmp_path / "raw", n=3, mapping=False)
    out = tmp_path / "out"
    args = ["prepare", "--raw", str(raw), "--out", str(out), "--size", "8", "--split", "ratio"]
    assert cli.main([*args, "--ratios", "0.34,0.33,0.33", "--workers", "1"]) == 0
    assert json.loads((out / "dataset.json").read_text())["counts"] == {"train": 1, "val": 1, "test": 1}
    assert cli.main([*args[:-2], "--split", "official"]) == 2
    assert cm.MAPPING_FILE in capsys.readouterr().err


def _blob_mask(size: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((size, size), np.uint8)
    for _ in range(4):
        y, x, r = rng.integers(0, size, 3)
        cv2.circle(m, (int(x), int(y)), int(r) // 3 + 2, 255, -1)
    return m


def _png_variants(mask: np.ndarray) -> dict[str, bytes]:
    """One mask as PNG bytes the ways real writers store it: grey/RGB/RGBA, OpenCV and Pillow filters."""
    import io

    from PIL import Image

    rgb = np.dstack([mask, mask // 2, mask])
    rgba = np.dstack([rgb, np.full_like(mask, 200)])
    out = {}
    for name, arr in (("grey", mask), ("rgb", rgb), ("rgba", rgba)):
        for f in ("NONE", "SUB", "UP", "AVG", "PAETH", "ALL"):
            flag = getattr(cv2, f"IMWRITE_PNG_FILTER_{f}", None) or cv2.IMWRITE_PNG_ALL_FILTERS
            out[f"cv2-{name}-{f}"] = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_FILTER, flag])[1].tobytes()
        buf = io.BytesIO()
        Image.fromarray(arr[..., [2, 1, 0, 3][: arr.shape[2]]] if arr.ndim == 3 else arr).save(buf, "PNG")
        out[f"pillow-{name}"] = buf.getvalue()
    return out


def test_fast_mask_reader_equals_opencv_for_every_png_writer(tmp_path: Path) -> None:
    """decode_png is exact where it answers (None/Sub/Up rows), and read_mask always equals cm.read_mask."""
    fast = 0
    for seed in range(3):
        for name, data in _png_variants(_blob_mask(seed=seed)).items():
            path = tmp_path / f"{seed}_{name}.png"
            path.write_bytes(data)
            expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            got = prep.decode_png(data)
            if got is not None:
                fast += 1
                ref = expected if expected.ndim == 2 else expected[..., [2, 1, 0, 3][: expected.shape[2]]]
                np.testing.assert_array_equal(got, ref, err_msg=name)
            elif "NONE" in name or "SUB" in name or "UP" in name:
                pytest.fail(f"{name}: decode_png should handle None/Sub/Up rows")
            np.testing.assert_array_equal(prep.read_mask(path), cm.read_mask(path), err_msg=name)
    assert fast >= 30  # the fast path, not the fallback, did most of the work (Pillow mixes None/Sub/Up)
    cut = tmp_path / "cut.png"
    cut.write_bytes(_png_variants(_blob_mask())["cv2-grey-SUB"][:-30])
    assert prep.decode_png(cut.read_bytes()) is None
    with pytest.raises(FacesegmError, match="truncated or not a PNG"):
        prep.read_mask(cut)


def test_prepared_labels_at_the_archive_sizes_equal_the_reference_merge(tmp_path: Path) -> None:
    """Images twice the mask size (like 1024/512), S below both: labels are the plain nearest merge."""
    from facesegm_utils import synthetic

    raw = synthetic.write_dataset(tmp_path / "raw", count=4, size=128, mask_size=64, seed=1)
    out = tmp_path / "out"
    prep.prepare_dataset(raw, out, 32, split="ratio", ratios=(1.0, 0.0, 0.0), workers=1)
    parts = cm.part_files(raw)
    for k, files in parts.items():
        lab = cv2.imread(str(out / "train" / "labels" / f"{k}.png"), cv2.IMREAD_UNCHANGED)
        merged = cm.merge_parts({n: cm.read_mask(p) for n, p in files.items()})
        np.testing.assert_array_equal(lab, cm.resize_nearest(merged, 32))
