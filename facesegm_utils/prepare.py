"""``facesegm prepare``: turn the raw CelebAMask-HQ layout into a resized, split, training-ready dataset.

Output layout under ``OUT``::

    {train,val,test}/images/{k}.jpg   RGB, area-resized to S x S, JPEG quality 95
    {train,val,test}/labels/{k}.png   uint8 class ids, merged at mask resolution, nearest-resized
    manifest.csv                      id,split,image,label (paths relative to OUT), sorted by id
    dataset.json                      classes, size, split, counts, train pixel frequencies/presence
    prepare_report.json               skipped ids with reasons, parts that had to be resized

Work is spread over processes (one id per task). Each file is written atomically, and an id whose
image and label already exist, complete, is skipped, so an interrupted run resumes where it stopped
and the result is byte-identical to an uninterrupted one. The per-id files are not flushed to disk
one by one (an fsync each cost a third of the time per face); one ``os.sync`` at the end of the run
does it, and a file a power cut left incomplete (no JPEG end marker or PNG ``IEND``) is redone. The summary files are rebuilt at the end from
the files on disk (train pixel counts of ids finished earlier are re-read from their label PNGs).

Speed comes from the decode path: JPEGs are decoded with libjpeg's DCT-domain downscaling
(``IMREAD_REDUCED_COLOR_2/4/8``) to the smallest size not below S and then area-resized; masks are
decoded unchanged (no colour conversion), nearest-sampled to S and merged at S. Part masks are
small, mostly-empty PNGs whose decode time is almost all zlib inflate, so :func:`decode_png` inflates
them with libdeflate (several times faster than zlib) and undoes the PNG row filters in numpy; a
PNG it does not handle (interlaced, 16-bit, palette, Average/Paeth filters, damaged) goes through
OpenCV, which gives the same array.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import deflate
import numpy as np

from facesegm_utils import celebamask as cm
from facesegm_utils.fileio import FacesegmError, atomic_write_bytes, atomic_write_json, atomic_write_text
from facesegm_utils.labels import CLASSES, NUM_CLASSES

JPEG_QUALITY = 95
#: PNG parameters for label maps. OpenCV's default is the fastest measured here (about 0.1 ms for a
#: 256x256 label map, 3x faster than an explicit compression level 1) and the files stay small.
PNG_PARAMS: list[int] = []
STATE_FILE = ".prepare_state.json"
NOTES_DIR = ".notes"


@dataclass(frozen=True)
class Task:
    """One id to prepare."""

    id: int
    split: str
    image: str
    parts: tuple[tuple[str, str], ...]
    out_image: str
    out_label: str
    notes_file: str


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's SOF marker, or None if not found."""
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return h, w
        i += 2 + length
    return None


def _image_size(data: bytes) -> tuple[int, int] | None:
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return h, w
    return None


