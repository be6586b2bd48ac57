"""Tests for facesegm_utils.layout: the raw CelebAMask-HQ names, folder scheme and mapping format."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesegm_utils import layout
from facesegm_utils.fileio import FacesegmError


def test_names_and_folder_scheme() -> None:
    root = Path("raw")
    assert layout.image_file(root, 7) == root / "CelebA-HQ-img" / "7.jpg"
    assert layout.mask_file(root, 7, "skin") == root / "CelebAMask-HQ-mask-anno" / "0" / "00007_skin.png"
    assert layout.mask_file(root, 1999, "hair").parts[-2:] == ("0", "01999_hair.png")
    assert layout.mask_file(root, 2000, "hair").parts[-2:] == ("1", "02000_hair.png")
    assert layout.mask_file(root, 29999, "l_lip").parts[-2:] == ("14", "29999_l_lip.png")
    match = layout.PART_FILE_RE.match(layout.mask_name(42, "neck_l"))
    assert match and (int(match.group(1)), match.group(2)) == (42, "neck_l")
    assert layout.IMAGE_FILE_RE.match(layout.image_name(12345)).group(1) == "12345"
    assert layout.PART_FILE_RE.match("0042_skin.png") is None  # ids are five digits


def test_official_partition_thresholds() -> None:
    got = [layout.official_split_of(o) for o in (0, 162770, 162771, 182637, 182638, 202598)]
    assert got == ["train", "train", "val", "val", "test", "test"]


def test_mapping_text_is_the_archives_format_and_reads_back(tmp_path: Path) -> None:
    text = layout.mapping_text({3: 162770, 0: 5})
    # the real file: a header and columns padded to 12 characters, orig_file = orig_idx + 1
    assert text.splitlines() == [
        "idx         orig_idx    orig_file",
        "0           5           000006.jpg",
        "3           162770      162771.jpg",
    ]
    path = tmp_path / layout.MAPPING_FILE
    path.write_text(text)
    assert layout.read_mapping(path) == {0: 5, 3: 162770}


def test_read_mapping_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="idx orig_idx orig_file"):
        layout.read_mapping(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("idx orig_idx orig_file\n0 1\n2\n")
    with pytest.raises(FacesegmError, match="line 3"):
        layout.read_mapping(bad)
