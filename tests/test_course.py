"""The course runner: profiles, parameters, failure reporting and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from facesegm_utils import course
from facesegm_utils.fileio import FacesegmError


def _notebook(path: Path, params: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def tiny_course(tmp_path: Path) -> tuple[Path, Path]:
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    profiles = {
        "_comment": "test",
        "quick": {
            "data": {"kind": "celebamask"},
            "cell_timeout_s": 60,
            "common": {"PROFILE": "quick", "SEED": 3},
            "notebooks": {"01_ok": {"VALUE": 7}},
        },
    }
    (nbdir / "profiles.json").write_text(json.dumps(profiles))
    params = 'PROFILE = "x"\nSEED = 0\nRAW_DIR = "."\nOUT_DIR = "."\n'
    record = (
        "from facesegm_utils import course\ncourse.record_metrics(OUT_DIR, '{name}', {{'value': {expr}}})\n"
    )
    _notebook(nbdir / "01_ok.ipynb", params + "VALUE = 1\n", record.format(name="01_ok", expr="VALUE * SEED"))
    _notebook(nbdir / "02_boom.ipynb", params, "x = 1\ny = x / 0\n")
    _notebook(nbdir / "03_never.ipynb", params, record.format(name="03_never", expr="1"))
    raw = tmp_path / "raw"
    (raw / "CelebA-HQ-img").mkdir(parents=True)
    return nbdir, raw


def test_parameters_merge_common_notebook_and_runner_values(tmp_path: Path) -> None:
    profile = {
        "common": {"PROFILE": "quick", "SEED": 1},
        "notebooks": {"04_training": {"EPOCHS": 3, "SEED": 9}},
    }
    params = course.notebook_parameters(profile, "04_training", tmp_path / "raw", tmp_path / "out")
    assert params == {
        "PROFILE": "quick",
        "SEED": 9,
        "EPOCHS": 3,
        "RAW_DIR": str(tmp_path / "raw"),
        "OUT_DIR": str(tmp_path / "out"),
    }
    assert course.notebook_parameters(profile, "01_other", tmp_path, tmp_path)["SEED"] == 1


def test_shipped_profiles_have_quick_and_full_for_every_notebook() -> None:
    profiles = course.load_profiles()
    assert {"quick", "full"} <= set(profiles)
    stems = [nb.stem for nb in course.list_notebooks()]
    assert stems == sorted(stems) and len(stems) >= 6
    for name in ("quick", "full"):
        assert set(profiles[name]["notebooks"]) == set(stems), name
        assert profiles[name]["common"]["PROFILE"] == name


def test_missing_profiles_file_and_unknown_profile(tmp_path: Path, tiny_course: tuple[Path, Path]) -> None:
    with pytest.raises(FileNotFoundError, match="profiles file not found"):
        course.load_profiles(tmp_path / "nope.json")
    nbdir, raw = tiny_course
    with pytest.raises(FacesegmError, match="unknown profile 'huge'"):
        course.run_course("huge", str(raw), tmp_path / "out", notebook_dir=nbdir)


def test_missing_real_dataset_is_a_clear_error(tmp_path: Path) -> None:
    profile = {"data": {"kind": "celebamask"}}
    with pytest.raises(FacesegmError, match=r"no CelebAMask-HQ dataset at .*nowhere.*CelebA-HQ-img"):
        course.resolve_data(profile, str(tmp_path / "nowhere"), tmp_path)


def test_record_metrics_converts_numpy_scalars(tmp_path: Path) -> None:
    import numpy as np

    path = course.record_metrics(
        tmp_path, "05_evaluation", {"mean_iou": np.float32(0.5), "n": 3, "name": "x"}
    )
    assert json.loads(path.read_text()) == {"mean_iou": 0.5, "n": 3, "name": "x"}


@pytest.mark.slow
def test_failing_notebook_is_named_and_stops_the_course(
    tmp_path: Path, tiny_course: tuple[Path, Path]
) -> None:
    nbdir, raw = tiny_course
    out = tmp_path / "out"
    with pytest.raises(course.NotebookFailed) as info:
        course.run_course("quick", str(raw), out, notebook_dir=nbdir)
    msg = str(info.value)
    assert "02_boom.ipynb" in msg and "ZeroDivisionError" in msg and "cell" in msg
    # 01 ran with the merged parameters; 03 never ran
    assert json.loads((out / "metrics" / "01_ok.json").read_text()) == {"value": 21}
    assert not (out / "metrics" / "03_never.json").exists()
    assert (out / "notebooks" / "02_boom.ipynb").exists()


@pytest.mark.slow
def test_only_runs_selected_notebooks_and_cli_errors_exit_2(
    tmp_path: Path, tiny_course: tuple[Path, Path], capsys
) -> None:
    from facesegm_utils.cli import main

    nbdir, raw = tiny_course
    summary = course.run_course("quick", str(raw), tmp_path / "ok", notebook_dir=nbdir, only=["01"])
    assert list(summary["seconds"]) == ["01_ok"]
    assert summary["metrics"]["01_ok"] == {"value": 21}
    assert (tmp_path / "ok" / "course_summary.json").exists()
    rc = main(["course", "--profile", "nope", "--data", str(raw), "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "unknown profile" in capsys.readouterr().err
