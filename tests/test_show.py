"""`facesegm show` end to end on a tiny U-Net saved in tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from facesegm_utils import cli, show
from facesegm_utils.fileio import FacesegmError, write_image_atomic

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facesegm_utils.model import build_unet

    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_unet(32, base_filters=4, depth=2).save(path)
    return path


def _prepared(root: Path, n: int = 3, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        write_image_atomic(
            root / "test" / "images" / f"{k}.jpg", rng.integers(0, 256, (size, size, 3), np.uint8)
        )
        write_image_atomic(root / "test" / "labels" / f"{k}.png", rng.integers(0, 19, (size, size), np.uint8))
        rows.append(
            {"id": k, "split": "test", "image": f"test/images/{k}.jpg", "label": f"test/labels/{k}.png"}
        )
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "split", "image", "label"])
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.mark.slow
def test_show_views_on_any_image(tiny_model: Path, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"  # not square and not the model size: any image works
    write_image_atomic(image, np.random.default_rng(1).integers(0, 256, (40, 24, 3), np.uint8))
    for view in ("mask", "overlay", "hair_color", "lip_color"):
        out = tmp_path / f"{view}.png"
        assert (
            cli.main(
                ["show", "-v", view, "--model", str(tiny_model), "--image", str(image), "--out", str(out)]
            )
            == 0
        )
        assert out.read_bytes()[:8] == PNG
    out = tmp_path / "lips_custom.png"
    show.show("lip_color", out, model=tiny_model, image=image, color="#ff0000", strength=0.5)
    assert out.read_bytes()[:8] == PNG


@pytest.mark.slow
def test_show_confusion_matrix_from_model_and_report(tiny_model: Path, tmp_path: Path) -> None:
    prep = _prepared(tmp_path / "prep")
    out = tmp_path / "cm.png"
    assert (
        cli.main(
            [
                "show",
                "-v",
                "confusion_matrix",
                "--model",
                str(tiny_model),
                "--data",
                str(prep),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:8] == PNG
    report = tmp_path / "rep.json"
    report.write_text(
        json.dumps({"split": "test", "mean_iou": 0.5, "confusion_matrix": np.eye(19, dtype=int).tolist()})
    )
    fig = show.render("confusion_matrix", report=report)
    assert "mIoU 50.0%" in fig.axes[0].get_title()


def test_show_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    out = str(tmp_path / "o.png")
    assert (
        cli.main(
            ["show", "-v", "mask", "--model", "m.keras", "--image", str(tmp_path / "nope.jpg"), "--out", out]
        )
        == 2
    )
    assert "image not found" in capsys.readouterr().err
    assert cli.main(["show", "-v", "mask", "--model", "m.keras", "--image", str(bad), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "could not decode image" in err and "broken.jpg" in err
    with pytest.raises(FacesegmError, match="needs --image"):
        show.render("overlay", model="m.keras")
    with pytest.raises(FacesegmError, match="needs --data"):
        show.render("confusion_matrix", model="m.keras")
    image = tmp_path / "ok.png"
    write_image_atomic(image, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown colour 'nocolour'"):  # before any model is loaded
        show.render("hair_color", model=tmp_path / "missing.keras", image=image, color="nocolour")
    with pytest.raises(ValueError, match="must be a .png"):
        show.show("mask", tmp_path / "x.jpg")
    report = tmp_path / "r.json"
    report.write_text("{}")
    with pytest.raises(FacesegmError, match="not an evaluation report"):
        show.render("confusion_matrix", report=report)
    assert not (tmp_path / "o.png").exists()
