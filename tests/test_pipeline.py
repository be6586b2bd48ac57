"""The tf.data pipeline: batches, paired augmentation (flip swap, alignment), class weights, errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from facesegm_utils import pipeline as pl
from facesegm_utils.fileio import FacesegmError
from facesegm_utils.labels import FLIP_PERMUTATION, NUM_CLASSES, class_id
from facesegm_utils.prepare import split_items

L_EYE, R_EYE, SKIN, HAIR, MOUTH, CLOTH = (
    class_id(n) for n in ("l_eye", "r_eye", "skin", "hair", "mouth", "cloth")
)


def pattern_label(size: int, shift: int = 0) -> np.ndarray:
    """Blocks of flip-invariant classes (skin, hair, mouth, cloth) on background."""
    lab = np.zeros((size, size), np.uint8)
    q = size // 4
    lab[q : 3 * q, q : 3 * q] = SKIN
    lab[:q, q:] = HAIR
    lab[3 * q :, : 2 * q] = CLOTH
    lab[q + 2 : 2 * q, q + 2 + shift : 2 * q + shift] = MOUTH
    return lab


def write_prepared(root: Path, n: int = 5, size: int = 32) -> Path:
    """A prepared folder by hand: the image's red channel encodes the label (12 per class)."""
    rows = ["id,split,image,label"]
    for k in range(n):
        split = "train" if k < n - 1 else "val"
        lab = pattern_label(size, shift=k)
        img = np.stack([lab * 12, np.full_like(lab, 100), np.full_like(lab, 50)], axis=-1)
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(root / split / "images" / f"{k}.jpg"), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100]
        )
        cv2.imwrite(str(root / split / "labels" / f"{k}.png"), lab)
        rows.append(f"{k},{split},{split}/images/{k}.jpg,{split}/labels/{k}.png")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    freq = np.zeros(NUM_CLASSES)
    freq[[0, SKIN, HAIR]] = [0.5, 0.25, 0.25]
    info = {
        "size": size,
        "counts": {"train": n - 1, "val": 1, "test": 0},
        "class_pixel_frequency": freq.tolist(),
    }
    (root / "dataset.json").write_text(json.dumps(info))
    return root


def test_batches_shapes_and_dtypes(tmp_path: Path) -> None:
    prep = write_prepared(tmp_path)
    batches = list(pl.make_dataset(prep, "train", 3))
    assert [b[0].shape[0] for b in batches] == [3, 1]
    x, y = batches[0]  # no weight map: class weights belong to the loss
    assert x.dtype == tf.float32 and x.shape == (3, 32, 32, 3)
    assert y.dtype == tf.int32 and y.shape == (3, 32, 32)
    np.testing.assert_array_equal(y[0].numpy(), pattern_label(32, 0))  # not shuffled, not augmented
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255.0
    small = next(iter(pl.make_dataset(prep, "val", 2, image_size=16)))
    assert small[0].shape == (1, 16, 16, 3)
    assert set(np.unique(small[1].numpy())) <= set(np.unique(pattern_label(32, 4)))


def test_training_dataset_is_reproducible_per_seed(tmp_path: Path) -> None:
    prep = write_prepared(tmp_path)

    def first(seed: int) -> np.ndarray:
        return next(iter(pl.make_dataset(prep, "train", 4, training=True, seed=seed)))[0].numpy()

    np.testing.assert_array_equal(first(3), first(3))
    assert not np.array_equal(first(3), first(4))


def test_flip_swaps_left_and_right_and_twice_is_identity() -> None:
    lab = np.zeros((8, 8), np.int32)
    lab[2:4, 1:3] = L_EYE  # on the image's left
    lab[5, 5] = SKIN
    img = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, 8, 3)), tf.float32)
    flip_only = pl.AugmentConfig(
        flip_prob=1.0,
        scale=(1.0, 1.0),
        rotation_deg=0.0,
        translate=0.0,
        brightness=0.0,
        contrast=(1.0, 1.0),
        saturation=(1.0, 1.0),
        hue=0.0,
    )
    seed = tf.constant([1, 2], tf.int64)
    img1, lab1 = pl.augment_pair(img, tf.constant(lab), seed, flip_only)
    lab1 = lab1.numpy()
    assert (lab1[2:4, 5:7] == R_EYE).all() and (lab1 == L_EYE).sum() == 0  # moved right, became right eye
    assert lab1[5, 2] == SKIN
    np.testing.assert_array_equal(lab1, FLIP_PERMUTATION[lab[:, ::-1]])
    np.testing.assert_array_equal(img1.numpy(), img.numpy()[:, ::-1])
    img2, lab2 = pl.augment_pair(img1, tf.constant(lab1), seed, flip_only)
    np.testing.assert_array_equal(lab2.numpy(), lab)
    np.testing.assert_array_equal(img2.numpy(), img.numpy())


