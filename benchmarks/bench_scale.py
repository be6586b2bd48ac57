"""Input memory at the real archive's sizes: peak RSS of one training epoch against the dataset size.

Synthetic faces are written like CelebAMask-HQ (1024x1024 JPEGs, 512x512 part masks) and prepared
at 512x512. For each dataset size and each input variant, a fresh process builds
``make_dataset(..., training=True)`` (shuffle + augmentation, batch 8) and reads two full epochs
(the first fills the cache); its peak resident memory (``ru_maxrss``) is recorded. The marginal
memory per face is the slope between the two sizes, extrapolated to the 24,183 faces of the
official training split. The bounded variants use a wide spread of sizes (default 400 and 2,000
faces: their slope, ~0.1 MB a face, is small against the run-to-run noise of a TensorFlow
process), the decoded baseline a narrow one (200 and 800: it takes 4 MB a face). Variants:

- ``memory``: the default, a memory cache of the prepared files' encoded bytes;
- ``none``: no cache, file names shuffled, files reread every epoch;
- ``disk``: the removed ``cache=disk`` mode, for comparison: the encoded records cached in a file,
  then shuffled as records (so the shuffle buffer held every encoded face in memory);
- ``decoded``: the earlier pipeline, for comparison: decode, then cache float32 images and int32
  labels in memory, then a 2,048-element shuffle buffer of decoded faces.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--sizes 400 2000] [--work DIR]``; it rewrites the
``bench_scale`` section of benchmarks/README.md. ``--work`` keeps the generated faces for reruns.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

OFFICIAL_TRAIN = 24_183
TARGET_MB_PER_FACE = 0.2
VARIANTS = ("memory", "none", "disk", "decoded")


def _augment_and_batch(ds, batch: int, seed: int):
    """Paired augmentation from a seeded random stream, as ``make_dataset(training=True)`` does, then batches."""
    import tensorflow as tf

    from facesegm_utils import pipeline as pl

    rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    cfg = pl.AugmentConfig()
    ds = tf.data.Dataset.zip((ds, rand)).map(
        lambda p, r: pl.augment_pair(p[0], p[1], tf.stack([r, tf.constant(seed, tf.int64)]), cfg),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def _decoded_cache_dataset(prep: Path, batch: int, seed: int = 0):
    """The earlier pipeline: decode first, cache decoded tensors, shuffle 2,048 decoded faces."""
    import tensorflow as tf

    from facesegm_utils import pipeline as pl
    from facesegm_utils.prepare import split_items

    size = int(pl.read_dataset_info(prep)["size"])
    items = split_items(prep, "train")
    images, labels = [str(i[1]) for i in items], [str(i[2]) for i in items]
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).map(pl._read_record)
    ds = ds.map(pl._decoder(size, None), num_parallel_calls=tf.data.AUTOTUNE).cache()
    ds = ds.shuffle(min(len(images), 2048), seed=seed, reshuffle_each_iteration=True)
    return _augment_and_batch(ds, batch, seed)


def _disk_cache_dataset(prep: Path, batch: int, cache_file: Path, seed: int = 0):
    """The removed ``cache=disk``: encoded records cached in a file, then shuffled as records."""
    import tensorflow as tf

    from facesegm_utils import pipeline as pl
    from facesegm_utils.prepare import split_items

    size = int(pl.read_dataset_info(prep)["size"])
    items = split_items(prep, "train")
    images, labels = [str(i[1]) for i in items], [str(i[2]) for i in items]
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).map(pl._read_record).cache(str(cache_file))
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(pl._decoder(size, None), num_parallel_calls=tf.data.AUTOTUNE)
    return _augment_and_batch(ds, batch, seed)


def child(prep: Path, variant: str, batch: int, epochs: int) -> dict[str, float]:
    """Run in a fresh process: peak RSS (MB) after ``epochs`` full epochs, and the RSS before."""
    import tensorflow as tf

    from facesegm_utils import pipeline as pl

    tf.constant(0)  # start the runtime, so the baseline includes it
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if variant == "decoded":
        ds = _decoded_cache_dataset(prep, batch)
    elif variant == "disk":
        cache = Path(tempfile.mkdtemp(prefix="bench_scale_disk_"))
        ds = _disk_cache_dataset(prep, batch, cache / "train.tfcache")
    else:
        ds = pl.make_dataset(prep, "train", batch, training=True, cache=variant)
    t = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for x, _y in ds:
            n += int(x.shape[0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if variant == "disk":
        shutil.rmtree(cache, ignore_errors=True)
    return {"rss_before_mb": before, "peak_mb": peak, "images": n, "seconds": time.perf_counter() - t}


def make_raw(raw: Path, count: int) -> float:
    """Write ``count`` faces at 1024x1024 with 512x512 masks (if not there yet); return seconds."""
    from facesegm_utils import synthetic

    have = len(list((raw / "CelebA-HQ-img").glob("*.jpg"))) if raw.is_dir() else 0
    t = time.perf_counter()
    if have < count:
        synthetic.write_dataset(
            raw, count=count - have, size=1024, seed=0, start=have, workers=2, mask_size=512
        )
    return time.perf_counter() - t


def subset(prep: Path, n: int, dest: Path) -> Path:
    """A prepared folder whose train split is the first ``n`` faces of ``prep`` (absolute paths)."""
    dest.mkdir(parents=True, exist_ok=True)
    with (prep / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "train"][:n]
    if len(rows) < n:
        raise SystemExit(f"{prep} holds only {len(rows)} train faces, {n} asked for")
    lines = ["id,split,image,label"] + [
        f"{r['id']},train,{prep / r['image']},{prep / r['label']}" for r in rows
    ]
    (dest / "manifest.csv").write_text("\n".join(lines) + "\n")
    shutil.copy(prep / "dataset.json", dest / "dataset.json")
    return dest


def encoded_mb_per_face(prep: Path, n: int) -> float:
    with (prep / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "train"][:n]
    total = sum(Path(r["image"]).stat().st_size + Path(r["label"]).stat().st_size for r in rows)
    return total / len(rows) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[400, 2000], help="two train set sizes")
    parser.add_argument(
        "--baseline-sizes", type=int, nargs=2, default=[200, 800], help="sizes for the decoded baseline"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--epochs", type=int, default=2, help="full epochs read per process (default 2)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--work", default=None, help="folder for the faces (kept); default: a temp folder")
    parser.add_argument("--no-readme", action="store_true", help="print only, do not update the README")
    parser.add_argument("--child", nargs=2, metavar=("PREP", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1], args.batch_size, args.epochs)))
        return
    from facesegm_utils.prepare import prepare_dataset

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_scale_"))
    small, big = sorted(args.sizes)
    try:
        gen_s = make_raw(work / "raw", max(big, *args.baseline_sizes))
        t = time.perf_counter()
        prep = work / "prep512"
        prepare_dataset(work / "raw", prep, 512, split="ratio", ratios=(1.0, 0.0, 0.0), workers=None)
        prep_s = time.perf_counter() - t
        results: dict[str, dict[int, dict[str, float]]] = {}
        for variant in args.variants:
            for n in sorted(args.baseline_sizes) if variant == "decoded" else (small, big):
                sub = subset(prep, n, work / f"sub{n}")
                cmd = [sys.executable, __file__, "--child", str(sub), variant]
                cmd += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                results.setdefault(variant, {})[n] = json.loads(out.strip().splitlines()[-1])
                r = results[variant][n]
                print(
                    f"{variant:>8} n={n}: peak {r['peak_mb']:.0f} MB ({r['images']} images, {r['seconds']:.0f} s)"
                )
        enc = encoded_mb_per_face(subset(prep, big, work / f"sub{big}"), big)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    write_report(args, results, small, big, enc, gen_s, prep_s)


def write_report(args, results, small: int, big: int, enc: float, gen_s: float, prep_s: float) -> None:
    from _readme import machine, today, update_section

    bs = sorted(args.baseline_sizes)
    md = [
        "## bench_scale: input memory against dataset size",
        "",
        f"Machine: {machine()}. Date: {today()}.",
        f"Command: `.venv/bin/python benchmarks/bench_scale.py --sizes {small} {big} "
        f"--baseline-sizes {bs[0]} {bs[1]}{' --work DIR' if args.work else ''}`",
        "",
        f"Raw data: {max(big, bs[1])} synthetic faces written like the real archive (1024x1024 JPEGs, "
        f"512x512 part masks; {f'generated in {gen_s:.0f} s' if gen_s >= 1 else 'reused from --work'}), "
        "prepared at 512x512 "
        f"({prep_s:.0f} s). Encoded size of a prepared face (JPEG + PNG): {enc:.3f} MB. Each row is two "
        f"fresh processes, one per dataset size, each reading {args.epochs} full epochs of "
        f"`make_dataset(training=True)` (shuffle, augmentation, batch {args.batch_size}); memory is the "
        "process's peak RSS, TensorFlow runtime included.",
        "",
        f"| input | faces | peak RSS | marginal MB/face | extrapolated to {OFFICIAL_TRAIN:,} faces |",
        "|---|---:|---:|---:|---:|",
    ]
    names = {
        "memory": "`cache=memory` (training's default): encoded bytes cached, records shuffled",
        "none": "`cache=none`: file names shuffled, files reread",
        "disk": "removed `cache=disk`: encoded bytes cached in a file, records shuffled",
        "decoded": "earlier pipeline: decoded float32/int32 cached, 2,048 decoded faces shuffled",
    }
    slopes = {}
    for variant, by_n in results.items():
        (n0, r0), (n1, r1) = sorted(by_n.items())
        slope = (r1["peak_mb"] - r0["peak_mb"]) / (n1 - n0)
        slopes[variant] = slope
        total = r1["peak_mb"] + slope * (OFFICIAL_TRAIN - n1)
        md.append(
            f"| {names[variant]} | {n0} / {n1} | {r0['peak_mb']:.0f} / {r1['peak_mb']:.0f} MB "
            f"| {slope:.3f} | {total / 1024:.1f} GB |"
        )
    if "memory" in slopes:
        ok = "meets" if slopes["memory"] <= TARGET_MB_PER_FACE else "misses"
        md += [
            "",
            f"The default training input {ok} the target of at most {TARGET_MB_PER_FACE} MB per face "
            f"({slopes['memory']:.3f} MB/face measured; a face's encoded files are {enc:.3f} MB). "
            "The extrapolation adds the marginal cost of the remaining faces to the measured peak at the "
            "larger size; the TensorFlow runtime and the prefetch buffers in that peak do not grow with "
            "the dataset.",
        ]
    if {"memory", "none", "disk"} <= set(slopes):
        md += [
            "",
            f"`cache=none` grows by {slopes['none']:.3f} MB a face (flat, within noise): its shuffle holds "
            f"file names. The removed `cache=disk` grew by {slopes['disk']:.3f} MB a face against "
            f"{slopes['memory']:.3f} for `memory`: its shuffle buffer held every encoded record in memory "
            "after the file cache, so it saved no host memory, and it was removed rather than kept as a "
            "false promise.",
        ]
    text = "\n".join(md)
    print(text)
    if not args.no_readme:
        update_section("bench_scale", text)


if __name__ == "__main__":
    main()
