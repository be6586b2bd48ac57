"""Figures build on tiny inputs; array helpers give hand-checked pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from facesegm_utils import viz
from facesegm_utils.labels import CLASSES, NUM_CLASSES, PALETTE


@pytest.fixture
def tiny() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = np.full((6, 6, 3), 100, np.uint8)
    truth = np.zeros((6, 6), np.uint8)
    truth[2:, 1:5] = 1
    truth[:2] = 13
    pred = truth.copy()
    pred[0, 0] = 1
    return image, truth, pred


def test_overlay_blends_only_foreground(tiny) -> None:
    image, truth, _ = tiny
    out = viz.overlay(image, truth, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[2, 0], [100, 100, 100])  # background untouched
    np.testing.assert_array_equal(out[3, 2], np.rint((100 + PALETTE[1].astype(float)) / 2))  # skin (204,0,0)
    with pytest.raises(ValueError, match="sizes differ"):
        viz.overlay(image, truth[:3])
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(image, truth, alpha=2)


def test_error_map_marks_wrong_pixels(tiny) -> None:
    image, truth, pred = tiny
    em = viz.error_map(truth, pred, image)
    wrong = np.all(em == viz.ERROR_COLOR, axis=-1)
    assert wrong.sum() == 1 and wrong[0, 0]
    assert viz.error_map(truth, pred).shape == (6, 6, 3)
    with pytest.raises(ValueError, match="same shape"):
        viz.error_map(truth, pred[:2])


def test_normalize_rows() -> None:
    m = viz.normalize_rows([[2, 2], [0, 0]])
    np.testing.assert_allclose(m[0], [0.5, 0.5])
    assert np.isnan(m[1]).all()


def test_figures_build(tiny, tmp_path: Path) -> None:
    image, truth, pred = tiny
    iou = np.linspace(0.1, 0.9, NUM_CLASSES)
    iou[[3, 14]] = np.nan
    matrix = np.eye(NUM_CLASSES, dtype=int) * 5
    matrix[1, 0] = 2
    matrix[3, 3] = 0
    history = tmp_path / "history.csv"
    history.write_text(
        "epoch,loss,pixel_accuracy,mean_iou,val_loss,val_pixel_accuracy,val_mean_iou\n"
        "0,2.0,0.5,0.1,2.1,0.4,0.1\n1,1.0,0.7,0.3,1.2,0.6,0.2\n"
    )
    figs = [
        viz.plot_mask(truth),
        viz.plot_overlay(image, truth),
        viz.plot_images([image, image], ["a", "b"]),
        viz.plot_grid([image, image], [truth, truth], [pred, truth], titles=["x", "y"]),
        viz.plot_grid([image]),
        viz.plot_class_iou(iou),
        viz.plot_class_iou({"background": {"iou": 0.9}, "skin": {"iou": None}}),
        viz.plot_confusion_matrix(matrix),
        viz.plot_history(history),
        viz.plot_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}),
        viz.plot_legend(),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    assert all(viz.figure_png(f, dpi=30)[:4] == b"\x89PNG" for f in figs)  # every figure draws
    png = viz.save_png(figs[5], tmp_path / "iou.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # absent classes are labelled, and the history panels found all three metrics
    texts = [t.get_text() for t in figs[5].axes[0].texts]
    assert texts.count("absent") == 2
    assert len(figs[8].axes) == 3
    assert [t.get_text() for t in figs[10].axes[0].get_legend().get_texts()][1] == "1 skin"
    assert len(figs[10].axes[0].get_legend().get_texts()) == len(CLASSES)


def test_figure_input_errors(tiny, tmp_path: Path) -> None:
    image, truth, _ = tiny
    with pytest.raises(ValueError, match="2 entries, expected 1"):
        viz.plot_grid([image], [truth, truth])
    with pytest.raises(ValueError, match="does not match 19 class names"):
        viz.plot_confusion_matrix(np.eye(3))
    with pytest.raises(FileNotFoundError, match="history.csv"):
        viz.plot_history(tmp_path / "history.csv")
    with pytest.raises(ValueError, match=r"RGB array of shape \(H, W, 3\)"):
        viz.plot_overlay(truth, truth)
