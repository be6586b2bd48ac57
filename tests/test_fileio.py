"""Atomic writes and image reading with clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from facesegm_utils import fileio


@pytest.mark.parametrize("fsync", [True, False])
def test_atomic_write_creates_parents_and_leaves_no_temp_files(tmp_path: Path, fsync: bool) -> None:
    target = tmp_path / "a" / "b" / "x.bin"
    fileio.atomic_write_bytes(target, b"one", fsync=fsync)
    fileio.atomic_write_bytes(target, b"two", fsync=fsync)
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]


def test_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    fileio.atomic_write_json(target, {"ok": 1})

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_write_json(target, {"ok": 2})
    assert target.read_text() == '{\n  "ok": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_image_round_trip_keeps_rgb_order_and_labels(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    fileio.write_image_atomic(tmp_path / "red.png", rgb)
    assert np.array_equal(fileio.read_rgb(tmp_path / "red.png"), rgb)
    labels = np.arange(20, dtype=np.uint8).reshape(4, 5) % 19
    fileio.write_image_atomic(tmp_path / "labels.png", labels)
    assert np.array_equal(fileio.read_label_map(tmp_path / "labels.png"), labels)


def test_missing_and_corrupt_images_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        fileio.read_rgb(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(fileio.FacesegmError, match="bad.png"):
        fileio.read_rgb(bad)
    with pytest.raises(fileio.FacesegmError, match="bad.png"):
        fileio.read_label_map(bad)


def test_read_history(tmp_path: Path) -> None:
    import math

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,note\n1,0.5,\n2,0.25,x\n")
    cols = fileio.read_history(path)
    assert cols["epoch"] == [1.0, 2.0] and cols["loss"] == [0.5, 0.25]
    assert all(math.isnan(v) for v in cols["note"])
    path.write_text("epoch,loss\n")
    assert fileio.read_history(path) == {"epoch": [], "loss": []}
    with pytest.raises(FileNotFoundError, match="training history not found: .*nope.csv"):
        fileio.read_history(tmp_path / "nope.csv")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_open_gives(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
        written = [
            fileio.atomic_write_text(tmp_path / "a.txt", "x"),
            fileio.atomic_write_json(tmp_path / "b.json", {}),
            fileio.write_image_atomic(tmp_path / "c.png", np.zeros((2, 2), np.uint8)),
        ]
    finally:
        os.umask(old)
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~umask
    assert [stat.S_IMODE(p.stat().st_mode) for p in written] == [expected] * 3
