"""Tests for facesegm_utils.stats: id sampling, per-class counts, presence, weights, sizes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import SYNTH_COUNT, SYNTH_SIZE

from facesegm_utils import celebamask, stats
from facesegm_utils.labels import class_id


@pytest.fixture
def tiny_raw(tmp_path):
    """Two hand-made 4x4 faces: face 0 is all skin with a nose pixel and a hair row on top;
    face 1 has a 2x2 skin patch and one l_eye pixel in the corner."""
    folder = tmp_path / "CelebAMask-HQ-mask-anno" / "0"
    folder.mkdir(parents=True)
    (tmp_path / "CelebA-HQ-img").mkdir()
    m = {}
    m[0, "skin"] = np.full((4, 4), 255, np.uint8)
    m[0, "nose"] = np.zeros((4, 4), np.uint8)
    m[0, "nose"][1, 1] = 255
    m[0, "hair"] = np.zeros((4, 4), np.uint8)
    m[0, "hair"][0, :] = 255
    m[1, "skin"] = np.zeros((4, 4), np.uint8)
    m[1, "skin"][:2, :2] = 255
    m[1, "l_eye"] = np.zeros((4, 4), np.uint8)
    m[1, "l_eye"][3, 3] = 255
    for (k, part), mask in m.items():
        cv2.imwrite(str(folder / f"{k:05d}_{part}.png"), mask)
    for k in (0, 1):
        cv2.imwrite(str(tmp_path / "CelebA-HQ-img" / f"{k}.jpg"), np.zeros((8, 8, 3), np.uint8))
    return tmp_path


def test_sample_ids_spreads_evenly_and_keeps_all_when_under_limit():
    assert stats.sample_ids([5, 1, 3], None) == [1, 3, 5]
    assert stats.sample_ids([5, 1, 3], 10) == [1, 3, 5]
    assert stats.sample_ids(range(100), 5) == [0, 25, 50, 74, 99]
    assert stats.sample_ids(range(10), 1) == [0]
    with pytest.raises(ValueError, match="limit"):
        stats.sample_ids(range(10), 0)


def test_class_statistics_hand_counted(tiny_raw):
    parts = celebamask.part_files(tiny_raw)
    s = stats.class_statistics(parts, progress=False)
    expected = np.zeros(19, np.int64)
    expected[[0, class_id("skin"), class_id("nose"), class_id("l_eye"), class_id("hair")]] = [11, 15, 1, 1, 4]
    np.testing.assert_array_equal(s.pixel_counts, expected)
    assert s.num_faces == 2 and s.ids == [0, 1]
    assert s.presence_counts[class_id("skin")] == 2
    assert s.presence_counts[class_id("hair")] == 1 and s.presence_counts[0] == 1
    assert s.presence[class_id("skin")] == 1.0 and s.presence[class_id("nose")] == 0.5
    np.testing.assert_allclose(s.frequency.sum(), 1.0)
    assert s.frequency[class_id("hair")] == pytest.approx(4 / 32)
    # median of the present frequencies is 4/32 (hair): weights = (4/32) / freq
    w = s.median_frequency_weights()
    assert w[class_id("hair")] == pytest.approx(1.0)
    assert w[class_id("nose")] == pytest.approx(4.0)
    assert w[0] == pytest.approx(4 / 11)
    assert w[class_id("cloth")] == 0.0
    assert s.mask_sizes == {(4, 4): 2}
    summary = s.summary()
    assert summary["num_faces"] == 2 and summary["classes_present"] == 5
    assert summary["skin_fraction"] == pytest.approx(15 / 32)
    assert summary["max_min_frequency_ratio"] == pytest.approx(15.0)
    rows = s.table()
    assert len(rows) == 19 and rows[class_id("nose")]["class"] == "nose"
    assert rows[class_id("nose")]["presence"] == 0.5


def test_class_statistics_resizes_and_checks_ids(tiny_raw):
    parts = celebamask.part_files(tiny_raw)
    s = stats.class_statistics(parts, ids=[1], size=8, progress=False)
    assert s.pixel_counts.sum() == 64 and s.pixel_counts[class_id("l_eye")] == 4
    with pytest.raises(KeyError, match="no part masks"):
        stats.class_statistics(parts, ids=[0, 7], progress=False)
    with pytest.raises(Exception, match="at least one id"):
        stats.class_statistics(parts, ids=[], progress=False)


def test_size_report(tiny_raw):
    parts = celebamask.part_files(tiny_raw)
    rep = stats.size_report(tiny_raw, parts, [0, 1])
    assert rep["images"] == {(8, 8): 2}
    assert rep["masks"] == {(4, 4): 5}


def test_statistics_on_synthetic_faces(synthetic_raw):
    parts = celebamask.part_files(synthetic_raw)
    s = stats.class_statistics(parts, ids=stats.sample_ids(parts, 6), progress=False)
    assert s.num_faces == 6
    assert s.pixel_counts.sum() == 6 * SYNTH_SIZE**2
    for name in ("skin", "hair", "nose"):
        assert s.presence_counts[class_id(name)] == 6
    assert s.frequency[0] > s.frequency[class_id("l_eye")]
    assert len(parts) == SYNTH_COUNT


def test_figures(tiny_raw):
    parts = celebamask.part_files(tiny_raw)
    s = stats.class_statistics(parts, progress=False)
    table = stats.plot_class_table()
    texts = [t.get_text() for t in table.axes[0].texts]
    assert "l_brow" in texts and "eyeglasses" in texts and len(table.axes[0].patches) == 19
    bars = stats.plot_class_statistics(s)
    freq_ax, presence_ax = bars.axes
    assert freq_ax.get_yscale() == "log"
    heights = [p.get_height() for p in presence_ax.patches]
    assert heights[class_id("skin")] == pytest.approx(100.0) and heights[class_id("nose")] == pytest.approx(
        50.0
    )
    labels_ = [celebamask.read_label_map(parts[k]) for k in (0, 1)]
    images = [np.zeros((8, 8, 3), np.uint8)] * 2  # maps are 4x4: resized to the image
    faces = stats.plot_faces(images, labels_, titles=["a", "b"], ncols=4)
    assert len(faces.axes) == 4
    with pytest.raises(ValueError, match="label maps"):
        stats.plot_faces(images, labels_[:1])
    masks = {name: celebamask.read_mask(p) for name, p in parts[0].items()}
    part_fig = stats.plot_part_masks(masks, labels_[0])
    titles = [ax.get_title() for ax in part_fig.axes]
    assert titles[:4] == ["1 skin", "2 nose", "13 hair", "merged"]
    with pytest.raises(ValueError, match="at least one"):
        stats.plot_part_masks({}, labels_[0])


def test_blend_leaves_background_untouched():
    img = np.full((2, 2, 3), 100, np.uint8)
    lab = np.array([[0, 1], [0, 0]], np.uint8)
    out = stats._blend(img, lab, 0.5)
    assert out[0, 0].tolist() == [100, 100, 100]
    assert out[0, 1].tolist() == [152, 50, 50]  # halfway to skin (204, 0, 0)
