"""Tests for facesegm_utils.inference: full-resolution probabilities, input layouts, folders, CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facesegm_utils import cli
from facesegm_utils.fileio import FacesegmError, read_label_map, write_image_atomic
from facesegm_utils.inference import FaceParser
from facesegm_utils.labels import NUM_CLASSES
from facesegm_utils.prediction import resize_proba, softmax, to_rgb

S = 32  # the tiny models' input size
K = 60.0  # sharpness of the hand-built classifier


def expected_small_proba(img: np.ndarray) -> np.ndarray:
    """What the hand-built model computes: class c wins where red/255 is nearest c/18 (a 1-D classifier)."""
    r = img[..., 0].astype(np.float64) / 255.0
    c = np.arange(NUM_CLASSES)
    logits = (2 * K * c / 18.0)[None, None, :] * r[..., None] - (K * c**2 / 324.0)[None, None, :]
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    return (e / e.sum(axis=2, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def red_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .keras model with known logits: Rescaling + a 1x1 Conv2D reading the red channel."""
    import keras

    inp = keras.Input((S, S, 3))
    x = keras.layers.Rescaling(1.0 / 255.0)(inp)
    out = keras.layers.Conv2D(NUM_CLASSES, 1, dtype="float32")(x)
    model = keras.Model(inp, out)
    kernel = np.zeros((1, 1, 3, NUM_CLASSES), np.float32)
    c = np.arange(NUM_CLASSES)
    kernel[0, 0, 0, :] = 2 * K * c / 18.0
    model.layers[-1].set_weights([kernel, (-K * c**2 / 324.0).astype(np.float32)])
    path = tmp_path_factory.mktemp("model") / "red.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def parser(red_model_path: Path) -> FaceParser:
    return FaceParser(red_model_path, batch_size=3)


def gradient_image(h: int = S, w: int = S) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w).round().astype(np.uint8)[None, :]
    img[..., 1] = 90
    return img


def test_probabilities_are_upsampled_not_labels(parser: FaceParser) -> None:
    assert parser.image_size == S
    img = gradient_image()
    small = expected_small_proba(img)
    proba = parser.predict_proba(cv2.resize(img, (4 * S, 4 * S), interpolation=cv2.INTER_NEAREST))
    # the big image resizes back (area) to exactly `img`, so the expected answer is the bilinear
    # upsampling of the hand-computed probabilities
    want = cv2.resize(small, (4 * S, 4 * S), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(proba, want, atol=2e-4)
    labels = parser.predict_labels(cv2.resize(img, (4 * S, 4 * S), interpolation=cv2.INTER_NEAREST))
    assert labels.dtype == np.uint8 and labels.shape == (4 * S, 4 * S)
    assert np.array_equal(labels, np.argmax(want, axis=2))
    nearest_labels = cv2.resize(
        np.argmax(small, axis=2).astype(np.uint8), (4 * S, 4 * S), interpolation=cv2.INTER_NEAREST
    )
    assert (labels != nearest_labels).any()  # an upsampled label map would have blocky edges instead


@pytest.mark.parametrize(
    "shape_dtype",
    [
        ((40, 56, 3), np.uint8),
        ((64, 64), np.uint8),
        ((70, 50, 1), np.uint8),
        ((33, 47, 4), np.uint8),
        ((20, 24, 3), np.float32),
    ],
)
def test_output_at_input_resolution_for_layouts(parser: FaceParser, shape_dtype: tuple) -> None:
    shape, dtype = shape_dtype
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape).astype(dtype)
    if dtype == np.float32:
        img /= 255.0
    proba = parser.predict_proba(img)
    assert proba.shape == (*shape[:2], NUM_CLASSES) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=2), 1.0, atol=1e-5)
    assert proba.min() >= 0
    labels = parser.predict_labels(img)
    assert labels.shape == shape[:2] and labels.dtype == np.uint8