def test_image_and_label_stay_aligned_under_augmentation() -> None:
    size = 64
    lab = pattern_label(size, shift=3).astype(np.int32)
    img = np.stack([lab * 12, np.full_like(lab, 100), np.full_like(lab, 50)], axis=-1).astype(np.float32)
    cfg = pl.AugmentConfig(flip_prob=0.5, scale=(0.8, 1.2), rotation_deg=20, translate=0.1).geometric_only()
    moved = 0
    for s in range(12):
        aimg, alab = pl.augment_pair(tf.constant(img), tf.constant(lab), tf.constant([s, 7], tf.int64), cfg)
        aimg, alab = aimg.numpy(), alab.numpy()
        assert alab.dtype == np.int32 and set(np.unique(alab)) <= set(np.unique(lab))  # nearest: no new ids
        # away from label edges (5x5 window of one class) the image still encodes the label
        interior = np.zeros(alab.shape, bool)
        for c in np.unique(alab):
            interior |= cv2.erode((alab == c).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        agree = (np.rint(aimg[..., 0] / 12).astype(int) == alab)[interior]
        assert agree.size > 1000 and agree.mean() > 0.99, (s, agree.mean())
        moved += int(not np.array_equal(alab, lab))
    assert moved == 12


def test_colour_jitter_leaves_labels_alone() -> None:
    lab = tf.constant(pattern_label(32), tf.int32)
    img = tf.fill([32, 32, 3], 120.0)
    jitter = pl.AugmentConfig(
        flip_prob=0.0, scale=(1.0, 1.0), rotation_deg=0.0, translate=0.0, brightness=0.3
    )
    aimg, alab = pl.augment_pair(img, lab, tf.constant([5, 5], tf.int64), jitter)
    np.testing.assert_array_equal(alab.numpy(), lab.numpy())
    assert float(tf.reduce_max(tf.abs(aimg - img))) > 1.0
    assert 0.0 <= float(tf.reduce_min(aimg)) and float(tf.reduce_max(aimg)) <= 255.0


def test_class_weights_hand_computed(tmp_path: Path) -> None:
    freq = np.zeros(NUM_CLASSES)
    freq[:3] = [0.5, 0.25, 0.25]
    info = {"class_pixel_frequency": freq.tolist(), "size": 8}
    w = pl.class_weights(info, "median_frequency", clip=None)
    # median 0.25 -> raw [0.5, 1, 1], pixel-weighted mean 0.75 -> [2/3, 4/3, 4/3]; absent classes 0
    np.testing.assert_allclose(w[:3], [2 / 3, 4 / 3, 4 / 3], rtol=1e-6)
    assert (w[3:] == 0).all() and w.dtype == np.float32
    w = pl.class_weights(info, "inverse_sqrt", clip=None)
    np.testing.assert_allclose(w[:3], np.array([2**0.5, 2, 2]) / (0.5 * 2**0.5 + 1.0), rtol=1e-6)
    freq[:3] = [0.9, 0.1, 0.0]
    # median 0.5 -> raw [5/9, 5] (mean 1); clip 2 -> scale a with 0.9*5/9*a + 0.1*2 = 1 -> a = 1.6
    w = pl.class_weights({"class_pixel_frequency": freq.tolist()}, "median_frequency", clip=2.0)
    np.testing.assert_allclose(w[:2], [8 / 9, 2.0], rtol=1e-5)
    np.testing.assert_allclose(w[:2] @ freq[:2], 1.0, rtol=1e-5)
    write_prepared(tmp_path)
    np.testing.assert_allclose(
        pl.class_weights(tmp_path, clip=None)[[0, SKIN, HAIR]], [2 / 3, 4 / 3, 4 / 3], rtol=1e-6
    )
    with pytest.raises(ValueError, match="method"):
        pl.class_weights(info, "bogus")


def test_pipeline_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        pl.make_dataset(tmp_path, "train", 2)
    prep = write_prepared(tmp_path / "p")
    with pytest.raises(FacesegmError, match="'test' .* has no images"):
        pl.make_dataset(prep, "test", 2)
    with pytest.raises(ValueError, match="unknown split"):
        pl.make_dataset(prep, "holdout", 2)
    (prep / "manifest.csv").unlink()
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        pl.make_dataset(prep, "train", 2)


def test_decoded_images_match_what_inference_reads(tmp_path: Path) -> None:
    """Training sees exactly the pixels evaluation and FaceParser read with OpenCV (no IDCT skew)."""
    prep = write_prepared(tmp_path, n=2, size=32)
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # texture makes IDCT variants differ
    cv2.imwrite(str(prep / "train" / "images" / "0.jpg"), noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])
    x = next(iter(pl.make_dataset(prep, "train", 1)))[0][0].numpy()
    expected = cv2.cvtColor(cv2.imread(str(prep / "train" / "images" / "0.jpg")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(x.astype(np.uint8), expected)


def _stages(ds: tf.data.Dataset) -> list[tf.data.Dataset]:
    """Every dataset of an input pipeline, from the output back to the file names."""
    out, todo = [], [ds]
    while todo:
        d = todo.pop()
        out.append(d)
        todo += d._inputs()
    return out


def _is_encoded(d: tf.data.Dataset) -> bool:
    return all(s.dtype == tf.string and s.shape.rank == 0 for s in tf.nest.flatten(d.element_spec))


def test_cache_holds_encoded_records_not_decoded_tensors(tmp_path: Path) -> None:
    prep = write_prepared(tmp_path / "p", n=9)
    ds = pl.make_dataset(prep, "train", 4, training=True, cache="memory")
    stages = _stages(ds)
    caches = [d for d in stages if type(d).__name__ == "CacheDataset"]
    shuffles = [d for d in stages if "Shuffle" in type(d).__name__]
    assert len(caches) == 1 and len(shuffles) == 1
    # the cache and the shuffle hold (JPEG bytes, PNG bytes) scalars, and nothing before them decodes
    assert _is_encoded(caches[0]) and _is_encoded(shuffles[0])
    assert all(_is_encoded(d) for d in _stages(shuffles[0]))
    # the cache really serves the second epoch: the prepared files can be gone by then
    plain = pl.make_dataset(prep, "train", 8, cache="memory")
    first = [b[0].numpy() for b in plain]
    for f in (prep / "train" / "images").glob("*.jpg"):
        f.unlink()
    second = [b[0].numpy() for b in plain]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))


