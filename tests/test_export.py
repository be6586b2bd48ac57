"""Export: every format keeps the Keras model's predictions; export.json; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facesegm_utils import cli, export, labels

SIZE = 64  # the tiny_run fixture's input size (conftest)


@pytest.fixture(scope="module")
def exported(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    for fmt in export.FORMATS:
        assert (
            cli.main(["export", "--model", str(tiny_run), "--format", fmt, "--out", str(out), "--faces", "6"])
            == 0
        )
    return out


@pytest.mark.slow
def test_every_format_agrees_with_keras(exported: Path, tiny_run: Path) -> None:
    from facesegm_utils.prediction import load, predict_labels

    manifest = json.loads((exported / "export.json").read_text())
    assert set(manifest["parity"]) == {"onnx", "litert_float32", "litert_float16", "savedmodel"}
    keras_model = load(tiny_run)
    images = export.parity_faces(SIZE, 6)
    reference = predict_labels(keras_model, images)
    for name, info in manifest["files"].items():
        # measured again here, independently of the figures export.json holds
        got = predict_labels(export.load_exported(exported / name), images)
        agreement = np.mean([np.mean(a == b) for a, b in zip(reference, got, strict=True)])
        bar = export.PARITY_MIN.get(info["variant"], export.PARITY_DEFAULT_MIN)
        assert agreement >= bar, (name, agreement)
        recorded = manifest["parity"][info["variant"]]
        assert recorded["argmax_agreement"] >= bar and recorded["images"] == 6
        assert 0 <= recorded["max_prob_diff"] < (0.2 if "float16" in name else 1e-3), (name, recorded)


@pytest.mark.slow
def test_export_json_describes_the_files(exported: Path, tiny_run: Path) -> None:
    manifest = json.loads((exported / "export.json").read_text())
    assert manifest["input"] == {
        "name": "image",
        "shape": [1, SIZE, SIZE, 3],
        "layout": "NHWC",
        "dtype": "float32",
        "color": "RGB",
        "range": [0, 255],
    }
    assert manifest["output"]["shape"] == [1, SIZE, SIZE, labels.NUM_CLASSES]
    assert manifest["classes"] == list(labels.CLASSES)
    assert manifest["palette"] == labels.PALETTE.tolist()
    assert manifest["source"]["sha256"] == export.file_digest(tiny_run / "model.keras")["sha256"]
    names = {"model.onnx", "model_float32.tflite", "model_float16.tflite", "savedmodel"}
    assert set(manifest["files"]) == names
    for name in names:
        assert manifest["files"][name] == {
            "variant": manifest["files"][name]["variant"],
            **export.file_digest(exported / name),
        }
    # float16 halves the weights (this tiny model's file is mostly graph, so less than half is saved)
    f32, f16 = (manifest["files"][f"model_{t}.tflite"]["bytes"] for t in ("float32", "float16"))
    assert f16 < 0.9 * f32
    assert not list(exported.glob(".*tmp*")), "no temporary file left behind"


def test_exit_2_on_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "run"
    model.mkdir()
    (model / "model.keras").write_bytes(b"")
    cases = {
        "unknown export format 'coreml'": [
            "--model",
            str(model),
            "--format",
            "coreml",
            "--out",
            str(tmp_path / "o"),
        ],
        "model not found": [
            "--model",
            str(tmp_path / "nope"),
            "--format",
            "onnx",
            "--out",
            str(tmp_path / "o"),
        ],
        "is a file": ["--model", str(model), "--format", "onnx", "--out", str(model / "model.keras")],
        "--int8 applies to --format litert only": [
            "--model",
            str(model),
            "--format",
            "onnx",
            "--int8",
            "--out",
            "o",
        ],
    }
    for expected, argv in cases.items():
        assert cli.main(["export", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err
