"""A bounded, verified reader for legacy (non-zip) PyTorch checkpoints, into numpy arrays, without torch.

A ``.pth`` file saved by ``torch.save(..., _use_new_zipfile_serialization=False)`` is a sequence of
pickles: a magic number, the protocol version, a system-info dict (byte order, type sizes), the
object itself (here a state dict), the list of storage keys, and then each storage's raw bytes (an
int64 element count followed by the elements).

Unpickling can run arbitrary code, so this module does not unpickle: it interprets the few pickle
opcodes a state dict needs with its own small machine (:class:`_Machine`), and refuses every other
opcode. ``GLOBAL`` resolves only ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and
the ``torch.*Storage`` names, each to a local stand-in; ``REDUCE`` calls only those stand-ins,
``SETITEM(S)``/``APPEND(S)`` touch only dicts and lists the pickle built, and ``BUILD`` is accepted
only on the ``OrderedDict`` stand-in (whose state, torch's ``_metadata``, is dropped).

Everything is bounded by the file's size: a storage's declared element count must match its header
and the bytes present; a tensor must lie inside its storage, with no negative or zero stride and no
two elements (or two tensors) sharing storage bytes, so the arrays returned never hold more than
:data:`MAX_OUTPUT_RATIO` times the file's bytes; nesting is limited to :data:`MAX_DEPTH`; shared or
self-referencing containers are refused; the byte order must be little endian. With ``sha256`` the
file's hash is checked before anything is parsed. Every failure is one :class:`FacesegmError`
naming the file and the reason.

Tensors become numpy arrays read through their stored offset, shape and strides: some checkpoints
hold non-contiguous tensors (e.g. channels-last convolution kernels), and reading their bytes as if
contiguous would scramble the weights.
"""

from __future__ import annotations

import hashlib
import os
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
#: the C type sizes torch records (``type_sizes`` of the system-info pickle): ``long`` is 4 bytes on
#: Windows, where the packaged checkpoint was written, and 8 elsewhere; storages use fixed widths
TYPE_SIZES = ({"short": 2, "int": 4, "long": 8}, {"short": 2, "int": 4, "long": 4})
#: the arrays returned hold at most this many times the file's size
MAX_OUTPUT_RATIO = 2
#: the deepest nesting of dicts, lists and tuples accepted, in the pickle and in the state dict
MAX_DEPTH = 32
#: the most dimensions a tensor may have
MAX_DIMS = 16
#: the longest module or class name a GLOBAL opcode may carry
MAX_NAME = 256


class CheckpointError(FacesegmError):
    """A checkpoint that is unreadable, unexpected or outside the bounds this reader accepts."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def extent(self) -> tuple[int, int]:
        """The first and last storage element the tensor reads (offset - 1 when it is empty)."""
        if self.numel == 0:
            return self.offset, self.offset - 1
        return self.offset, self.offset + sum(
            (n - 1) * s for n, s in zip(self.shape, self.stride, strict=True)
        )

    def check(self) -> str | None:
        """Why this tensor cannot be read from its storage, or None if it can."""
        if self.numel == 0:
            return None
        dims = sorted((s, n) for n, s in zip(self.shape, self.stride, strict=True) if n > 1)
        reach = 0  # the last element reachable by the faster dimensions
        for s, n in dims:
            if s <= reach:
                return f"strides {self.stride} for shape {self.shape} make elements overlap (a stride of 0 or less, or a view)"
            reach += (n - 1) * s
        first, last = self.extent()
        if last >= self.storage.numel:
            return (
                f"tensor of shape {self.shape} and strides {self.stride} at offset {self.offset} "
                f"reaches past its storage of {self.storage.numel} elements"
            )
        return None

    def to_numpy(self) -> np.ndarray:
        """The tensor as a fresh contiguous array, read through its offset and strides."""
        data = self.storage.data
        assert data is not None  # every listed storage was read before any tensor
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :] if self.numel else data[:0],
            shape=self.shape,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view, copy=True)


class _StateDict(dict):
    """Stand-in for ``collections.OrderedDict`` (plain dicts keep insertion order)."""


class _RebuildTensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records where the tensor lies."""

    def __call__(self, *args: Any) -> _TensorRef:
        if not 6 <= len(args) <= 7:
            raise ValueError(f"_rebuild_tensor_v2 takes 6 or 7 arguments, got {len(args)}")
        storage, offset, shape, stride, requires_grad, hooks = args[:6]
        if not isinstance(storage, _Storage):
            raise ValueError(f"a tensor refers to {type(storage).__name__}, not to a storage")
        if not (_is_int(offset) and offset >= 0):
            raise ValueError(f"a tensor has offset {offset!r}; expected an integer >= 0")
        for what, dims in (("shape", shape), ("stride", stride)):
            if not (type(dims) is tuple and len(dims) <= MAX_DIMS and all(_is_int(d) for d in dims)):
                raise ValueError(
                    f"a tensor's {what} is {_brief(dims)}; expected a tuple of <= {MAX_DIMS} integers"
                )
        if len(stride) != len(shape) or min(shape, default=0) < 0:
            raise ValueError(f"a tensor has shape {shape} and strides {stride}")
        if type(requires_grad) is not bool or not (type(hooks) is _StateDict and not hooks):
            raise ValueError("a tensor's requires_grad or backward hooks are not what torch.save writes")
        return _TensorRef(storage, offset, shape, stride, args[4:])


