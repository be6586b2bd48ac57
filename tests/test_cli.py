"""The `facesegm` entry point: bad input exits 2 with one clear line, internal failures exit 1, short."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from facesegm_utils import cli, training


def test_bad_input_is_exit_2_with_one_line(capsys) -> None:
    assert cli.main(["train", "--data", "nowhere", "--out", "run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("facesegm train: error: prepared dataset folder not found") and err.count("\n") == 1


def test_a_value_error_from_a_library_is_internal_exit_1_and_short(monkeypatch, capsys) -> None:
    def fails(args: argparse.Namespace) -> int:
        np.zeros(3).reshape(np.ones(10_000, dtype=int).tolist())  # numpy's ValueError, a long message
        return 0

    monkeypatch.setattr(training, "run_cli", fails)
    assert cli.main(["train", "--data", "d", "--out", "o"]) == 1
    err = capsys.readouterr().err
    assert "internal error (ValueError)" in err and "not a problem with the input" in err
    assert len(err) < 1000  # the library's message is cut, never dumped


def test_user_error_is_decided_by_where_it_was_raised() -> None:
    with pytest.raises(ValueError) as ours:
        training.TrainConfig(data="d", out="o", loss="focal").validate()
    with pytest.raises(ValueError) as theirs:
        np.zeros(3).reshape(2)
    assert cli._is_user_error(ours.value) and not cli._is_user_error(theirs.value)
    assert cli._is_user_error(FileNotFoundError("x")) and not cli._is_user_error(RuntimeError("x"))


@pytest.mark.parametrize(
    "argv, option, expected",
    [
        (["predict", "--model", "M", "--input", "{dir}", "--out", "{file}"], "--out", "a folder"),
        (["prepare", "--raw", "{file}", "--out", "{dir}/prep"], "--raw", "a folder"),
        (["train", "--data", "{file}", "--out", "{dir}/run"], "--data", "a folder"),
        (["train", "--data", "{dir}", "--out", "{file}"], "--out", "a folder"),
        (["synth", "--out", "{file}", "--count", "1"], "--out", "a folder"),
        (["evaluate", "--pred-dir", "{file}", "--data", "{dir}"], "--pred-dir", "a folder"),
        (["show", "-v", "mask", "--image", "{dir}", "--out", "{dir}/x.png"], "--image", "a file"),
        (["show", "-v", "mask", "--image", "{file}", "--out", "{dir}"], "--out", "a file"),
        (["course", "--out", "{file}"], "--out", "a folder"),
    ],
)
def test_a_path_of_the_wrong_kind_is_exit_2_before_any_work(
    tmp_path, monkeypatch, capsys, argv: list[str], option: str, expected: str
) -> None:
    a_file, a_dir = tmp_path / "a_file.png", tmp_path / "a_dir"
    a_file.write_bytes(b"x")
    a_dir.mkdir()
    argv = [a.format(file=a_file, dir=a_dir) for a in argv]
    command = argv[0]
    module = __import__(cli.COMMANDS[command][0], fromlist=["run_cli"])
    monkeypatch.setattr(module, "run_cli", lambda args: pytest.fail("the command started"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    wrong = a_file if expected == "a folder" else a_dir if option != "--out" or command != "show" else a_dir
    assert (
        err
        == f"facesegm {command}: error: {option} {wrong} is a {'file' if expected == 'a folder' else 'folder'}; expected {expected}\n"
    )