def test_color_orders_and_alpha_give_the_same_answer(parser: FaceParser) -> None:
    img = gradient_image(48, 40)
    ref = parser.predict_proba(img)
    np.testing.assert_allclose(parser.predict_proba(img[..., ::-1].copy(), color_order="bgr"), ref, atol=1e-6)
    rgba = np.dstack([img, np.full(img.shape[:2], 7, np.uint8)])
    np.testing.assert_allclose(parser.predict_proba(rgba), ref, atol=1e-6)
    np.testing.assert_allclose(parser.predict_proba(img.astype(np.float32) / 255.0), ref, atol=1e-4)
    grey = to_rgb(np.full((5, 6), 9, np.uint8))
    assert grey.shape == (5, 6, 3) and np.all(grey == 9.0)


def test_batch_matches_single_images(parser: FaceParser) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (20 + 7 * i, 30, 3), dtype=np.uint8) for i in range(5)]  # 2 model calls
    batch = parser.predict_batch(images)
    assert [b.shape for b in batch] == [im.shape[:2] for im in images]
    for im, lb in zip(images, batch, strict=True):
        assert np.array_equal(lb, parser.predict_labels(im))


def test_bad_images_raise(parser: FaceParser) -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        parser.predict_labels(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        parser.predict_labels(np.zeros((8, 8, 3), np.int16))
    with pytest.raises(ValueError, match="NaN"):
        parser.predict_labels(np.full((8, 8, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="color_order"):
        parser.predict_labels(np.zeros((8, 8, 3), np.uint8), color_order="rbg")


def test_predict_folder_writes_label_maps_and_names_corrupt_files(parser: FaceParser, tmp_path: Path) -> None:
    src = tmp_path / "in"
    for i in range(4):
        write_image_atomic(src / f"face_{i}.png", gradient_image(30 + i, 36))
    written = parser.predict_folder(src, tmp_path / "out", save_proba=True, progress=False)
    assert [p.name for p in written] == [f"face_{i}.png" for i in range(4)]
    lbl = read_label_map(written[2])
    assert lbl.shape == (32, 36)
    assert np.array_equal(lbl, parser.predict_labels(gradient_image(32, 36)))
    proba = np.load(tmp_path / "out" / "face_2_proba.npy")
    assert proba.shape == (32, 36, NUM_CLASSES) and proba.dtype == np.float16
    (src / "face_9.jpg").write_bytes(b"not an image")
    with pytest.raises(FacesegmError, match="face_9.jpg"):
        parser.predict_folder(src, tmp_path / "out2", progress=False)


@pytest.mark.slow
def test_unet_round_trip_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facesegm_utils.model import build_unet

    model_path = tmp_path / "unet.keras"
    build_unet(S, base_filters=4, depth=2).save(model_path)
    write_image_atomic(tmp_path / "face.jpg", gradient_image(50, 44))
    rc = cli.main(
        [
            "predict",
            "--model",
            str(model_path),
            "--input",
            str(tmp_path / "face.jpg"),
            "--out",
            str(tmp_path / "pred"),
        ]
    )
    assert rc == 0
    assert read_label_map(tmp_path / "pred" / "face.png").shape == (50, 44)
    p = FaceParser(model_path).predict_proba(gradient_image(50, 44))
    np.testing.assert_allclose(p.sum(axis=2), 1.0, atol=1e-5)


def test_cli_bad_input(red_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(
        [
            "predict",
            "--model",
            str(tmp_path / "none.keras"),
            "--input",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2 and "model not found" in capsys.readouterr().err
    rc = cli.main(
        [
            "predict",
            "--model",
            str(red_model_path),
            "--input",
            str(tmp_path / "missing.jpg"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2 and "input not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    rc = cli.main(
        [
            "predict",
            "--model",
            str(red_model_path),
            "--input",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2 and "no images" in capsys.readouterr().err
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"garbage")
    rc = cli.main(
        ["predict", "--model", str(bad), "--input", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    )
    assert rc == 2 and "could not load model" in capsys.readouterr().err


def test_resize_proba_down_and_softmax() -> None:
    p = softmax(np.random.default_rng(0).normal(size=(16, 16, NUM_CLASSES)))
    np.testing.assert_allclose(p.sum(axis=2), 1.0, atol=1e-6)
    small = resize_proba(p, (4, 8))
    assert small.shape == (4, 8, NUM_CLASSES)
    np.testing.assert_allclose(small[0, 0], p[:4, :2].mean(axis=(0, 1)), atol=1e-6)  # area average
