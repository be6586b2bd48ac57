"""`facesegm evaluate` on tiny prepared datasets built in tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesegm_utils import cli
from facesegm_utils.evaluation import evaluate_model, evaluate_predictions, report_markdown
from facesegm_utils.fileio import FacesegmError, write_image_atomic
from facesegm_utils.labels import CLASSES, NUM_CLASSES
from facesegm_utils.metrics import ConfusionMatrix
from facesegm_utils.prepare import split_items


def make_prepared(root: Path, labels: list[np.ndarray], split: str = "test") -> Path:
    """A prepared dataset whose image red channel equals the label id (PNG, so lossless)."""
    rows = []
    for k, lab in enumerate(labels):
        img = np.zeros((*lab.shape, 3), np.uint8)
        img[..., 0] = lab
        write_image_atomic(root / split / "images" / f"{k}.png", img)
        write_image_atomic(root / split / "labels" / f"{k}.png", lab.astype(np.uint8))
        rows.append(
            {
                "id": str(k),
                "split": split,
                "image": f"{split}/images/{k}.png",
                "label": f"{split}/labels/{k}.png",
            }
        )
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "split", "image", "label"])
        w.writeheader()
        w.writerows(rows)
    return root


def random_labels(n: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 6, size).astype(np.uint8) for _ in range(n)]


def test_predictions_match_hand_counts_and_schema(tmp_path: Path) -> None:
    truth = [np.array([[0, 0], [1, 13]], np.uint8), np.array([[1, 1], [13, 0]], np.uint8)]
    preds = [np.array([[0, 1], [1, 13]], np.uint8), np.array([[1, 1], [0, 0]], np.uint8)]
    prep = make_prepared(tmp_path / "prep", truth)
    for k, p in enumerate(preds):
        write_image_atomic(tmp_path / "pred" / f"{k}.png", p)
    rep = evaluate_predictions(tmp_path / "pred", prep, "test", out=tmp_path / "r" / "test_report.json")
    # background: truth 3 px, 2 right, 1 -> skin; skin: 3 px all right, +1 from bg; hair: 2 px, 1 -> bg
    assert rep["pixel_accuracy"] == pytest.approx(6 / 8)
    assert rep["per_class"]["background"]["iou"] == pytest.approx(2 / 4)  # TP 2, FN 1, FP 1
    assert rep["per_class"]["skin"]["iou"] == pytest.approx(3 / 4)  # TP 3, FP 1
    assert rep["per_class"]["hair"]["iou"] == pytest.approx(1 / 2)  # TP 1, FN 1
    assert rep["per_class"]["hair"]["f1"] == pytest.approx(2 / 3)
    assert rep["mean_iou"] == pytest.approx((1 / 2 + 3 / 4 + 1 / 2) / 3)
    assert rep["mean_iou_no_bg"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert rep["mean_f1_fg"] == pytest.approx((6 / 7 + 2 / 3) / 2)
    # schema
    saved = json.loads((tmp_path / "r" / "test_report.json").read_text())
    assert saved == json.loads(json.dumps(rep))
    assert list(saved["per_class"]) == list(CLASSES)
    for key in ("pixel_accuracy", "mean_iou", "mean_iou_no_bg", "mean_f1_fg"):
        assert isinstance(saved[key], float) and 0.0 <= saved[key] <= 1.0
    assert saved["num_images"] == 2 and saved["split"] == "test"
    assert saved["source"]["kind"] == "predictions"
    assert np.array(saved["confusion_matrix"]).shape == (NUM_CLASSES, NUM_CLASSES)
    nose = saved["per_class"]["nose"]
    assert nose == {"iou": None, "f1": None, "support": 0, "absent": True}
    assert isinstance(saved["per_class"]["skin"]["support"], int)
    md = (tmp_path / "r" / "test_report.md").read_text()
    assert "| hair | 50.00 | 66.67 | 2 |" in md and "| nose | absent | absent | 0 |" in md
    assert md == report_markdown(rep)


def test_mismatched_prediction_sizes_are_resized_nearest(tmp_path: Path) -> None:
    truth = random_labels(3, (8, 8))
    prep = make_prepared(tmp_path / "prep", truth)
    rng = np.random.default_rng(1)
    small = [np.where(rng.random(t.shape) < 0.7, t, 2).astype(np.uint8) for t in truth]
    odd = []
    for k, p in enumerate(small):
        big = np.repeat(np.repeat(p, 2, axis=0), 2, axis=1)  # 16x16: nearest 2x downscale restores p
        write_image_atomic(tmp_path / "pred2x" / f"{k}.png", big)
        o = rng.integers(0, 6, (11, 5)).astype(np.uint8)  # an odd size
        write_image_atomic(tmp_path / "predodd" / f"{k}.png", o)
        odd.append(o)
    rep = evaluate_predictions(tmp_path / "pred2x", prep)
    cm = ConfusionMatrix()
    for t, p in zip(truth, small, strict=True):
        cm.update(t, p)
    assert rep["confusion_matrix"] == cm.matrix.tolist()
    rep = evaluate_predictions(tmp_path / "predodd", prep)
    cm.reset()
    for t, o in zip(truth, odd, strict=True):
        cm.update(t, cv2.resize(o, (8, 8), interpolation=cv2.INTER_NEAREST))
    assert rep["confusion_matrix"] == cm.matrix.tolist()
    assert rep["pixel_accuracy"] == pytest.approx(cm.pixel_accuracy())


def test_missing_and_unreadable_predictions_are_named(tmp_path: Path) -> None:
    prep = make_prepared(tmp_path / "prep", random_labels(14, (4, 4)))
    (tmp_path / "pred").mkdir()
    for k in (0, 5):
        write_image_atomic(tmp_path / "pred" / f"{k}.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(FacesegmError) as err:
        evaluate_predictions(tmp_path / "pred", prep)
    msg = str(err.value)
    assert "12 of 14 predictions missing" in msg
    assert "ids 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, ..." in msg and "13" not in msg.split("ids")[1]
    for k in range(14):
        (tmp_path / "pred" / f"{k}.png").write_bytes(b"not a png")
    with pytest.raises(FacesegmError, match=r"could not decode label map .*0\.png"):
        evaluate_predictions(tmp_path / "pred", prep)
    with pytest.raises(FileNotFoundError, match="manifest"):
        evaluate_predictions(tmp_path / "pred", tmp_path / "nowhere")
    with pytest.raises(FacesegmError, match="split 'val'.*no images"):
        split_items(prep, "val")


def test_cli_evaluate_pred_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = random_labels(2, (4, 4))
    prep = make_prepared(tmp_path / "prep", truth)
    for k, t in enumerate(truth):
        write_image_atomic(tmp_path / "pred" / f"{k}.png", t)
    out = tmp_path / "rep.json"
    assert (
        cli.main(["evaluate", "--pred-dir", str(tmp_path / "pred"), "--data", str(prep), "--out", str(out)])
        == 0
    )
    assert json.loads(out.read_text())["pixel_accuracy"] == 1.0
    assert "pixel_accuracy=100.00%" in capsys.readouterr().out
    (tmp_path / "pred" / "1.png").unlink()
    assert cli.main(["evaluate", "--pred-dir", str(tmp_path / "pred"), "--data", str(prep)]) == 2
    assert "ids 1" in capsys.readouterr().err


def _red_to_class_model(size: int | None):
    """A 1x1 conv whose logits c*r - c^2/2 make the argmax the class nearest the red value r."""
    import keras

    inp = keras.Input((size, size, 3))
    conv = keras.layers.Conv2D(NUM_CLASSES, 1)
    model = keras.Model(inp, conv(inp))
    c = np.arange(NUM_CLASSES, dtype=np.float32)
    kernel = np.zeros((1, 1, 3, NUM_CLASSES), np.float32)
    kernel[0, 0, 0] = c
    conv.set_weights([kernel, -(c**2) / 2])
    return model


@pytest.mark.slow
def test_evaluate_model_streams_and_resizes(tmp_path: Path) -> None:
    truth = random_labels(5, (8, 8), seed=3)
    prep = make_prepared(tmp_path / "prep", truth)
    # make some image pixels disagree with their label so the prediction is imperfect
    wrong = []
    for k, t in enumerate(truth):
        img = np.zeros((8, 8, 3), np.uint8)
        img[..., 0] = t
        img[: k + 1, 0, 0] = 5
        write_image_atomic(prep / "test" / "images" / f"{k}.png", img)
        wrong.append(img[..., 0].copy())
    rep = evaluate_model(_red_to_class_model(8), prep, batch_size=2, per_image=True)
    cm = ConfusionMatrix()
    for t, p in zip(truth, wrong, strict=True):
        cm.update(t, p)
    assert rep["confusion_matrix"] == cm.matrix.tolist()
    assert rep["num_images"] == 5 and [r["id"] for r in rep["per_image"]] == ["0", "1", "2", "3", "4"]
    assert all(0 <= r["mean_iou"] <= 1 for r in rep["per_image"])
    # a model at 4x4 on 8x8 data: uniform images stay uniform through the resizes
    prep2 = make_prepared(tmp_path / "prep2", [np.full((8, 8), 3, np.uint8)] * 3)
    for k in range(3):
        lab = np.full((8, 8), 3, np.uint8)
        lab[:2] = 4
        write_image_atomic(prep2 / "test" / "labels" / f"{k}.png", lab)
    rep = evaluate_model(_red_to_class_model(4), prep2, batch_size=2)
    assert rep["pixel_accuracy"] == pytest.approx(48 / 64)
    assert rep["per_class"]["l_eye"]["iou"] == 0.0 and rep["per_class"]["eye_g"]["iou"] == pytest.approx(0.75)
    assert rep["source"]["input_size"] == [4, 4]
    with pytest.raises(FileNotFoundError, match="model not found"):
        evaluate_model(tmp_path / "missing.keras", prep)


@pytest.mark.slow
def test_evaluation_runs_the_model_at_one_batch_shape(tmp_path: Path) -> None:
    """5 images in batches of 2: the short last batch is padded, so the model sees one shape (no retrace),
    and every image is still scored once: the confusion matrix counts 5 images' pixels."""
    from facesegm_utils.evaluation import iter_predictions

    model, shapes = _red_to_class_model(8), []
    predict = model.predict_on_batch
    model.predict_on_batch = lambda x: (shapes.append(x.shape), predict(x))[1]
    truth = random_labels(5, (8, 8), seed=4)
    rows = list(iter_predictions(model, make_prepared(tmp_path / "prep", truth), batch_size=2))
    assert [r[0] for r in rows] == ["0", "1", "2", "3", "4"]
    assert all(np.array_equal(pred, t) for (_, _, pred), t in zip(rows, truth, strict=True))
    assert shapes == [(2, 8, 8, 3)] * 3
    # a split smaller than one batch runs as it is: nothing to keep a shape for
    shapes.clear()
    assert len(list(iter_predictions(model, tmp_path / "prep", batch_size=8))) == 5
    assert shapes == [(5, 8, 8, 3)]
