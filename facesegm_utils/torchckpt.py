"""A safe reader for legacy (non-zip) PyTorch checkpoints, into numpy arrays, without torch.

A ``.pth`` file saved by ``torch.save(..., _use_new_zipfile_serialization=False)`` is a sequence of
pickles: a magic number, the protocol version, a system-info dict, the object itself (here a state
dict), the list of storage keys, and then each storage's raw bytes (an int64 element count followed by
the elements). Unpickling can run arbitrary code, so :func:`load_legacy_checkpoint` uses a restricted
unpickler: its ``find_class`` allows only ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the ``torch.*Storage`` type names, each mapped to a local
stand-in, and refuses everything else with a :class:`FacesegmError` before anything is called.

Tensors become numpy arrays read through their stored offset, shape and strides: some checkpoints
hold non-contiguous tensors (e.g. channels-last convolution kernels), and reading their bytes as if
contiguous would scramble the weights.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from facesegm_utils.fileio import FacesegmError

#: magic number at the start of a legacy torch.save file
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
#: torch storage type name -> numpy dtype (little endian)
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a ``torch.*Storage`` class: only its name and element dtype."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass
class _Storage:
    """A storage named in the pickle; its bytes are read after the pickle, from the file's tail."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    """What ``_rebuild_tensor_v2`` would build, kept until the storages have been read."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    extra: tuple[Any, ...] = field(default_factory=tuple)

    def to_numpy(self) -> np.ndarray:
        """The tensor as a fresh contiguous array, read through its offset and strides."""
        data = self.storage.data
        if data is None:
            raise FacesegmError(f"storage {self.storage.key!r} was never read from the checkpoint")
        if len(self.stride) != len(self.shape):
            raise FacesegmError(f"tensor of shape {self.shape} has strides {self.stride}")
        if all(n > 0 for n in self.shape):
            last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True))
            if self.offset < 0 or min(self.stride, default=0) < 0 or last >= data.size:
                raise FacesegmError(
                    f"tensor of shape {self.shape} and strides {self.stride} at offset {self.offset} "
                    f"reaches past its storage of {data.size} elements"
                )
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.shape,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view, copy=True)


def _rebuild_tensor_v2(storage: _Storage, offset: int, shape: Any, stride: Any, *extra: Any) -> _TensorRef:
    """Local stand-in for ``torch._utils._rebuild_tensor_v2``: records where the tensor lies."""
    if not isinstance(storage, _Storage):
        raise FacesegmError(f"a tensor refers to {type(storage).__name__}, not to a storage")
    return _TensorRef(
        storage, int(offset), tuple(int(n) for n in shape), tuple(int(s) for s in stride), extra
    )


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the few names a legacy state dict needs."""

    def __init__(self, fh: BinaryIO, source: str) -> None:
        super().__init__(fh)
        self.source = source
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise FacesegmError(
            f"{self.source}: refusing to load {module}.{name} from the checkpoint; only "
            "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch.*Storage are allowed "
            "(an untrusted or unsupported file)"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise FacesegmError(f"{self.source}: unsupported persistent id {pid!r} (expected a storage)")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise FacesegmError(f"{self.source}: storage {key!r} has no known storage type")
        if len(pid) > 5 and pid[5] is not None:
            raise FacesegmError(f"{self.source}: storage views are not supported (storage {key!r})")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, int(numel))
        return self.storages[key]


def _read_storage(fh: BinaryIO, storage: _Storage, source: str) -> None:
    header = fh.read(8)
    if len(header) != 8:
        raise FacesegmError(f"{source}: truncated before storage {storage.key!r}")
    (count,) = struct.unpack("<q", header)
    nbytes = count * storage.dtype.itemsize
    raw = fh.read(nbytes)
    if count < 0 or len(raw) != nbytes:
        raise FacesegmError(f"{source}: storage {storage.key!r} is truncated ({len(raw)} of {nbytes} bytes)")
    storage.data = np.frombuffer(raw, dtype=storage.dtype)


def _flatten(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(obj, _TensorRef):
        return {prefix: obj.to_numpy()}
    if isinstance(obj, dict):
        out: dict[str, np.ndarray] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {}


def load_legacy_checkpoint(path: str | os.PathLike[str] | BinaryIO) -> dict[str, np.ndarray]:
    """Read a legacy (non-zip) ``torch.save`` state dict as ``{name: numpy array}`` in file order.

    Only plain tensors in (nested) dicts are kept. Raises :class:`FacesegmError` for a zip-format
    checkpoint, a wrong magic number, a truncated file or any class outside the allowed few.
    """
    if isinstance(path, (str, os.PathLike)):
        source = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise FacesegmError(f"cannot read the checkpoint {source}: {exc}") from exc
        fh: BinaryIO = io.BytesIO(data)
    else:
        source, fh = getattr(path, "name", "<stream>"), path
    head = fh.read(2)
    if head == b"PK":
        raise FacesegmError(f"{source} is a zip-format torch checkpoint; only the legacy format is read")
    fh.seek(-len(head), io.SEEK_CUR)
    try:
        magic = _RestrictedUnpickler(fh, source).load()
        if magic != LEGACY_MAGIC:
            raise FacesegmError(f"{source} is not a legacy torch checkpoint (bad magic number)")
        protocol = _RestrictedUnpickler(fh, source).load()
        if protocol != LEGACY_PROTOCOL:
            raise FacesegmError(f"{source}: unsupported torch protocol version {protocol!r}")
        _RestrictedUnpickler(fh, source).load()  # system info: endianness and type sizes
        unpickler = _RestrictedUnpickler(fh, source)
        result = unpickler.load()
        keys = _RestrictedUnpickler(fh, source).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise FacesegmError(f"{source} is not a readable legacy torch checkpoint: {exc}") from exc
    for key in keys:
        if key not in unpickler.storages:
            raise FacesegmError(f"{source}: storage {key!r} listed but never used")
        _read_storage(fh, unpickler.storages[key], source)
    return _flatten(result)
