"""Faces through a video: a tracker that detects on a schedule against detection on every frame."""

from __future__ import annotations

import numpy as np
import pytest

from facesegm_utils import align, synthetic
from facesegm_utils.celebamask import merge_parts
from facesegm_utils.clips import make_motion_clip
from facesegm_utils.track import FaceTracker, crop_jitter


@pytest.fixture(scope="module")
def moving_face() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """12 frames of 480x270: a face at 55% of the height, the camera circling; true landmarks."""
    image, masks = synthetic.generate_face(7, 1, 192)
    lm = synthetic.face_landmarks(7, 1, 192)
    frame, truth, marks = align.place_face(image, merge_parts(masks), lm, (270, 480), 0.55, 8.0, (230, 135))
    clip = make_motion_clip(frame, truth, n_frames=12, speed=0.012, radius=0.04, edge_noise=0.0)
    true = []
    for step in clip.motion:
        marks = marks @ step[:, :2].T + step[:, 2]
        true.append(marks)
    return clip.frames, true


def test_tracked_crop_jitters_less_than_detection_on_every_frame(moving_face: tuple) -> None:
    frames, true = moving_face
    tracked, every = FaceTracker(every=6), FaceTracker(every=1, correct=1.0)
    got = {name: [t.update(f)[0] for f in frames] for name, t in (("tracked", tracked), ("every", every))}
    assert (tracked.detections, every.detections) == (2, 12)
    score = {name: crop_jitter(marks, true) for name, marks in got.items()}
    assert score["tracked"]["jitter"] < 0.5 * score["every"]["jitter"], score
    side = np.hypot(*(align.crop_quad(true[0])[1] - align.crop_quad(true[0])[0]))
    assert score["tracked"]["error"] < 0.05 * side, score


def test_tracker_checks_its_options() -> None:
    with pytest.raises(ValueError, match="every"):
        FaceTracker(every=0)
    with pytest.raises(ValueError, match="correct"):
        FaceTracker(correct=0.0)
    assert FaceTracker().update(np.full((60, 80, 3), 90, np.uint8)) == []
