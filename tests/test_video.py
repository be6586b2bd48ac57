"""Tests for facesegm_utils.video: video I/O, smoothing, flicker, jitter clips, ``facesegm recolor``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facesegm_utils import cli
from facesegm_utils.celebamask import merge_parts
from facesegm_utils.fileio import read_rgb, write_image_atomic
from facesegm_utils.labels import class_id
from facesegm_utils.synthetic import generate_face
from facesegm_utils.video import (
    VideoWriter,
    ema_smooth,
    flicker,
    make_jitter_clip,
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


def test_smoothing_reduces_flicker_on_jittered_clip(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, labels = face
    clip = make_jitter_clip(image, labels, n_frames=16, seed=1)
    assert len(clip.frames) == 16 and clip.frames[0].shape == image.shape
    assert clip.labels[0].shape == labels.shape
    assert any((n != c).any() for n, c in zip(clip.labels, clip.clean, strict=True))  # noise was added
    raw = [w for _, w in recolor_sequence(clip.frames, clip.labels, "hair", "#d4a84b", smooth=0.0)]
    smoothed = [w for _, w in recolor_sequence(clip.frames, clip.labels, "hair", "#d4a84b", smooth=0.6)]
    assert flicker(smoothed) < 0.6 * flicker(raw), (flicker(smoothed), flicker(raw))


def test_recolor_cli_video_with_labels(tmp_path: Path, face: tuple[np.ndarray, np.ndarray]) -> None:
    image, labels = face
    clip = make_jitter_clip(image, labels, n_frames=6, seed=0)
    src = write_video(tmp_path / "in.avi", clip.frames, fps=15)
    write_image_atomic(tmp_path / "labels.png", labels)
    out = tmp_path / "out.mp4"
    rc = cli.main(
        ["recolor", "--input", str(src), "--labels", str(tmp_path / "labels.png"), "--part", "hair",
         "--color", "#d4a84b", "--strength", "1", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    back, fps = read_video(out)
    assert len(back) == 6 and back[0].shape == image.shape and fps == pytest.approx(15)
    hair = labels == HAIR

    def yellowness(img: np.ndarray) -> float:  # mean CIELAB b inside the hair
        return float(cv2.cvtColor(img, cv2.COLOR_RGB2Lab)[..., 2][hair].mean()) - 128

    assert yellowness(back[0]) > yellowness(clip.frames[0]) + 20  # gold has b = +53


def test_recolor_cli_image_and_folder(tmp_path: Path, face: tuple[np.ndarray, np.ndarray]) -> None:
    image, labels = face
    write_image_atomic(tmp_path / "in" / "a.png", image)
    write_image_atomic(tmp_path / "in" / "b.png", image[:, ::-1])
    write_image_atomic(tmp_path / "lab" / "a.png", labels)
    write_image_atomic(tmp_path / "lab" / "b.png", np.ascontiguousarray(labels[:, ::-1]))
    base = ["recolor", "--part", "lips", "--color", "crimson"]
    assert (
        cli.main(
            [
                *base,
                "--input",
                str(tmp_path / "in"),
                "--labels",
                str(tmp_path / "lab"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    a, b = read_rgb(tmp_path / "o" / "a.png"), read_rgb(tmp_path / "o" / "b.png")
    assert np.array_equal(a[:, ::-1], b)
    keep = labels == class_id("background")
    assert np.array_equal(a[keep], image[keep])  # png: outside the lips, exactly the input
    assert not np.array_equal(a, image)
    one = tmp_path / "one.png"
    assert (
        cli.main(
            [
                *base,
                "--input",
                str(tmp_path / "in" / "a.png"),
                "--labels",
                str(tmp_path / "lab" / "a.png"),
                "--out",
                str(one),
            ]
        )
        == 0
    )
    assert np.array_equal(read_rgb(one), a)


def test_recolor_cli_bad_input(
    tmp_path: Path, face: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    image, labels = face
    img, lbl = tmp_path / "a.png", tmp_path / "l.png"
    write_image_atomic(img, image)
    write_image_atomic(lbl, labels)
    base = ["recolor", "--input", str(img), "--out", str(tmp_path / "o.png"), "--part", "hair"]
    cases = [
        ([*base, "--color", "red"], "exactly one of --model"),
        ([*base, "--color", "#12", "--labels", str(lbl)], "unknown colour"),
        ([*base, "--color", "red", "--labels", str(tmp_path / "none.png")], "label map not found"),
        ([*base, "--color", "red", "--labels", str(lbl), "--strength", "2"], "--strength"),
        (
            [
                "recolor",
                "--input",
                str(img),
                "--out",
                str(tmp_path / "o.png"),
                "--part",
                "lipz",
                "--color",
                "red",
                "--labels",
                str(lbl),
            ],
            "unknown part",
        ),
    ]
    for argv, msg in cases:
        assert cli.main(argv) == 2, argv
        assert msg in capsys.readouterr().err
    write_image_atomic(tmp_path / "small.png", labels[:50])
    assert cli.main([*base, "--color", "red", "--labels", str(tmp_path / "small.png")]) == 2
    assert "expected the input's size 96x96" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --model and --labels are mutually exclusive
        cli.main([*base, "--color", "red", "--labels", str(lbl), "--model", "m.keras"])


@pytest.mark.slow
def test_recolor_cli_video_with_model(tmp_path: Path, face: tuple[np.ndarray, np.ndarray]) -> None:
    import keras

    inp = keras.Input((32, 32, 3))
    model = keras.Model(
        inp, keras.layers.Conv2D(19, 1, dtype="float32")(keras.layers.Rescaling(1 / 255)(inp))
    )
    model.save(tmp_path / "m.keras")
    image, labels = face
    clip = make_jitter_clip(image, labels, n_frames=5, seed=0)
    src = write_video(tmp_path / "in.mp4", clip.frames, fps=8)
    argv = ["recolor", "--input", str(src), "--model", str(tmp_path / "m.keras"), "--part", "skin"]
    rc = cli.main([*argv, "--color", "teal", "--batch-size", "2", "--out", str(tmp_path / "out.avi")])
    assert rc == 0
    back, fps = read_video(tmp_path / "out.avi")
    assert len(back) == 5 and back[0].shape == image.shape and fps == pytest.approx(8)
