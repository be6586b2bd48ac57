"""Tests for facesegm_utils.labels: class order, palette, left/right flip, groups, colorize."""

from __future__ import annotations

import numpy as np
import pytest

from facesegm_utils import labels


def test_class_order_and_count():
    assert labels.NUM_CLASSES == 19
    assert labels.CLASSES[0] == "background"
    assert labels.PART_ORDER == labels.CLASSES[1:]
    assert len(set(labels.CLASSES)) == 19
    assert labels.class_id("skin") == 1
    assert labels.class_id("l_eye") == 4
    assert labels.class_id("hair") == 13
    assert labels.class_id("cloth") == 18
    assert set(labels.DISPLAY_NAMES) == set(labels.CLASSES)


def test_palette_shape_dtype_and_known_entries():
    pal = labels.PALETTE
    assert pal.shape == (19, 3)
    assert pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [204, 0, 0]  # skin
    assert pal[13].tolist() == [0, 0, 204]  # hair
    assert pal[18].tolist() == [0, 204, 0]  # cloth
    assert len({tuple(c) for c in pal.tolist()}) == 19  # every class has its own colour
    with pytest.raises(ValueError):
        pal[0, 0] = 1  # read-only


def test_flip_permutation_is_an_involution_swapping_three_pairs():
    perm = labels.FLIP_PERMUTATION
    assert sorted(perm.tolist()) == list(range(19))
    np.testing.assert_array_equal(perm[perm], np.arange(19))
    moved = {labels.CLASSES[i]: labels.CLASSES[int(j)] for i, j in enumerate(perm) if i != j}
    assert moved == {
        "l_eye": "r_eye",
        "r_eye": "l_eye",
        "l_brow": "r_brow",
        "r_brow": "l_brow",
        "l_ear": "r_ear",
        "r_ear": "l_ear",
    }


def test_group_ids():
    assert labels.group_ids("lips") == (11, 12)
    assert labels.group_ids("eyes") == (4, 5)
    assert labels.group_ids("hair") == (13,)
    assert labels.group_ids(["lips", "hair", "u_lip"]) == (11, 12, 13)  # order kept, no duplicates
    assert labels.group_ids("accessories") == (3, 14, 15, 16)


@pytest.mark.parametrize("bad", ["beard", "Lips", ""])
def test_unknown_names_raise_keyerror(bad):
    with pytest.raises(KeyError, match="unknown"):
        labels.group_ids(bad)
    with pytest.raises(KeyError, match="unknown class"):
        labels.class_id(bad)


def test_colorize_maps_ids_to_palette():
    lab = np.array([[0, 1], [13, 18]], dtype=np.uint8)
    rgb = labels.colorize(lab)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[0, 1].tolist() == [204, 0, 0]
    assert rgb[1, 0].tolist() == [0, 0, 204]
    assert rgb[1, 1].tolist() == [0, 204, 0]
    custom = labels.colorize(np.array([1, 0]), palette=[[1, 2, 3], [4, 5, 6]])
    assert custom.tolist() == [[4, 5, 6], [1, 2, 3]]


@pytest.mark.parametrize("bad", [np.array([[19]]), np.array([[-1, 0]]), np.array([[0.0, 1.0]])])
def test_colorize_rejects_bad_ids(bad):
    with pytest.raises(ValueError):
        labels.colorize(bad)


def test_flip_labels_mirrors_and_swaps_sides():
    lab = np.zeros((3, 4), np.uint8)
    lab[1, 3] = labels.class_id("l_eye")  # image right
    lab[0, 0] = labels.class_id("r_brow")
    lab[2, 1] = labels.class_id("nose")
    flipped = labels.flip_labels(lab)
    assert flipped.dtype == np.uint8
    assert flipped[1, 0] == labels.class_id("r_eye")  # the mirrored side, renamed
    assert flipped[0, 3] == labels.class_id("l_brow")
    assert flipped[2, 2] == labels.class_id("nose")
    assert np.count_nonzero(flipped) == 3
    np.testing.assert_array_equal(labels.flip_labels(flipped), lab)


def test_flip_labels_twice_is_identity_on_random_maps():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 19, size=(2, 5, 7)).astype(np.int32)
    np.testing.assert_array_equal(labels.flip_labels(labels.flip_labels(lab)), lab)
