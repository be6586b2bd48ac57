"""Tests of ``facesegm recolor`` on images, folders and videos (label maps or a tiny model)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_video import face  # noqa: F401  (the synthetic face fixture)

from facesegm_utils import cli
from facesegm_utils.clips import make_jitter_clip
from facesegm_utils.fileio import read_rgb, write_image_atomic
from facesegm_utils.labels import class_id
from facesegm_utils.video import read_video, write_video

HAIR = class_id("hair")


def test_recolor_cli_video_with_labels(tmp_path: Path, face: tuple[np.ndarray, np.ndarray]) -> None:  # noqa: F811
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
    still = tmp_path / "still.avi"
    rc = cli.main(
        ["recolor", "--input", str(src), "--labels", str(tmp_path / "labels.png"), "--part", "hair",
         "--color", "#d4a84b", "--no-smooth-motion", "--out", str(still)]
    )  # fmt: skip
    assert rc == 0 and len(read_video(still)[0]) == 6


def test_recolor_cli_image_and_folder(tmp_path: Path, face: tuple[np.ndarray, np.ndarray]) -> None:  # noqa: F811
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
    tmp_path: Path,
    face: tuple[np.ndarray, np.ndarray],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
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
def test_recolor_cli_video_with_model(tmp_path: Path, face: tuple[np.ndarray, np.ndarray]) -> None:  # noqa: F811
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
