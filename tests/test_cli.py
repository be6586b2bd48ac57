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
