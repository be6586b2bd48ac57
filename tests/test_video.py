"""Tests for facesegm_utils.video: video I/O, smoothing, flicker and their scores on synthetic clips."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facesegm_utils.celebamask import merge_parts
from facesegm_utils.clips import make_jitter_clip, make_motion_clip
from facesegm_utils.labels import class_id
from facesegm_utils.recolor import part_weight
from facesegm_utils.synthetic import generate_face
from facesegm_utils.video import (
    MotionCompensator,
    TemporalSmoother,
    VideoWriter,
    compare_smoothing,
    ema_smooth,
    flicker,
    mask_error,
    read_video,
    recolor_sequence,
    write_video,
)

HAIR = class_id("hair")


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    image, masks = generate_face(0, 3, 96)
    return image, merge_parts(masks)


def moving_frames(n: int = 7, h: int = 40, w: int = 56) -> list[np.ndarray]:
    frames = []
    for t in range(n):
        f = np.full((h, w, 3), 30 * t % 255, np.uint8)
        f[10:20, 5 + 3 * t : 15 + 3 * t] = (250, 40, 40)
        frames.append(f)
    return frames


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_video_round_trip_keeps_count_size_fps(tmp_path: Path, suffix: str) -> None:
    frames = moving_frames()
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=12.5)
    back, fps = read_video(path)
    assert len(back) == len(frames) and back[0].shape == frames[0].shape
    assert fps == pytest.approx(12.5, rel=1e-3)
    # lossy codecs: close, and the moving red block is where it was
    assert np.abs(back[3].astype(int) - frames[3]).mean() < 8
    assert back[3][15, 18, 0] > 180 and back[3][15, 18, 1] < 120
    assert [p.name for p in tmp_path.iterdir()] == [f"clip{suffix}"]  # no temp file left


def test_writer_rejects_bad_frames_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bad.avi"
    with pytest.raises(ValueError, match="expected 56x40"):
        with VideoWriter(out, 10) as writer:
            writer.write(moving_frames()[0])
            writer.write(np.zeros((41, 56, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Exception, match=r"\.mp4 or \.avi"):
        VideoWriter(tmp_path / "x.mkv", 10)


def test_ema_and_flicker_hand_values() -> None:
    a, b = np.zeros((2, 2)), np.ones((2, 2))
    assert np.array_equal(ema_smooth(None, b, 0.6), b)
    np.testing.assert_allclose(ema_smooth(a, b, 0.6), 0.4)
    np.testing.assert_allclose(ema_smooth(a, b, 0.0), 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ema_smooth(a, b, 1.0)
    m0 = np.array([[0, 0], [0, 0]], bool)
    m1 = np.array([[1, 0], [0, 0]], bool)
    m2 = np.array([[1, 1], [1, 1]], bool)
    # changes: 1/4 then 3/4 -> mean 0.5
    assert flicker([m0, m1, m2]) == pytest.approx(0.5)
    assert flicker([m1, m1, m1]) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        flicker([m0])


def test_motion_flicker_and_mask_error_hand_values() -> None:
    # a 2-pixel-wide bar moving one pixel right per frame: all its change is motion
    frames = [np.zeros((3, 6), np.float32) for _ in range(3)]
    for t, f in enumerate(frames):
        f[:, 1 + t : 3 + t] = 1.0
    shift = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    motion = [np.eye(3)[:2], shift, shift]
    assert flicker(frames) == pytest.approx(2 / 6)  # 6 of 18 pixels change each frame
    assert flicker(frames, motion) == pytest.approx(0.0, abs=1e-6)
    # a bar that stands still while the true motion says it moved: every bar edge counts
    still = [frames[0]] * 3
    assert flicker(still) == 0.0
    assert flicker(still, motion) == pytest.approx(6 / 15)  # column 0 is new content, left out
    with pytest.raises(ValueError, match="one matrix per mask"):
        flicker(frames, motion[:2])
    assert mask_error(still, frames) == pytest.approx((0 + 6 / 18 + 12 / 18) / 3)
    assert mask_error(frames, frames) == 0.0
    with pytest.raises(ValueError, match="one true mask"):
        mask_error(frames, frames[:2])


def test_motion_compensator_follows_a_shift() -> None:
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (120, 140, 3), dtype=np.uint8), (0, 0), 2.0)
    prev, cur = scene[10:90, 10:110], scene[12:92, 7:107]  # the view moves 3 px left, 2 px down
    comp = MotionCompensator()
    assert comp.flow(prev) is None
    flow = comp.flow(cur)
    inner = flow[10:-10, 10:-10].reshape(-1, 2)
    np.testing.assert_allclose(np.median(inner, axis=0), [-3.0, 2.0], atol=0.25)
    grey = scene[..., 0].astype(np.float32) / 255
    warped, valid = MotionCompensator.warp(grey[10:90, 10:110], flow)
    # the left 3 columns and the bottom 2 rows were outside the previous view
    assert valid[10:-10, 10:-10].all() and not valid[20:60, :2].any() and not valid[-1, 20:60].any()
    err = np.abs(warped - grey[12:92, 7:107])[10:-10, 10:-10]
    assert err.mean() < 0.01
    small = MotionCompensator(max_side=50)  # flow at half size, scaled back up
    small.flow(prev)
    np.testing.assert_allclose(
        np.median(small.flow(cur)[10:-10, 10:-10].reshape(-1, 2), axis=0), [-3, 2], atol=0.5
    )


def test_motion_compensated_smoothing_meets_the_target_on_real_motion() -> None:
    """4 % of the frame per frame: error no worse than per frame, flicker at most half of it."""
    image, masks = generate_face(0, 3, 128)
    clip = make_motion_clip(image, merge_parts(masks), n_frames=16, seed=2)
    runs = compare_smoothing(clip, "hair", "#d4a84b")
    assert list(runs) == ["per frame", "EMA", "motion-compensated EMA", "true mask"]
    err = {k: r.error for k, r in runs.items()}
    jit = {k: r.residual_flicker for k, r in runs.items()}
    assert err["motion-compensated EMA"] <= err["per frame"], err
    assert jit["motion-compensated EMA"] <= 0.5 * jit["per frame"], jit
    assert err["EMA"] > 3 * err["per frame"], err  # averaging in place lags behind the face
    assert jit["true mask"] < 1e-3 < runs["true mask"].flicker  # the truth moves, and only that
    assert len(runs["per frame"].frames) == 16 and runs["per frame"].ms_per_frame > 0


def test_motion_compensated_smoothing_on_the_jitter_clip(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, labels = face
    clip = make_jitter_clip(image, labels, n_frames=16, seed=1)
    runs = compare_smoothing(clip, "hair", "#d4a84b")
    err = {k: r.error for k, r in runs.items()}
    jit = {k: r.residual_flicker for k, r in runs.items()}
    assert jit["motion-compensated EMA"] < 0.6 * jit["per frame"], jit
    assert err["motion-compensated EMA"] < err["EMA"], err


def test_temporal_smoother_starts_new_content_from_the_current_map() -> None:
    smoother = TemporalSmoother(0.6, motion=True)
    rng = np.random.default_rng(1)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (80, 120, 3), dtype=np.uint8), (0, 0), 2.0)
    ones, zeros = np.ones((80, 80), np.float32), np.zeros((80, 80), np.float32)
    np.testing.assert_array_equal(smoother.update(scene[:, :80], ones), ones)
    out = smoother.update(scene[:, 4:84], zeros)  # the view moves 4 px right
    assert np.allclose(out[5:-5, 10:70], 0.6)  # seen before: the average
    assert np.allclose(out[5:-5, -2:], 0.0)  # just came into view: the current map
    assert TemporalSmoother(0.0, motion=True).update(scene[:, :80], ones) is not None
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        TemporalSmoother(1.0)


def test_smoothing_reduces_flicker_on_jittered_clip(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, labels = face
    clip = make_jitter_clip(image, labels, n_frames=16, seed=1)
    assert len(clip.frames) == 16 and clip.frames[0].shape == image.shape
    assert clip.labels[0].shape == labels.shape
    assert any((n != c).any() for n, c in zip(clip.labels, clip.clean, strict=True))  # noise was added
    raw = [w for _, w in recolor_sequence(clip.frames, clip.labels, "hair", "#d4a84b", smooth=0.0)]
    smoothed = [
        w for _, w in recolor_sequence(clip.frames, clip.labels, "hair", "#d4a84b", smooth=0.6, motion=False)
    ]
    assert flicker(smoothed) < 0.6 * flicker(raw), (flicker(smoothed), flicker(raw))


def test_video_weights_of_probabilities_are_refined_like_still_images(
    face: tuple[np.ndarray, np.ndarray],
) -> None:
    """Model probabilities get the edge-aware refinement in video too (no halo), label maps do not."""
    image, labels = face
    rng = np.random.default_rng(0)
    proba = np.eye(19, dtype=np.float32)[labels]
    proba = cv2.GaussianBlur(proba, (0, 0), 2.0) + rng.uniform(0, 0.05, proba.shape).astype(np.float32)
    proba /= proba.sum(axis=2, keepdims=True)
    ((_, weight),) = recolor_sequence([image], [proba], "hair", "#d4a84b", smooth=0.0, motion=False)
    np.testing.assert_allclose(weight, part_weight(proba, "hair", image=image), atol=1e-6)
    assert not np.allclose(weight, part_weight(proba, "hair", image=image, refine=False), atol=1e-3)
    ((_, from_labels),) = recolor_sequence([image], [labels], "hair", "#d4a84b", smooth=0.0, motion=False)
    np.testing.assert_allclose(from_labels, part_weight(labels, "hair"), atol=1e-6)