def _is_int(x: Any) -> bool:
    """A plain integer (not a bool) small enough for numpy's shapes and strides."""
    return type(x) is int and -(2**62) < x < 2**62


def _brief(x: Any) -> str:
    """A short description of a pickled value for an error message (never a deep repr)."""
    flat = type(x) is tuple and len(x) <= 20 and all(type(v) in (int, str, bool) or v is None for v in x)
    text = repr(x) if flat or type(x) in (int, str, bool) or x is None else type(x).__name__
    return text if len(text) <= 60 else text[:60] + "..."


#: what GLOBAL may name, and the stand-in it gives
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor_v2"): _RebuildTensor(),
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _Machine:
    """Runs one pickle with the opcodes a legacy state dict uses, and nothing else."""

    def __init__(self, data: bytes, pos: int, storages: dict[str, _Storage]) -> None:
        self.data, self.pos, self.storages = data, pos, storages
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}

    def read(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated in the middle of a pickle")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def line(self) -> str:
        end = self.data.find(b"\n", self.pos, self.pos + MAX_NAME)
        if end < 0:
            raise ValueError("a GLOBAL name is too long or unterminated")
        text = self.data[self.pos : end].decode("ascii")
        self.pos = end + 1
        return text

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise ValueError("an opcode needs a MARK that is not there")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def pop(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise ValueError("the pickle's stack underflows")
        return self.stack.pop()

    def top(self, kind: type | tuple[type, ...], op: str) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0) or not isinstance(self.stack[-1], kind):
            got = type(self.stack[-1]).__name__ if self.stack else "nothing"
            raise ValueError(f"{op} on {got}, which this reader does not allow")
        return self.stack[-1]

    def run(self) -> Any:
        """Interpret opcodes up to STOP; return the pickled object (``self.pos`` is just past STOP)."""
        while True:
            op = self.read(1)
            if op == b".":
                if len(self.stack) != 1 or self.marks:
                    raise ValueError("the pickle does not end with exactly one object")
                return self.stack[0]
            handler = _OPS.get(op)
            if handler is None:
                raise ValueError(f"opcode {op!r} at byte {self.pos - 1} is not allowed in a state dict")
            handler(self)
            if len(self.marks) > MAX_DEPTH:
                raise ValueError(f"nesting deeper than {MAX_DEPTH}")


def _push(value: Any) -> Any:
    return lambda m: m.stack.append(value)


def _push_read(fmt: str) -> Any:
    return lambda m: m.stack.append(m.unpack(fmt))


def _long1(m: _Machine) -> None:
    m.stack.append(int.from_bytes(m.read(m.unpack("<B")), "little", signed=True))


def _unicode(fmt: str) -> Any:
    def op(m: _Machine) -> None:
        m.stack.append(m.read(m.unpack(fmt)).decode("utf-8"))

    return op


def _put(fmt: str) -> Any:
    def op(m: _Machine) -> None:
        m.memo[m.unpack(fmt)] = m.top(object, "PUT")

    return op


def _memoize(m: _Machine) -> None:
    m.memo[len(m.memo)] = m.top(object, "MEMOIZE")


def _get(fmt: str) -> Any:
    def op(m: _Machine) -> None:
        key = m.unpack(fmt)
        if key not in m.memo:
            raise ValueError(f"memo entry {key} is read before it is written")
        m.stack.append(m.memo[key])

    return op


def _mark(m: _Machine) -> None:
    m.marks.append(len(m.stack))


def _tuple(n: int | None) -> Any:
    def op(m: _Machine) -> None:
        items = m.pop_mark() if n is None else [m.pop() for _ in range(n)][::-1]
        m.stack.append(tuple(items))

    return op


def _global(m: _Machine) -> None:
    module, name = m.line(), m.line()
    if (module, name) not in _ALLOWED:
        raise ValueError(
            f"refusing to load {module}.{name} from the checkpoint; only collections.OrderedDict, "
            "torch._utils._rebuild_tensor_v2 and torch.*Storage are allowed (an untrusted or unsupported file)"
        )
    m.stack.append(_ALLOWED[(module, name)])


def _reduce(m: _Machine) -> None:
    args, func = m.pop(), m.pop()
    if type(args) is not tuple:
        raise ValueError(f"REDUCE with arguments {type(args).__name__}, not a tuple")
    if func is _StateDict and not args:
        m.stack.append(_StateDict())
    elif isinstance(func, _RebuildTensor):
        m.stack.append(func(*args))
    else:
        raise ValueError(f"REDUCE may only call the OrderedDict and tensor stand-ins, not {_brief(func)}")


def _persid(m: _Machine) -> None:
    m.stack.append(_persistent_load(m.pop(), m.storages, len(m.data)))


def _persistent_load(pid: Any, storages: dict[str, _Storage], file_size: int) -> _Storage:
    if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] == "storage"):
        raise ValueError(f"unsupported persistent id {_brief(pid)} (expected a storage)")
    _, storage_type, key, location, numel = pid[:5]
    if not isinstance(storage_type, _StorageType):
        raise ValueError(f"storage {_brief(key)} has no known storage type")
    if len(pid) > 5 and pid[5] is not None:
        raise ValueError(f"storage views are not supported (storage {_brief(key)})")
    if type(key) is not str or type(location) is not str:
        raise ValueError(f"storage key {_brief(key)} or location {_brief(location)} is not a string")
    if not (_is_int(numel) and 0 <= numel * storage_type.dtype.itemsize <= file_size):
        raise ValueError(f"storage {key!r} declares {_brief(numel)} elements, more than the file holds")
    known = storages.setdefault(key, _Storage(key, storage_type.dtype, numel))
    if (known.dtype, known.numel) != (storage_type.dtype, numel):
        raise ValueError(f"storage {key!r} is declared twice, differently")
    return known


