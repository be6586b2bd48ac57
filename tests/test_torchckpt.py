"""Tests of the restricted reader for legacy PyTorch checkpoints (no torch needed)."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from facesegm_utils.fileio import FacesegmError
from facesegm_utils.torchckpt import LEGACY_MAGIC, LEGACY_PROTOCOL, load_legacy_checkpoint


def _body(obj: object) -> bytes:
    """The opcodes that push ``obj`` (a plain value), without the protocol header and STOP."""
    return pickle.dumps(obj, protocol=2)[2:-1]


def _legacy_file(storages: dict[str, np.ndarray], tensors: dict[str, tuple[str, int, tuple, tuple]]) -> bytes:
    """A legacy torch.save file written by hand: float32 storages and tensors viewing them."""
    main = b"\x80\x02ccollections\nOrderedDict\n)R("
    for name, (key, offset, shape, stride) in tensors.items():
        pid = b"(" + _body("storage") + b"ctorch\nFloatStorage\n" + _body(key) + _body("cpu")
        pid += _body(int(storages[key].size)) + b"Nt"
        args = b"(" + pid + b"Q" + _body(offset) + _body(shape) + _body(stride) + b"\x89"
        args += b"ccollections\nOrderedDict\n)Rt"
        main += _body(name) + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"
    main += b"u."
    out = pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(LEGACY_PROTOCOL, 2)
    out += pickle.dumps({"little_endian": True}, 2) + main + pickle.dumps(list(storages), 2)
    for arr in storages.values():
        out += struct.pack("<q", arr.size) + arr.astype("<f4").tobytes()
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
        data = pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(LEGACY_PROTOCOL, 2) + pickle.dumps({}, 2) + evil
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
