"""The full profile end to end, at the real archive's sizes, on a handful of synthetic faces (issue 9).

``facesegm course --profile full`` runs every notebook with the full profile's parameters (512²
training, its encoder, evaluation at full size) on faces written like CelebAMask-HQ: 1024² JPEGs
and 512² part masks. Only what must shrink to fit a few CPU minutes is overridden with ``--set``:
the epochs, steps and batch of training, the loss comparison cut to one short run, the video's
frames, and the encoder's pretrained weights only when they would need a download (an encoder
whose weights install with the package keeps them).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import nbformat
import pytest
from test_notebooks import figures_not_shown

from facesegm_utils import cli, course, encoders, synthetic

FACES = 24


def fitting_overrides(profile: dict) -> dict[str, object]:
    """The --set values that shrink the full profile to a few CPU minutes, and nothing else."""
    nb04 = profile["notebooks"]["04_training"]
    # every training run of notebook 04 (main, loss comparison, side by side): 1 epoch of 1 step
    overrides: dict[str, object] = {k: 1 for k in nb04 if k.split("_")[-1] in ("EPOCHS", "STEPS")}
    overrides["COMPARE_LOSSES"] = nb04["COMPARE_LOSSES"][-1:]  # one short run instead of one per loss
    overrides["BATCH_SIZE"] = 2  # one step at 512² trains on 2 faces, not 8
    overrides["N_FRAMES"] = 12  # notebook 06: the video comparison on 12 frames at 1024², not 48
    # notebook 07: the parity check and the timing on a couple of faces and one round
    nb07 = profile["notebooks"].get("07_export_and_deploy", {})
    overrides.update({k: min(v, 2) if k == "PARITY_FACES" else 1 for k, v in nb07.items()})
    encoder = encoders.ENCODERS.get(nb04.get("ENCODER"))  # offline: its weights ship with a package
    if nb04.get("ENCODER_WEIGHTS") is not None and not (encoder and encoder.offline):
        overrides["ENCODER_WEIGHTS"] = None  # a Keras Applications download: none in CI
    return overrides


@pytest.mark.slow
@pytest.mark.notebook
def test_full_profile_runs_end_to_end_at_the_archive_sizes(tmp_path: Path) -> None:
    raw = synthetic.write_dataset(tmp_path / "raw", count=FACES, size=1024, mask_size=512, seed=0, workers=2)
    assert cv2.imread(str(raw / "CelebA-HQ-img" / "0.jpg")).shape == (1024, 1024, 3)
    assert cv2.imread(str(next(raw.glob("CelebAMask-HQ-mask-anno/0/*.png"))), 0).shape == (512, 512)
    profile = course.load_profiles()["full"]
    overrides = fitting_overrides(profile)
    out = tmp_path / "out"
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    assert cli.main(["course", "--profile", "full", "--data", str(raw), "--out", str(out), *sets]) == 0

    summary = json.loads((out / "course_summary.json").read_text())
    assert summary["profile"] == "full" and summary["overrides"] == overrides
    assert list(summary["seconds"]) == [nb.stem for nb in course.list_notebooks()]
    for nb in course.list_notebooks():
        executed = nbformat.read(out / "notebooks" / nb.name, as_version=4)
        outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], nb.name
        assert not figures_not_shown(executed), nb.name
    # the full profile's own settings ran: 512² prepared data, its encoder and width, full-size evaluation
    size = profile["common"]["IMAGE_SIZE"]
    nb04 = profile["notebooks"]["04_training"]
    assert json.loads((out / "prepared" / "dataset.json").read_text())["size"] == size
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["image_size"] == size and config["epochs"] == 1
    assert config["encoder"] == nb04["ENCODER"] and config["base_filters"] == nb04["BASE_FILTERS"]
    assert config["encoder_weights"] == overrides.get("ENCODER_WEIGHTS", nb04["ENCODER_WEIGHTS"])
    assert (out / "run" / "model.keras").is_file()
    metrics = summary["metrics"]
    assert 0.0 <= metrics["04_training"]["test_miou"] <= 1.0 and "05_evaluation" in metrics
