"""The course runner: profiles, parameters, failure reporting and the summary."""

from __future__ import annotations

import json
import re
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


def test_set_values_are_json_literals_else_strings() -> None:
    items = ["EPOCHS=2", "LR=0.5", "ENCODER=null", 'LOSSES=["ce", "dice"]', "LOSS=ce+dice", "C=#b0204a"]
    assert course.parse_overrides(items + ["FLAG=true", 'Q="3"', "EQ=a=b", "EMPTY="]) == {
        "EPOCHS": 2,
        "LR": 0.5,
        "ENCODER": None,
        "LOSSES": ["ce", "dice"],
        "LOSS": "ce+dice",
        "C": "#b0204a",
        "FLAG": True,
        "Q": "3",
        "EQ": "a=b",
        "EMPTY": "",
    }
    assert course.parse_overrides(None) == {}
    for bad in ("EPOCHS", "=3"):
        with pytest.raises(FacesegmError, match="NAME=VALUE"):
            course.parse_overrides([bad])


def test_overrides_replace_every_occurrence_and_reject_unknown_names() -> None:
    profile = {
        "data": {"kind": "synthetic"},
        "common": {"IMAGE_SIZE": 512, "SEED": 0},
        "notebooks": {"03_a": {"BASE_FILTERS": 32}, "04_b": {"BASE_FILTERS": 32, "EPOCHS": 60}},
    }
    new = course.apply_overrides(profile, {"BASE_FILTERS": 8, "EPOCHS": 1, "IMAGE_SIZE": 256})
    assert new["common"] == {"IMAGE_SIZE": 256, "SEED": 0}
    assert new["notebooks"] == {"03_a": {"BASE_FILTERS": 8}, "04_b": {"BASE_FILTERS": 8, "EPOCHS": 1}}
    assert profile["notebooks"]["04_b"]["EPOCHS"] == 60  # the loaded profile is left alone
    with pytest.raises(FacesegmError) as info:
        course.apply_overrides(profile, {"EPOCH": 1, "RAW_DIR": "x"})
    msg = str(info.value)
    assert "EPOCH, RAW_DIR" in msg and "BASE_FILTERS, EPOCHS, IMAGE_SIZE, SEED" in msg and "--data" in msg


def test_cli_set_unknown_name_exits_2_listing_valid_ones(tmp_path: Path, capsys) -> None:
    from facesegm_utils.cli import main

    rc = main(["course", "--profile", "full", "--out", str(tmp_path), "--set", "EPOCHZ=1"])
    err = capsys.readouterr().err
    assert rc == 2 and "EPOCHZ" in err and "EPOCHS" in err and "COMPARE_STEPS" in err
    assert not (tmp_path / "notebooks").exists()


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
    # --set reaches the notebook (VALUE * SEED = 5 * 2) and --data still picks the raw folder
    summary = course.run_course(
        "quick",
        str(raw),
        tmp_path / "set",
        notebook_dir=nbdir,
        only=["01"],
        overrides={"VALUE": 5, "SEED": 2},
    )
    assert summary["metrics"]["01_ok"] == {"value": 10} and summary["raw_dir"] == str(raw.resolve())
    rc = main(["course", "--profile", "nope", "--data", str(raw), "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "unknown profile" in capsys.readouterr().err


@pytest.mark.parametrize("profile_name", ["quick", "full"])
def test_explicit_data_without_a_dataset_is_never_written_to(tmp_path: Path, profile_name: str) -> None:
    empty = tmp_path / "typo"
    empty.mkdir()
    profile = course.load_profiles()[profile_name]
    with pytest.raises(FacesegmError, match=rf"no CelebAMask-HQ dataset at {empty}: expected CelebA-HQ-img/"):
        course.resolve_data(profile, str(empty), tmp_path / "out")
    assert not any(empty.iterdir())


def test_cli_explicit_data_exits_2_before_any_work(tmp_path: Path, capsys) -> None:
    from facesegm_utils.cli import main

    empty, out = tmp_path / "typo", tmp_path / "out"
    empty.mkdir()
    rc = main(["course", "--profile", "quick", "--data", str(empty), "--out", str(out), "--only", "99"])
    err = capsys.readouterr().err
    assert rc == 2 and f"no CelebAMask-HQ dataset at {empty}" in err and "OUT/synthetic" in err
    assert not any(empty.iterdir()) and not out.exists()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    rc = main(["course", "--data", str(a_file), "--out", str(out), "--only", "99"])
    assert rc == 2 and "is a file; expected a folder" in capsys.readouterr().err


def test_synthetic_faces_go_only_into_the_course_output(tmp_path: Path) -> None:
    profile = {"data": {"kind": "synthetic", "count": 2, "size": 32, "seed": 0}}
    raw = course.resolve_data(profile, None, tmp_path / "out")
    assert raw == (tmp_path / "out" / "synthetic").resolve()
    assert len(list((raw / "CelebA-HQ-img").iterdir())) == 2


def test_set_values_must_have_the_profiles_types() -> None:
    profile = {
        "common": {"IMAGE_SIZE": 128, "STRENGTH": 0.8, "FLAG": False, "COLOR": "#b0204a"},
        "notebooks": {"04": {"STEPS": None, "LOSSES": ["ce", "dice"]}},
    }
    good = {"IMAGE_SIZE": 64, "STRENGTH": 1, "FLAG": True, "COLOR": "red", "STEPS": 5, "LOSSES": ["ce"]}
    assert course.apply_overrides(profile, good)["common"]["STRENGTH"] == 1
    assert course.apply_overrides(profile, {"STEPS": None})["notebooks"]["04"]["STEPS"] is None
    bad = {
        "IMAGE_SIZE": ("abc", "an integer"),
        "STRENGTH": ("x", "a number"),
        "FLAG": (1, "true or false"),
        "COLOR": (3, "a string"),
        "STEPS": ([1], "null, a number or a string"),
        "LOSSES": ([1], "a list of str values"),
    }
    for name, (value, kind) in bad.items():
        with pytest.raises(FacesegmError, match=rf"--set {name}=.*expected {kind}, like the profile's"):
            course.apply_overrides(profile, {name: value})


@pytest.mark.parametrize(
    "setting, message",
    [
        ("EPOCHS=abc", 'EPOCHS="abc": expected an integer'),
        ("EPOCHS=0", "04_training: epochs must be a positive integer"),
        ("ENCODER=resnet", "04_training: encoder must be one of"),
        ('COMPARE_LOSSES=["ce", "dise"]', "'dise' is not one of"),
        ("N_SHOW=-1", "01_data_exploration: N_SHOW must be >= 0"),
        ("IMAGE_SIZE=100", "04_training: .*100"),
    ],
)
def test_profile_checks_run_before_notebook_01(tmp_path: Path, capsys, setting: str, message: str) -> None:
    from facesegm_utils.cli import main

    out = tmp_path / "out"
    rc = main(["course", "--profile", "quick", "--out", str(out), "--set", setting, "--only", "99"])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(message, err), err
    assert not out.exists()