@pytest.mark.parametrize("mode", pl.CACHE_MODES)
def test_every_cache_mode_keeps_host_memory_bounded(tmp_path: Path, mode: str) -> None:
    """A shuffle holds file names, or encoded records right after an in-memory cache, the one mode whose
    size the budget bounds; never a whole split's bytes outside that budget (the removed ``disk``)."""
    prep = write_prepared(tmp_path, n=9)
    ds = pl.make_dataset(prep, "train", 4, training=True, cache=mode)
    for shuffle in (d for d in _stages(ds) if "Shuffle" in type(d).__name__):
        source = shuffle._inputs()[0]
        holds_names = type(source).__name__ == "_TensorSliceDataset"
        assert holds_names or (mode == "memory" and type(source).__name__ == "CacheDataset")
        if not holds_names:
            assert source._filename == ""  # an in-memory cache, within resolve_cache's budget
    with pytest.raises(ValueError, match="'disk' was removed.*'none' is the bounded mode"):
        pl.make_dataset(prep, "train", 2, cache="disk")


def test_no_cache_rereads_files_and_shuffles_names(tmp_path: Path) -> None:
    prep = write_prepared(tmp_path, n=9)
    ds = pl.make_dataset(prep, "train", 8, training=True, cache="none")
    stages = _stages(ds)
    assert not [d for d in stages if type(d).__name__ == "CacheDataset"]
    shuffle = next(d for d in stages if "Shuffle" in type(d).__name__)
    assert _is_encoded(shuffle) and type(shuffle._inputs()[0]).__name__ == "_TensorSliceDataset"
    list(ds)
    (prep / "train" / "images" / "0.jpg").unlink()
    with pytest.raises(tf.errors.NotFoundError):
        list(ds)


def test_cache_over_budget_falls_back_with_a_notice(tmp_path: Path, capsys) -> None:
    prep = write_prepared(tmp_path, n=5)
    files = [str(p) for _, image, label in split_items(prep, "train") for p in (image, label)]
    total = sum((Path(f)).stat().st_size for f in files)
    assert pl.resolve_cache("memory", files, budget_bytes=total) == "memory"
    assert capsys.readouterr().err == ""
    ds = pl.make_dataset(prep, "train", 2, cache="memory", cache_budget_bytes=total - 1)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exceed" in err and "cache=none" in err
    assert not [d for d in _stages(ds) if type(d).__name__ == "CacheDataset"]
    assert sum(int(b[0].shape[0]) for b in ds) == 4
    assert pl.resolve_cache(True, []) == "memory" and pl.resolve_cache(False, []) == "none"
    with pytest.raises(ValueError, match="unknown cache 'ram'.*memory, none"):
        pl.make_dataset(prep, "train", 2, cache="ram")
