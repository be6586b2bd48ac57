"""The one prediction path: sizes, probabilities, and every caller scoring a model the same."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from facesegm_utils import cli, prediction
from facesegm_utils.fileio import FacesegmError
from facesegm_utils.labels import FLIP_PERMUTATION, NUM_CLASSES, class_id
from facesegm_utils.model import build_unet


@pytest.fixture(scope="module")
def net() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_unet(16, base_filters=2, depth=1)


def test_probabilities_at_each_images_own_size(net: keras.Model) -> None:
    rng = np.random.default_rng(0)
    images = [
        rng.uniform(0, 255, shape).astype(np.float32) for shape in ((16, 16, 3), (40, 24, 3), (9, 12, 3))
    ]
    probas = prediction.predict_proba(net, images)
    assert [p.shape for p in probas] == [(16, 16, NUM_CLASSES), (40, 24, NUM_CLASSES), (9, 12, NUM_CLASSES)]
    for p in probas:
        np.testing.assert_allclose(p.sum(axis=2), 1.0, atol=1e-5)
    # at the model's size the probabilities are the softmax of the model's logits, untouched
    logits = keras.ops.convert_to_numpy(net(images[0][None]))[0]
    np.testing.assert_allclose(probas[0], prediction.softmax(logits), atol=1e-5)
    labels = prediction.predict_labels(net, images)
    assert [lb.shape for lb in labels] == [(16, 16), (40, 24), (9, 12)] and labels[0].dtype == np.uint8
    assert prediction.predict_proba(net, []) == []


def test_probabilities_not_labels_are_upsampled(net: keras.Model) -> None:
    """Upsampling 2x: each output pixel is a convex mix of the 2x2 nearest model-size probabilities."""
    rng = np.random.default_rng(1)
    small = rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
    big = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # area-shrinks back to `small` exactly
    p_small = prediction.predict_proba(net, [small])[0]
    p_big = prediction.predict_proba(net, [big])[0]
    # bilinear 2x (half-pixel centres): output (1, 1) = 0.75^2 p(0,0) + 0.75*0.25 (p(0,1) + p(1,0)) + 0.25^2 p(1,1)
    expected = 0.5625 * p_small[0, 0] + 0.1875 * (p_small[0, 1] + p_small[1, 0]) + 0.0625 * p_small[1, 1]
    np.testing.assert_allclose(p_big[1, 1], expected, atol=1e-5)


def test_input_size_checks() -> None:
    any_size = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(NUM_CLASSES, 1)])
    with pytest.raises(FacesegmError, match="accepts any input size"):
        prediction.input_size(any_size)
    assert prediction.input_size(any_size, 8) == 8
    three = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 1)])
    with pytest.raises(FacesegmError, match="19 output classes"):
        prediction.input_size(three)
    with pytest.raises(FileNotFoundError, match="model not found"):
        prediction.load("nowhere/model.keras")


@pytest.mark.slow
def test_evaluate_model_equals_predict_then_evaluate_pred_dir(tmp_path: Path) -> None:
    """A model trained at 128x128 on data prepared at 256x256 gets ONE score, whichever way it is asked."""
    from facesegm_utils import prepare, synthetic

    synthetic.write_dataset(tmp_path / "raw", count=8, size=256, seed=3)
    prepare.prepare_dataset(
        tmp_path / "raw", tmp_path / "prep", 256, split="ratio", ratios=(0.5, 0.25, 0.25), workers=1
    )
    prep, run = tmp_path / "prep", tmp_path / "run"
    args = f"train --data {prep} --out {run} --image-size 128 --epochs 1 --batch-size 2 --base-filters 4 --depth 2"
    assert cli.main([*args.split(), "--loss", "ce", "--mixed-precision", "off", "--strategy", "default"]) == 0
    model, images = run / "model.keras", prep / "test" / "images"

    def both_ways(tag: str, *extra: str) -> tuple[dict, dict]:
        """The report of `evaluate --model`, and of `predict` then `evaluate --pred-dir`."""
        by_model, by_preds = tmp_path / f"{tag}_model.json", tmp_path / f"{tag}_preds.json"
        assert (
            cli.main(["evaluate", "--model", str(model), "--data", str(prep), "--out", str(by_model), *extra])
            == 0
        )
        # the prepared images are aligned crops already: --align none, as evaluate reads them
        predict = ["predict", "--model", str(model), "--input", str(images), "--align", "none", *extra]
        assert cli.main([*predict, "--out", str(tmp_path / tag)]) == 0
        assert (
            cli.main(
                ["evaluate", "--pred-dir", str(tmp_path / tag), "--data", str(prep), "--out", str(by_preds)]
            )
            == 0
        )
        return json.loads(by_model.read_text()), json.loads(by_preds.read_text())

    by_model, by_preds = both_ways("plain")
    assert (
        by_model["source"]["input_size"] == [128, 128]
        and by_model["num_images"] == by_preds["num_images"] == 2
    )
    assert abs(by_model["mean_iou"] - by_preds["mean_iou"]) <= 1e-9
    assert by_model["confusion_matrix"] == by_preds["confusion_matrix"]
    # with --tta flip on both commands: again one score, and the report says which setting made it
    by_flip, by_flip_preds = both_ways("flip", "--tta", "flip")
    assert by_flip["source"]["tta"] == "flip" and by_model["source"]["tta"] == prediction.OFFLINE_TTA
    assert by_flip["confusion_matrix"] == by_flip_preds["confusion_matrix"]
    assert "Test-time augmentation: flip" in (tmp_path / "flip_model.md").read_text()


class _LeftHalfIsLeftEye:
    """A stand-in model: whatever the image, l_eye (logit 30) on the left half, background elsewhere."""

    input_shape = (None, 8, 8, 3)
    output_shape = (None, 8, 8, NUM_CLASSES)

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(np.array(x))
        logits = np.zeros((len(x), 8, 8, NUM_CLASSES), np.float32)
        logits[:, :, :4, class_id("l_eye")] = 30.0
        logits[:, :, 4:, class_id("background")] = 30.0
        return logits


def test_flip_tta_averages_the_mirror_with_left_and_right_swapped() -> None:
    fake = _LeftHalfIsLeftEye()
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.float32)
    (plain,) = prediction.predict_proba(fake, [image])
    (tta,) = prediction.predict_proba(fake, [image], tta="flip")
    assert len(fake.batches[0]) == 1 and len(fake.batches[1]) == 2  # one call, the mirror appended
    np.testing.assert_array_equal(fake.batches[1][1], image[:, ::-1])
    np.testing.assert_allclose(plain[:, :4, class_id("l_eye")], 1.0, atol=1e-6)
    # the mirror's left-half l_eye lands on the right half and becomes r_eye: half of each
    np.testing.assert_allclose(tta[:, :4, class_id("l_eye")], 0.5, atol=1e-6)
    np.testing.assert_allclose(tta[:, :4, class_id("background")], 0.5, atol=1e-6)
    np.testing.assert_allclose(tta[:, 4:, class_id("r_eye")], 0.5, atol=1e-6)
    np.testing.assert_allclose(tta[:, 4:, class_id("background")], 0.5, atol=1e-6)
    np.testing.assert_allclose(tta.sum(axis=-1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="tta must be one of none, flip"):
        prediction.predict_proba(fake, [image], tta="rotate")


def test_flip_tta_on_a_mirror_symmetric_image(net: keras.Model) -> None:
    """On a symmetric image the mirror is the image itself: TTA = mean of the map and its mirror, swapped."""
    half = np.random.default_rng(1).integers(0, 256, (16, 8, 3)).astype(np.float32)
    image = np.concatenate([half, half[:, ::-1]], axis=1)
    (a,) = prediction.predict_proba(net, [image])
    (b,) = prediction.predict_proba(net, [image], tta="flip")
    np.testing.assert_allclose(b, 0.5 * (a + a[:, ::-1][..., FLIP_PERMUTATION]), atol=1e-5)
    assert not np.allclose(a, b, atol=1e-3)  # the untrained net is not mirror-symmetric itself