def _setitems(many: bool) -> Any:
    def op(m: _Machine) -> None:
        items = m.pop_mark() if many else [m.pop(), m.pop()][::-1]
        target = m.top(dict, "SETITEMS" if many else "SETITEM")
        if len(items) % 2:
            raise ValueError("SETITEMS with an odd number of items")
        for key, value in zip(items[::2], items[1::2], strict=True):
            if type(key) not in (str, int):
                raise ValueError(f"a dict key is {type(key).__name__}; expected a string or an integer")
            target[key] = value

    return op


def _appends(many: bool) -> Any:
    def op(m: _Machine) -> None:
        items = m.pop_mark() if many else [m.pop()]
        m.top(list, "APPENDS" if many else "APPEND").extend(items)

    return op


def _build(m: _Machine) -> None:
    state = m.pop()
    m.top(_StateDict, "BUILD")
    if type(state) is not dict or not all(type(k) is str for k in state):
        raise ValueError(f"BUILD with state {type(state).__name__}; expected torch's {{'_metadata': ...}}")


def _proto(m: _Machine) -> None:
    if m.unpack("<B") > 5:
        raise ValueError("unknown pickle protocol")


_OPS: dict[bytes, Any] = {
    b"\x80": _proto,
    b"(": _mark,
    b"}": lambda m: m.stack.append({}),
    b"]": lambda m: m.stack.append([]),
    b")": _push(()),
    b"t": _tuple(None),
    b"\x85": _tuple(1),
    b"\x86": _tuple(2),
    b"\x87": _tuple(3),
    b"N": _push(None),
    b"\x88": _push(True),
    b"\x89": _push(False),
    b"J": _push_read("<i"),
    b"K": _push_read("<B"),
    b"M": _push_read("<H"),
    b"G": _push_read(">d"),
    b"\x8a": _long1,
    b"X": _unicode("<I"),
    b"\x8c": _unicode("<B"),
    b"q": _put("<B"),
    b"r": _put("<I"),
    b"\x94": _memoize,
    b"h": _get("<B"),
    b"j": _get("<I"),
    b"c": _global,
    b"R": _reduce,
    b"Q": _persid,
    b"s": _setitems(False),
    b"u": _setitems(True),
    b"a": _appends(False),
    b"e": _appends(True),
    b"b": _build,
}


def _flatten(obj: Any, prefix: str, seen: set[int], depth: int) -> dict[str, _TensorRef]:
    """``{dotted name: tensor}`` of the tensors in nested dicts; shared or too deep containers are refused."""
    if isinstance(obj, _TensorRef):
        return {prefix: obj}
    if not isinstance(obj, dict):
        return {}
    if id(obj) in seen:
        raise ValueError(f"the dict at {prefix or 'the top'} appears twice (shared or self-referencing)")
    if depth > MAX_DEPTH:
        raise ValueError(f"dicts nested deeper than {MAX_DEPTH}")
    seen.add(id(obj))
    out: dict[str, _TensorRef] = {}
    for key, value in obj.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key), seen, depth + 1))
    return out