def _reduced_flag(src: tuple[int, int] | None, size: int) -> int:
    """The cheapest imread flag whose decoded image is still at least ``size`` on both sides."""
    if src is None:
        return cv2.IMREAD_COLOR
    h, w = src
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4)):
        if -(-h // factor) >= size and -(-w // factor) >= size:
            return flag
    if -(-h // 2) >= size and -(-w // 2) >= size:
        return cv2.IMREAD_REDUCED_COLOR_2
    return cv2.IMREAD_COLOR


def read_image_resized(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """Decode an image as BGR uint8 and area-resize it to ``size`` x ``size`` (reduced JPEG decode).

    Raise ``FacesegmError`` for a truncated or undecodable file.
    """
    path = Path(path)
    data = path.read_bytes()
    is_jpeg = data[:2] == b"\xff\xd8"
    # entropy-coded data never holds FF D9 (0xFF is byte-stuffed), so a missing end-of-image marker
    # means a cut file; a few KB of trailing padding after it, as some writers add, is fine
    if is_jpeg and b"\xff\xd9" not in data[-4096:]:
        raise FacesegmError(f"truncated JPEG: {path} (expected it to end with the EOI marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-16:]:
        raise FacesegmError(f"truncated PNG: {path} (expected it to end with an IEND chunk)")
    flag = _reduced_flag(_image_size(data), size) if is_jpeg else cv2.IMREAD_COLOR
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None or img.size == 0:
        raise FacesegmError(f"could not decode image {path}: expected a readable JPEG/PNG")
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> channels, for the 8-bit types decode_png handles (grey, RGB, RGBA)
_PNG_CHANNELS = {0: 1, 2: 3, 6: 4}


def decode_png(data: bytes) -> np.ndarray | None:
    """An 8-bit PNG as uint8 (H, W) or (H, W, C) in file channel order (RGB), or None if not handled.

    Handles non-interlaced 8-bit grey/RGB/RGBA images whose rows use the None, Sub or
    Up filter (what OpenCV, Pillow and libpng write for masks); anything else returns None.
    """
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    w, h, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", data[16:29])
    ch = _PNG_CHANNELS.get(ctype)
    if ch is None or depth != 8 or interlace != 0 or w == 0 or h == 0:
        return None
    chunks, i, n = [], 8, len(data)
    while i + 8 <= n:
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        if kind == b"IDAT":
            chunks.append(data[i + 8 : i + 8 + length])
        elif kind == b"IEND":
            break
        i += 12 + length
    else:
        return None  # no IEND: truncated
    stride = w * ch
    try:
        raw = deflate.zlib_decompress(b"".join(chunks), h * (stride + 1))
    except deflate.DeflateError:
        return None
    if len(raw) != h * (stride + 1):
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride + 1)
    filters, x = rows[:, 0], rows[:, 1:]
    if filters.any():
        if filters.max() > 2:
            return None  # Average or Paeth: leave it to OpenCV
        x = x.copy()
        sub = filters == 1  # Sub: each byte adds the byte one pixel to its left
        if sub.any():
            x[sub] = np.cumsum(x[sub].reshape(-1, w, ch), axis=1, dtype=np.uint8).reshape(-1, stride)
        up = filters == 2  # Up: each byte adds the byte above; a run of Up rows is a running sum
        if up.any():
            total = np.cumsum(x, axis=0, dtype=np.uint8)
            start = np.maximum.accumulate(np.where(up, 0, np.arange(h)))
            before = np.where((start > 0)[:, None], total[np.maximum(start - 1, 0)], 0)
            x = (total - before).astype(np.uint8)
    return x.reshape(h, w) if ch == 1 else x.reshape(h, w, ch)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """:func:`celebamask.read_mask` (same array, same errors), decoded by :func:`decode_png` when it can."""
    try:
        arr = decode_png(Path(path).read_bytes())
    except OSError:
        arr = None
    if arr is None:
        return cm.read_mask(path)
    if arr.ndim == 3:
        arr = arr[..., :3][..., ::-1] if arr.shape[2] >= 3 else arr[..., 0]  # BGR like OpenCV, no alpha
    return arr


def _complete(path: Path, end: bytes) -> bool:
    """Whether ``path`` exists and holds ``end`` in its last bytes (a file we wrote completely)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16))
            return end in fh.read()
    except OSError:
        return False


def _worker_init() -> None:
    cv2.setNumThreads(1)


def process_task(task: Task, size: int) -> tuple[int, str, np.ndarray | None, list[str], str | None]:
    """Prepare one id: write its image and label; return (id, split, class pixel counts, notes, error).

    A bad input (unreadable image or mask) is returned as an error string, not raised.
    """
    try:
        img = read_image_resized(task.image, size)
        notes: list[str] = []
        label = cm.read_label_map(dict(task.parts), size, notes=notes, reader=read_mask)
    except (FacesegmError, OSError, cv2.error, ValueError) as exc:
        return task.id, task.split, None, [], str(exc)
    if label.shape != (size, size) or int(label.max()) >= NUM_CLASSES:
        return task.id, task.split, None, [], f"label map {label.shape} max {label.max()} is invalid"
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    ok2, png = cv2.imencode(".png", label, PNG_PARAMS)
    if not (ok and ok2):
        return task.id, task.split, None, [], "could not encode the outputs"
    atomic_write_bytes(task.out_image, jpg.tobytes(), fsync=False)  # os.sync() at the end of the run
    if notes:
        atomic_write_json(task.notes_file, notes)
    atomic_write_bytes(task.out_label, png.tobytes(), fsync=False)  # written last: marks the id done
    hist = np.bincount(label.ravel(), minlength=NUM_CLASSES).astype(np.int64)
    return task.id, task.split, hist, notes, None


def _process_star(args: tuple[Task, int]) -> tuple[int, str, np.ndarray | None, list[str], str | None]:
    return process_task(*args)


def _split_ids(
    raw: Path, ids: list[int], split: str, ratios: Sequence[float], seed: int
) -> tuple[dict[str, list[int]], dict[int, str]]:
    """Assign ids to splits; return the splits and ids that could not be placed (with reasons)."""
    if split == "official":
        mapping = cm.read_mapping(raw / cm.MAPPING_FILE)
        unknown = {k: f"id {k} is not in {raw / cm.MAPPING_FILE}" for k in ids if k not in mapping}
        return cm.official_split(mapping, [k for k in ids if k not in unknown]), unknown
    if split == "ratio":
        return cm.ratio_split(ids, ratios, seed), {}
    raise ValueError(f"unknown split method {split!r}; expected 'official' or 'ratio'")


def _check_state(out: Path, state: dict[str, Any]) -> None:
    """Refuse to resume into a folder prepared with other settings."""
    path = out / STATE_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        if old != state:
            diff = {k: (old.get(k), v) for k, v in state.items() if old.get(k) != v}
            raise FacesegmError(
                f"{out} was prepared with other settings {diff} (old, new); "
                "expected the same --size/--split/--ratios/--seed to resume, or a new --out folder"
            )
    else:
        atomic_write_json(path, state)


def _resolve_workers(workers: int | None) -> int:
    if workers is None or workers <= 0:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)
    return int(workers)


def _run_tasks(tasks: list[Task], size: int, workers: int) -> list[tuple]:
    from tqdm.auto import tqdm

    results: list[tuple] = []
    bar = tqdm(total=len(tasks), desc="prepare", unit="img", disable=not tasks)
    try:
        if workers == 1 or len(tasks) < 2 * workers:
            _worker_init_previous = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                for t in tasks:
                    results.append(process_task(t, size))
                    bar.update()
            finally:
                cv2.setNumThreads(_worker_init_previous)
        else:
            import multiprocessing as mp

            # fork starts workers in milliseconds; but never fork a parent that runs TensorFlow threads
            ctx = mp.get_context("spawn" if "tensorflow" in sys.modules or os.name != "posix" else "fork")
            chunk = max(1, min(32, len(tasks) // (workers * 8)))
            with ctx.Pool(workers, initializer=_worker_init) as pool:
                for res in pool.imap_unordered(_process_star, ((t, size) for t in tasks), chunksize=chunk):
                    results.append(res)
                    bar.update()
    finally:
        bar.close()
    return results


def prepare_dataset(
    raw_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    size: int,
    split: str = "official",
    ratios: Sequence[float] = (0.7, 0.2, 0.1),
    seed: int = 0,
    workers: int | None = None,
) -> dict[str, Any]:
    """Prepare a raw CelebAMask-HQ folder into ``out_dir`` at ``size`` x ``size``; return a summary.

    ``split`` is ``"official"`` (needs the mapping file) or ``"ratio"`` (``ratios``, ``seed``).
    ``workers`` processes (None or 0: all cores). Re-running skips ids already done.
    """
    start = time.perf_counter()
    size = int(size)
    raw = _check_request(raw_dir, size, split)
    if split == "ratio":
        ratios = cm.validate_ratios(ratios)
    out = Path(out_dir)
    scan = cm.scan_parts(raw)
    candidates, skipped = _candidates(raw, scan)
    splits, unplaced = _split_ids(raw, candidates, split, ratios, seed)
    skipped.update(unplaced)

    state = {"size": size, "split": split, "ratios": list(ratios) if split == "ratio" else None, "seed": seed}
    out.mkdir(parents=True, exist_ok=True)
    _check_state(out, state)
    split_of = {k: s for s, ks in splits.items() for k in ks}
    tasks, done = _plan_tasks(raw, out, scan, split_of)
    n_workers = _resolve_workers(workers)
    print(
        f"prepare: {len(candidates)} ids, {len(done)} already done, {len(tasks)} to do, {n_workers} workers"
    )
    results = _run_tasks(tasks, size, n_workers)
    if hasattr(os, "sync"):
        os.sync()  # the per-id files, written without fsync, reach the disk before the summaries
    hists, notes = _collect(results, done, out, skipped)
    written = sorted(set(done) | set(hists))
    summary = _write_summaries(
        out, size, split, state, split_of, written, hists, skipped, notes, len(scan.ignored)
    )
    summary["seconds"] = round(time.perf_counter() - start, 3)
    summary["processed_now"] = len(hists)
    summary["workers"] = n_workers
    if skipped:
        print(f"prepare: skipped {len(skipped)} ids (reasons in {out / 'prepare_report.json'})")
    return summary


def _check_request(raw_dir: str | os.PathLike[str], size: int, split: str) -> Path:
    """The raw folder, after checking the size, the split method and, for ``official``, the mapping file."""
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    if split not in ("official", "ratio"):
        raise ValueError(f"unknown split method {split!r}; expected 'official' or 'ratio'")
    raw = cm.resolve_raw_dir(raw_dir)
    if split == "official" and not (raw / cm.MAPPING_FILE).is_file():
        raise FileNotFoundError(
            f"--split official needs the mapping file {raw / cm.MAPPING_FILE} "
            "(idx orig_idx orig_file); use --split ratio for data without it"
        )
    return raw


def _candidates(raw: Path, scan: Any) -> tuple[list[int], dict[int, str]]:
    """Ids with both an image and part masks, and the reason each other id is skipped."""
    image_ids = set(cm.list_image_ids(raw))
    if not image_ids and not scan.files:
        raise FacesegmError(
            f"empty dataset at {raw}: expected images {cm.IMAGE_DIR}/{{k}}.jpg and masks in {cm.MASK_DIR}/"
        )
    skipped: dict[int, str] = dict(scan.problems)
    for k in sorted(image_ids - set(scan.files) - set(scan.problems)):
        skipped[k] = "image without any mask file"
    for k in sorted(set(scan.files) - image_ids):
        skipped[k] = f"mask files without an image ({cm.IMAGE_DIR}/{k}.jpg missing)"
    candidates = sorted((image_ids & set(scan.files)) - set(skipped))
    if not candidates:
        raise FacesegmError(
            f"empty dataset at {raw}: no id has both an image and part masks ({len(skipped)} ids skipped)"
        )
    return candidates, skipped


def _plan_tasks(raw: Path, out: Path, scan: Any, split_of: dict[int, str]) -> tuple[list[Task], list[int]]:
    """One task per id still to prepare, and the ids whose files are already complete (resume)."""
    tasks, done = [], []
    for k in sorted(split_of):
        s = split_of[k]
        out_img, out_lab = out / s / "images" / f"{k}.jpg", out / s / "labels" / f"{k}.png"
        if _complete(out_img, b"\xff\xd9") and _complete(out_lab, b"IEND"):
            done.append(k)
            continue
        parts = tuple(sorted((p, str(f)) for p, f in scan.files[k].items()))
        notes = str(out / NOTES_DIR / f"{k}.json")
        tasks.append(Task(k, s, str(cm.image_path(raw, k)), parts, str(out_img), str(out_lab), notes))
    return tasks, done


def _collect(
    results: list[Any], done: list[int], out: Path, skipped: dict[int, str]
) -> tuple[dict[int, np.ndarray], dict[int, list[str]]]:
    """Label histograms and notes per id from this run's results and earlier runs' notes files.

    Failed ids are added to ``skipped`` with their error."""
    hists: dict[int, np.ndarray] = {}
    notes: dict[int, list[str]] = {}
    for k, _s, hist, id_notes, err in results:
        if err is not None:
            skipped[k] = err
        else:
            hists[k] = hist
            if id_notes:
                notes[k] = id_notes
    for k in done:
        nf = out / NOTES_DIR / f"{k}.json"
        if nf.is_file():
            notes[k] = json.loads(nf.read_text())
    return hists, notes


def _label_hist(path: Path) -> np.ndarray:
    from facesegm_utils.fileio import read_label_map

    lab = read_label_map(path)
    return np.bincount(lab.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES].astype(np.int64)


def split_items(prep_dir: str | os.PathLike[str], split: str) -> list[tuple[str, Path, Path]]:
    """``(id, image_path, label_path)`` of one split in manifest order (sorted by id), from
    ``PREP/manifest.csv``: the one reader of the manifest that :func:`prepare_dataset` writes."""
    prep = Path(prep_dir)
    if split not in cm.SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(cm.SPLITS)}")
    manifest = prep / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"prepared dataset manifest not found: {manifest} (expected the output of `facesegm prepare`)"
        )
    with manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"id", "split", "image", "label"} - set(reader.fieldnames or ())
        if missing:
            raise FacesegmError(f"{manifest} lacks the column(s) {', '.join(sorted(missing))}")
        items = [
            (row["id"], prep / row["image"], prep / row["label"]) for row in reader if row["split"] == split
        ]
    if not items:
        raise FacesegmError(f"split {split!r} of {prep} has no images (see {manifest})")
    return items


def _write_summaries(
    out: Path,
    size: int,
    split: str,
    state: dict[str, Any],
    split_of: dict[int, str],
    written: list[int],
    hists: dict[int, np.ndarray],
    skipped: dict[int, str],
    notes: dict[int, list[str]],
    n_ignored: int,
) -> dict[str, Any]:
    """Write manifest.csv, dataset.json and prepare_report.json from what is on disk."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "split", "image", "label"])
    counts = {s: 0 for s in cm.SPLITS}
    pixels = np.zeros(NUM_CLASSES, np.int64)
    presence = np.zeros(NUM_CLASSES, np.int64)
    for k in written:
        s = split_of[k]
        counts[s] += 1
        writer.writerow([k, s, f"{s}/images/{k}.jpg", f"{s}/labels/{k}.png"])
        if s == "train":
            h = hists[k] if k in hists else _label_hist(out / s / "labels" / f"{k}.png")
            pixels += h
            presence += h > 0
    atomic_write_text(out / "manifest.csv", buf.getvalue())
    total = int(pixels.sum())
    freq = (pixels / total).tolist() if total else [0.0] * NUM_CLASSES
    info = {
        "classes": list(CLASSES),
        "num_classes": NUM_CLASSES,
        "size": size,
        "split": split,
        "ratios": state["ratios"],
        "seed": state["seed"],
        "counts": counts,
        "class_pixel_frequency": [round(f, 10) for f in freq],
        "class_pixel_counts": pixels.tolist(),
        "class_presence": presence.tolist(),
    }
    atomic_write_json(out / "dataset.json", info)
    report = {
        "skipped": [{"id": k, "reason": skipped[k]} for k in sorted(skipped)],
        "resized_parts": [{"id": k, "notes": notes[k]} for k in sorted(notes)],
        "ignored_files": n_ignored,
    }
    atomic_write_json(out / "prepare_report.json", report)
    return {
        "out": str(out),
        "size": size,
        "split": split,
        "counts": counts,
        "skipped": len(skipped),
        "resized_parts": len(notes),
        "total": len(written),
    }


def _parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--ratios must be three numbers like 0.7,0.2,0.1, got {text!r}") from None
    return cm.validate_ratios(vals)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facesegm prepare``."""
    parser.add_argument("--raw", required=True, help="raw CelebAMask-HQ folder (or its parent)")
    parser.add_argument("--out", required=True, help="output folder for the prepared dataset")
    parser.add_argument("--size", type=int, default=512, help="output side length S (default 512)")
    parser.add_argument("--split", choices=("official", "ratio"), default="official", help="split method")
    parser.add_argument("--ratios", default="0.7,0.2,0.1", help="train,val,test ratios for --split ratio")
    parser.add_argument("--seed", type=int, default=0, help="seed of the ratio split")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm prepare``."""
    summary = prepare_dataset(
        args.raw,
        args.out,
        args.size,
        split=args.split,
        ratios=_parse_ratios(args.ratios),
        seed=args.seed,
        workers=args.workers,
    )
    print(json.dumps(summary, indent=2))
    return 0
