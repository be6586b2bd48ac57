"""Benchmark ``facesegm prepare`` and the tf.data pipeline.

1. Prepare throughput (images/s): :func:`facesegm_utils.prepare.prepare_dataset` on all cores
   against a one-process straightforward loop (the image decoded at full size, every part read
   with ``cv2.imread`` as one channel, merged at mask size, then resized and written), on the
   same raw data, side by side in one run (best of 2 each). The raw data has the real archive's
   sizes: synthetic faces written at 1024x1024 with 512x512 part masks (``synth --mask-size``).
   A second baseline reads the masks in colour (3 channels), as a naive loop would.
2. tf.data throughput (images/s delivered, training=True with augmentation) against the training
   step rate of the default U-Net (``model.build_unet(S)``, sparse categorical cross-entropy) at
   256 and 512.

Run: ``.venv/bin/python benchmarks/bench_prepare.py [--count 300] [--size 256]``; it rewrites
the ``bench_prepare`` section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facesegm_utils import celebamask as cm
from facesegm_utils import synthetic
from facesegm_utils.labels import NUM_CLASSES, PART_ORDER
from facesegm_utils.prepare import prepare_dataset


def make_raw(root: Path, count: int) -> Path:
    """Synthetic faces like the real archive: 1024x1024 JPEGs, 512x512 part masks."""
    return synthetic.write_dataset(root, count=count, size=1024, mask_size=512, seed=0, workers=2)


def straightforward_prepare(raw: Path, out: Path, size: int, first_channel: bool = True) -> int:
    """The baseline: one process, full-size decodes, masks merged at 512, then resized.

    Masks are read as one channel (``first_channel``, the baseline the target is set against) or
    in colour, a part being any non-zero pixel in any channel.
    """
    cv2.setNumThreads(1)
    parts = cm.part_files(raw)
    pixels = np.zeros(NUM_CLASSES, np.int64)
    for k, files in parts.items():
        img = cv2.imread(str(raw / cm.IMAGE_DIR / f"{k}.jpg"), cv2.IMREAD_COLOR)
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        label = None
        for i, name in enumerate(PART_ORDER):
            if name in files:
                if first_channel:
                    mask = cv2.imread(str(files[name]), cv2.IMREAD_GRAYSCALE)
                else:
                    mask = np.any(cv2.imread(str(files[name]), cv2.IMREAD_COLOR) != 0, axis=-1)
                if label is None:
                    label = np.zeros(mask.shape[:2], np.uint8)
                label[mask != 0] = i + 1
        label = cv2.resize(label, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
        pixels += np.bincount(label.ravel(), minlength=NUM_CLASSES)
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "labels").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / "images" / f"{k}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(out / "labels" / f"{k}.png"), label)
    return len(parts)


def bench_prepare(raw: Path, work: Path, size: int, repeats: int = 2) -> dict[str, float]:
    """Best-of-``repeats`` images/s of each variant, the variants interleaved in every round."""
    n = len(cm.list_image_ids(raw))

    def baseline(out: Path) -> None:
        straightforward_prepare(raw, out, size)

    def colour(out: Path) -> None:
        straightforward_prepare(raw, out, size, first_channel=False)

    def fast(out: Path) -> None:
        assert prepare_dataset(raw, out, size, split="official", workers=None)["total"] == n

    def fast1(out: Path) -> None:
        prepare_dataset(raw, out, size, split="official", workers=1)

    variants = {"baseline": baseline, "prepare": fast, "baseline_colour": colour, "prepare_1": fast1}
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(repeats):
        for name, run in variants.items():
            t = time.perf_counter()
            run(work / f"{name}{r}")
            rates[name].append(n / (time.perf_counter() - t))
    for k in cm.list_image_ids(raw):  # same labels as the straightforward merge at mask size
        a = cv2.imread(str(work / "baseline0" / "labels" / f"{k}.png"), cv2.IMREAD_UNCHANGED)
        b = next((work / "prepare0").glob(f"*/labels/{k}.png"))
        assert np.array_equal(a, cv2.imread(str(b), cv2.IMREAD_UNCHANGED)), k
    from facesegm_utils.prepare import _resolve_workers

    best = {k: max(v) for k, v in rates.items()}
    return {"n": n, "workers": _resolve_workers(None), **best}


def bench_tfdata(prep: Path, size: int, images: int) -> float:
    """Images/s delivered by make_dataset(training=True) (default augmentation), batch 8."""
    from facesegm_utils.pipeline import make_dataset

    ds = make_dataset(prep, "train", 8, training=True, repeat=True)
    it = iter(ds)
    next(it)  # trace + warm up
    t = time.perf_counter()
    seen = 0
    while seen < images:
        seen += int(next(it)[0].shape[0])
    return seen / (time.perf_counter() - t)


def bench_train_step(size: int, batch: int, steps: int) -> float:
    """Images/s of train_on_batch for the default U-Net on random data."""
    import keras

    from facesegm_utils.model import build_unet

    model = build_unet(size)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, (batch, size, size)).astype(np.int32)
    model.train_on_batch(x, y)
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return batch * steps / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600, help="raw faces (default 600)")
    parser.add_argument("--size", type=int, default=256, help="prepare output size (default 256)")
    parser.add_argument("--tf-count", type=int, default=64, help="images prepared for the tf.data runs")
    parser.add_argument("--no-readme", action="store_true", help="print only, do not update the README")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        raw = make_raw(work / "raw", args.count)
        p = bench_prepare(raw, work, args.size)
        ratio = p["prepare"] / p["baseline"]
        print(
            f"prepare: baseline {p['baseline']:.1f} img/s, prepare_dataset {p['prepare']:.1f} img/s, {ratio:.2f}x"
        )
        rows = []
        for s, steps in ((256, 3), (512, 2)):
            prep = work / f"prep{s}"
            prepare_dataset(raw, prep, s, split="ratio", ratios=(0.9, 0.05, 0.05), workers=None)
            tf_rate = bench_tfdata(prep, s, args.tf_count * 2)
            train_rate = bench_train_step(s, 4, steps)
            rows.append((s, tf_rate, train_rate))
            print(f"S={s}: tf.data {tf_rate:.1f} img/s, train step {train_rate:.2f} img/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from _readme import machine, today, update_section

    md = [
        "## bench_prepare",
        "",
        f"Machine: {machine()}. Date: {today()}.",
        f"Command: `.venv/bin/python benchmarks/bench_prepare.py --count {args.count} --size {args.size}`",
        "",
        f"Raw data: {p['n']} synthetic faces at the archive's sizes, 1024x1024 JPEGs and 512x512 "
        f"one-channel part masks (`write_dataset(size=1024, mask_size=512)`). Output S={args.size}. "
        "Best of 2 rounds, each running the four variants one after the other. The labels of the "
        f"first two are checked equal. Load average when it ran: {os.getloadavg()[0]:.1f} (a shared "
        "machine: absolute rates are noisy, the interleaved ratios less so).",
        "",
        "| prepare | images/s | ratio |",
        "|---|---:|---:|",
        f"| straightforward loop (1 process, full JPEG decode, masks read as one channel) "
        f"| {p['baseline']:.1f} | 1.00 |",
        f"| `prepare_dataset` ({p['workers']} workers: reduced JPEG decode, libdeflate mask decode, "
        f"masks sampled to S) | {p['prepare']:.1f} | **{ratio:.2f}** (target 3) |",
        f"| straightforward loop, masks read in colour | {p['baseline_colour']:.1f} "
        f"| {p['baseline_colour'] / p['baseline']:.2f} |",
        f"| `prepare_dataset`, 1 worker (decode path alone) | {p['prepare_1']:.1f} "
        f"| {p['prepare_1'] / p['baseline']:.2f} |",
        "",
        "| S | tf.data, training=True + augmentation (images/s, batch 8) | U-Net train step (images/s, batch 4) "
        "| input headroom |",
        "|---:|---:|---:|---:|",
    ]
    md += [f"| {s} | {a:.1f} | {b:.2f} | {a / b:.0f}x |" for s, a, b in rows]
    md += ["", "On this CPU the input pipeline is far faster than the training step, so it never starves it."]
    text = "\n".join(md)
    print(text)
    if not args.no_readme:
        update_section("bench_prepare", text)


if __name__ == "__main__":
    main()
