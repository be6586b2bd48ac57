"""Tests of the restricted reader for legacy PyTorch checkpoints (no torch needed)."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from facesegm_utils import torchckpt
from facesegm_utils.fileio import FacesegmError
from facesegm_utils.torchckpt import LEGACY_MAGIC, LEGACY_PROTOCOL, load_legacy_checkpoint

LITTLE = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}


def _body(obj: object) -> bytes:
    """The opcodes that push ``obj`` (a plain value), without the protocol header and STOP."""
    return pickle.dumps(obj, protocol=2)[2:-1]


def _tensor_args(key: str, numel: int, offset: int, shape: tuple, stride: tuple) -> bytes:
    """The opcodes of one ``_rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())`` call."""
    pid = b"(" + _body("storage") + b"ctorch\nFloatStorage\n" + _body(key) + _body("cpu")
    pid += _body(numel) + b"Nt"
    args = b"(" + pid + b"Q" + _body(offset) + _body(shape) + _body(stride) + b"\x89"
    args += b"ccollections\nOrderedDict\n)Rt"
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"


def _legacy_file(
    storages: dict[str, np.ndarray],
    tensors: dict[str, tuple[str, int, tuple, tuple]],
    *,
    sys_info: object = LITTLE,
    keys: object = None,
    counts: dict[str, int] | None = None,
    main: bytes | None = None,
) -> bytes:
    """A legacy torch.save file written by hand: float32 storages and tensors viewing them.

    The keyword arguments replace one part with something a crafted file might hold.
    """
    if main is None:
        main = b"\x80\x02ccollections\nOrderedDict\n)R("
        for name, (key, offset, shape, stride) in tensors.items():
            main += _body(name) + _tensor_args(key, int(storages[key].size), offset, shape, stride)
        main += b"u."
    out = pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(LEGACY_PROTOCOL, 2)
    out += pickle.dumps(sys_info, 2) + main + pickle.dumps(list(storages) if keys is None else keys, 2)
    for key, arr in storages.items():
        out += struct.pack("<q", (counts or {}).get(key, arr.size)) + arr.astype("<f4").tobytes()
    return out


def test_reads_tensors_through_their_strides(tmp_path: Path) -> None:
    logical = np.arange(6, dtype="float32").reshape(2, 3)
    storages = {"a": np.asfortranarray(logical).ravel(order="K"), "b": np.arange(10, dtype="float32")}
    tensors = {
        "transposed": ("a", 0, (2, 3), (1, 2)),  # column-major storage: [0, 3, 1, 4, 2, 5]
        "slice": ("b", 4, (3,), (2,)),  # elements 4, 6, 8
        "scalar": ("b", 9, (), ()),
    }
    path = tmp_path / "ckpt.pth"
    path.write_bytes(_legacy_file(storages, tensors))
    state = load_legacy_checkpoint(path)
    assert list(state) == ["transposed", "slice", "scalar"]
    np.testing.assert_array_equal(state["transposed"], logical)
    np.testing.assert_array_equal(state["slice"], [4.0, 6.0, 8.0])
    assert state["scalar"].shape == () and float(state["scalar"]) == 9.0


def test_tensor_past_its_storage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(_legacy_file({"a": np.zeros(4, "float32")}, {"t": ("a", 2, (3,), (1,))}))
    with pytest.raises(FacesegmError, match="reaches past its storage"):
        load_legacy_checkpoint(path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - what a malicious checkpoint would pickle
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("position", ["magic", "state"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path, position: str) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Evil(marker), protocol=2)
    assert b"system" in evil  # the payload really names os.system / posix.system
    if position == "magic":
        data = evil
    else:
        data = (
            pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(LEGACY_PROTOCOL, 2) + pickle.dumps(LITTLE, 2) + evil
        )
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    with pytest.raises(FacesegmError, match=r"refusing to load (posix|os)\.system"):
        load_legacy_checkpoint(path)
    assert not marker.exists()


def test_not_a_legacy_checkpoint(tmp_path: Path) -> None:
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04 rest of a zip")
    with pytest.raises(FacesegmError, match="zip-format"):
        load_legacy_checkpoint(zipped)
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(pickle.dumps(12345, 2))
    with pytest.raises(FacesegmError, match="bad magic number"):
        load_legacy_checkpoint(wrong)
    truncated = tmp_path / "short.pth"
    truncated.write_bytes(_legacy_file({"a": np.zeros(4, "float32")}, {"t": ("a", 0, (4,), (1,))})[:-3])
    with pytest.raises(FacesegmError, match="truncated"):
        load_legacy_checkpoint(truncated)
    with pytest.raises(FacesegmError, match="cannot read"):
        load_legacy_checkpoint(tmp_path / "missing.pth")


def _crafted() -> dict[str, tuple[bytes, str]]:
    """Files of a few hundred bytes that once did harm, and what the refusal must say."""
    one, four = {"a": np.zeros(1, "float32")}, {"a": np.zeros(4, "float32")}
    thousand = {"a": np.zeros(1000, "float32")}
    nested = b"\x80\x02}" + b"X\x01\x00\x00\x00a}" * 5000 + b"s" * 5000 + b"."
    return {
        # a 4 GiB array from one float
        "stride 0": (_legacy_file(one, {"t": ("a", 0, (2**15, 2**15), (0, 0))}), "overlap"),
        "overlapping strides": (_legacy_file(thousand, {"t": ("a", 0, (30, 30), (1, 1))}), "overlap"),
        "negative shape": (_legacy_file(four, {"t": ("a", 0, (-1, 4), (1, 1))}), "shape"),
        "one storage 2,000 times": (
            _legacy_file(thousand, {f"t{i}": ("a", 0, (1000,), (1,)) for i in range(2000)}),
            "over 2x the file|share bytes",
        ),
        "BINBYTES8 of 2**40": (
            _legacy_file(four, {}, main=b"\x80\x02\x8e" + struct.pack("<Q", 2**40) + b"."),
            "not allowed",
        ),
        "BUILD on _rebuild_tensor_v2": (
            _legacy_file(four, {}, main=b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}b."),
            "BUILD on _RebuildTensor",
        ),
        "BUILD on a storage type": (
            _legacy_file(four, {}, main=b"\x80\x02ctorch\nFloatStorage\n}b."),
            "BUILD on _StorageType",
        ),
        "SETITEMS on a storage type": (
            _legacy_file(four, {}, main=b"\x80\x02ctorch\nFloatStorage\n(K\x01K\x02u."),
            "SETITEMS on _StorageType",
        ),
        "storage keys None": (_legacy_file(four, {"t": ("a", 0, (4,), (1,))}, keys=None) + b"", ""),
        "storage keys unhashable": (
            _legacy_file(four, {"t": ("a", 0, (4,), (1,))}, keys=[["a"]]),
            "storage key list",
        ),
        "self-referencing dict": (
            _legacy_file({}, {}, main=b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s."),
            "appears twice",
        ),
        "5,000-deep dicts": (_legacy_file({}, {}, main=nested), "deeper than"),
        "declared size disagrees": (
            _legacy_file(four, {"t": ("a", 0, (4,), (1,))}, counts={"a": 3}),
            "holds 3 elements but is declared with 4",
        ),
        "big endian": (
            _legacy_file(four, {"t": ("a", 0, (4,), (1,))}, sys_info={**LITTLE, "little_endian": False}),
            "little endian",
        ),
        "bytes after the last storage": (
            _legacy_file(four, {"t": ("a", 0, (4,), (1,))}) + b"\x00",
            "1 unexpected bytes",
        ),
        "storage larger than the file": (
            _legacy_file(four, {}, main=b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00t"
                         + _tensor_args("a", 2**40, 0, (4,), (1,)) + b"u."),
            "more than the file holds",
        ),
    }  # fmt: skip


CRAFTED = _crafted()
CRAFTED["storage keys None"] = (
    pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(LEGACY_PROTOCOL, 2) + pickle.dumps(LITTLE, 2)
    + pickle.dumps({}, 2) + pickle.dumps(None, 2),
    "storage key list",
)  # fmt: skip


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_files_end_in_one_clear_error(tmp_path: Path, case: str) -> None:
    data, reason = CRAFTED[case]
    path = tmp_path / "crafted.pth"
    path.write_bytes(data)
    defaults = torchckpt._RebuildTensor.__call__.__defaults__
    with pytest.raises(FacesegmError, match=reason) as info:
        load_legacy_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert torchckpt._RebuildTensor.__call__.__defaults__ == defaults  # nothing was rewritten


def test_sha256_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    path.write_bytes(_legacy_file({"a": np.arange(4, dtype="float32")}, {"t": ("a", 0, (4,), (1,))}))
    digest = torchckpt.file_sha256(path)
    np.testing.assert_array_equal(load_legacy_checkpoint(path, sha256=digest.upper())["t"], [0, 1, 2, 3])
    with pytest.raises(FacesegmError, match=f"{path}: sha256 {digest} is not the expected 0+ "):
        load_legacy_checkpoint(path, sha256="0" * 64)


def test_views_that_share_no_bytes_are_read() -> None:
    storages = {"a": np.arange(12, dtype="float32")}
    tensors = {"even": ("a", 0, (6,), (2,)), "empty": ("a", 0, (0, 3), (3, 1))}
    state = torchckpt.read_legacy_checkpoint(_legacy_file(storages, tensors))
    np.testing.assert_array_equal(state["even"], [0, 2, 4, 6, 8, 10])
    assert state["empty"].shape == (0, 3)
    odd_too = {**tensors, "odd": ("a", 1, (6,), (2,))}  # interleaved with "even": refused, not guessed
    with pytest.raises(FacesegmError, match="share bytes"):
        torchckpt.read_legacy_checkpoint(_legacy_file(storages, odd_too))
