"""Tests of the synthetic clips whose true moving mask is known."""

from __future__ import annotations

import numpy as np
import pytest
from test_video import face  # noqa: F401  (the synthetic face fixture)

from facesegm_utils.clips import make_motion_clip
from facesegm_utils.recolor import part_weight
from facesegm_utils.video import flicker


def test_motion_clip_moves_four_percent_a_frame_in_whole_pixels(face: tuple[np.ndarray, np.ndarray]) -> None:  # noqa: F811
    image, labels = face
    clip = make_motion_clip(image, labels, n_frames=8, seed=0)
    assert len(clip.frames) == len(clip.clean) == len(clip.motion) == 8
    np.testing.assert_array_equal(clip.frames[0], image)
    np.testing.assert_array_equal(clip.clean[0], labels)
    steps = [np.hypot(*m[:, 2]) / 96 for m in clip.motion[1:]]
    assert all(0.03 <= s <= 0.05 for s in steps), steps
    for m in clip.motion[1:]:
        np.testing.assert_array_equal(m[:, :2], np.eye(2))
        assert np.array_equal(m[:, 2], np.round(m[:, 2]))
    truth = [part_weight(c, "hair") for c in clip.clean]
    assert flicker(truth) > 0.05  # the mask really moves
    assert flicker(truth, clip.motion) < 1e-3  # and the true motion explains all of it
    with pytest.raises(ValueError, match="speed"):
        make_motion_clip(image, labels, speed=0.2)