def _check_header(data: bytes, source: str) -> int:
    """Run the magic, protocol and system-info pickles; return where the state dict's pickle starts."""
    if data[:2] == b"PK":
        raise CheckpointError(f"{source} is a zip-format torch checkpoint; only the legacy format is read")
    magic = _Machine(data, 0, {})
    if magic.run() != LEGACY_MAGIC:
        raise ValueError("not a legacy torch checkpoint (bad magic number)")
    protocol = _Machine(data, magic.pos, {})
    if (version := protocol.run()) != LEGACY_PROTOCOL:
        raise ValueError(f"unsupported torch protocol version {_brief(version)}")
    info = _Machine(data, protocol.pos, {})
    sys_info = info.run()
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise ValueError("the checkpoint was not written little endian (or does not say)")
    if sys_info.get("type_sizes", TYPE_SIZES[0]) not in TYPE_SIZES:
        raise ValueError(f"unexpected C type sizes; expected one of {TYPE_SIZES}")
    return info.pos


def _read_storages(data: bytes, pos: int, keys: Any, storages: dict[str, _Storage]) -> int:
    """Read each listed storage's bytes (without copying); return the position after the last one."""
    if type(keys) is not list or not all(type(k) is str for k in keys) or len(set(keys)) != len(keys):
        raise ValueError("the storage key list is not a list of distinct strings")
    if set(keys) != set(storages):
        raise ValueError(f"the storage keys listed ({len(keys)}) are not the storages used ({len(storages)})")
    for key in keys:
        storage = storages[key]
        if pos + 8 > len(data):
            raise ValueError(f"truncated before storage {key!r}")
        (count,) = struct.unpack_from("<q", data, pos)
        if count != storage.numel:
            raise ValueError(f"storage {key!r} holds {count} elements but is declared with {storage.numel}")
        nbytes = count * storage.dtype.itemsize
        if pos + 8 + nbytes > len(data):
            raise ValueError(f"storage {key!r} is truncated ({len(data) - pos - 8} of {nbytes} bytes)")
        storage.data = np.frombuffer(data, dtype=storage.dtype, count=count, offset=pos + 8)
        pos += 8 + nbytes
    return pos


def _check_tensors(tensors: dict[str, _TensorRef], file_size: int) -> None:
    """Every tensor inside its storage, no two sharing bytes, the total within the output bound."""
    by_storage: dict[str, list[tuple[int, int, str]]] = {}
    total = 0
    for name, t in tensors.items():
        if (why := t.check()) is not None:
            raise ValueError(f"{name}: {why}")
        total += t.numel * t.storage.dtype.itemsize
        first, last = t.extent()
        if last >= first:
            by_storage.setdefault(t.storage.key, []).append((first, last, name))
    if total > MAX_OUTPUT_RATIO * file_size:
        raise ValueError(f"the tensors would take {total} bytes, over {MAX_OUTPUT_RATIO}x the file's size")
    for extents in by_storage.values():
        extents.sort()
        for (_, last, a), (first, _, b) in zip(extents, extents[1:], strict=False):
            if first <= last:
                raise ValueError(f"tensors {a} and {b} share bytes of one storage (overlapping views)")


def read_legacy_checkpoint(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Parse a legacy checkpoint held in memory (see :func:`load_legacy_checkpoint`)."""
    try:
        pos = _check_header(data, source)
        storages: dict[str, _Storage] = {}
        main = _Machine(data, pos, storages)
        result = main.run()
        listing = _Machine(data, main.pos, {})
        keys = listing.run()
        end = _read_storages(data, listing.pos, keys, storages)
        if end != len(data):
            raise ValueError(f"{len(data) - end} unexpected bytes after the last storage")
        if not isinstance(result, dict):
            raise ValueError(f"the checkpoint holds {type(result).__name__}, not a state dict")
        tensors = _flatten(result, "", set(), 0)
        _check_tensors(tensors, len(data))
    except CheckpointError:
        raise
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    return {name: t.to_numpy() for name, t in tensors.items()}


def load_legacy_checkpoint(
    path: str | os.PathLike[str] | BinaryIO, *, sha256: str | None = None
) -> dict[str, np.ndarray]:
    """Read a legacy (non-zip) ``torch.save`` state dict as ``{name: numpy array}`` in file order.

    With ``sha256`` (hex) the file's hash must match before anything is parsed. Only plain tensors
    in (nested) dicts are kept. Raises :class:`CheckpointError` (a :class:`FacesegmError`) naming the
    file and the reason for anything unreadable, unexpected or outside this reader's bounds.
    """
    if isinstance(path, (str, os.PathLike)):
        source = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read the checkpoint {source}: {exc}") from exc
    else:
        source, data = getattr(path, "name", "<stream>"), path.read()
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256.lower():
            raise CheckpointError(
                f"{source}: sha256 {got} is not the expected {sha256.lower()} (a corrupted or different file)"
            )
    return read_legacy_checkpoint(data, source)
