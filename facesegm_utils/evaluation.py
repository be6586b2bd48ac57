"""``facesegm evaluate``: dataset-level scores of a model, or of a folder of predicted label maps.

Every pixel of the split goes into ONE :class:`~facesegm_utils.metrics.ConfusionMatrix`, so
memory does not grow with the number of images, and the figures are the dataset-level ones the
literature reports (not a mean of per-batch numbers). The report is a JSON file plus a Markdown
table next to it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from facesegm_utils import prediction
from facesegm_utils.celebamask import SPLITS
from facesegm_utils.fileio import (
    FacesegmError,
    atomic_write_json,
    atomic_write_text,
    read_label_map,
    read_rgb,
)
from facesegm_utils.labels import CLASSES, DISPLAY_NAMES, NUM_CLASSES
from facesegm_utils.metrics import ConfusionMatrix, image_scores
from facesegm_utils.prepare import split_items

SUMMARY_KEYS = ("pixel_accuracy", "mean_iou", "mean_iou_no_bg", "mean_f1_fg")


def _batches(items: Sequence[tuple[str, Path, Path]], batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """Read image/label batches on a small thread pool, one batch ahead of the caller."""

    def load(chunk: Sequence[tuple[str, Path, Path]]) -> list[tuple[Any, ...]]:
        return list(pool.map(lambda it: (it[0], read_rgb(it[1]), read_label_map(it[2])), chunk))

    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max_workers=4) as pool, ThreadPoolExecutor(max_workers=1) as ahead:
        pending: Future[list[tuple[Any, ...]]] | None = ahead.submit(load, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            assert pending is not None
            batch = pending.result()
            pending = ahead.submit(load, chunks[k + 1]) if k + 1 < len(chunks) else None
            yield batch


def _finish(
    cm: ConfusionMatrix,
    *,
    split: str,
    prep_dir: Path,
    source: dict[str, Any],
    num_images: int,
    per_image: list[dict[str, Any]] | None,
    out: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    body = cm.report(CLASSES)
    report: dict[str, Any] = {
        "split": split,
        "prepared_dir": str(prep_dir),
        "source": source,
        "num_images": int(num_images),
    }
    report.update(body)
    if per_image is not None:
        report["per_image"] = per_image
    if out is not None:
        write_report(report, out)
    return report


def iter_predictions(
    model: str | os.PathLike[str] | Any,
    prep_dir: str | os.PathLike[str],
    split: str = "test",
    batch_size: int = 8,
    limit: int | None = None,
    tta: str = "none",
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Stream ``(id, truth, prediction)`` over a split: the arg-max of
    :func:`facesegm_utils.prediction.predict_proba` at the image's own size (the label's size).

    Images are read a batch ahead on a thread pool; nothing is kept, so memory stays flat. A short
    last batch is padded with copies of its last image, so that the model runs at one batch shape:
    another shape retraces its graph (about a second), and TensorFlow warns when several models
    evaluated in one process retrace often (the comparisons of notebook 04).
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    items = split_items(prep_dir, split)
    if limit is not None:
        items = items[: int(limit)]
    net = prediction.load(model)
    for batch in _batches(items, batch_size):
        ids, images, labels = zip(*batch, strict=True)
        pad = batch_size - len(images) if len(items) > batch_size else 0
        preds = prediction.predict_labels(net, [*images, *[images[-1]] * pad], tta=tta)[: len(images)]
        for key, lb, pred in zip(ids, labels, preds, strict=True):
            if pred.shape != lb.shape:  # a label map stored at another size than its image
                pred = cv2.resize(pred, lb.shape[::-1], interpolation=cv2.INTER_NEAREST)
            yield key, lb, pred


def image_confusion_matrices(
    model: str | os.PathLike[str] | Any,
    prep_dir: str | os.PathLike[str],
    split: str = "test",
    batch_size: int = 8,
    limit: int | None = None,
    tta: str = "none",
) -> tuple[list[str], np.ndarray]:
    """One confusion matrix per image, ``(ids, matrices (N, 19, 19) int64)``, in manifest order.

    Their sum is the dataset-level matrix; summing consecutive groups gives any batch's matrix, which
    is how the course compares dataset-level with per-batch-mean figures (1.4 KB per image).
    """
    ids: list[str] = []
    mats: list[np.ndarray] = []
    n = len(split_items(prep_dir, split)) if limit is None else int(limit)
    for key, truth, pred in tqdm(
        iter_predictions(model, prep_dir, split, batch_size, limit, tta),
        total=n,
        desc=f"predict {split}",
        unit="img",
    ):
        ids.append(key)
        mats.append(ConfusionMatrix(NUM_CLASSES).update(truth, pred).matrix)
    return ids, np.stack(mats)


def evaluate_model(
    model_path: str | os.PathLike[str] | Any,
    prep_dir: str | os.PathLike[str],
    split: str = "test",
    batch_size: int = 8,
    out: str | os.PathLike[str] | None = None,
    per_image: bool = False,
    limit: int | None = None,
    tta: str = prediction.OFFLINE_TTA,
) -> dict[str, Any]:
    """Score a saved ``.keras`` model (or a loaded Keras model) on one split of a prepared dataset.

    Predictions come from the package's one prediction path
    (:func:`facesegm_utils.prediction.predict_proba`): images are resized to the model's input size
    and the class probabilities upsampled bilinearly back to the image's size, as ``facesegm predict``
    does, so both give the same score.
    With ``per_image=True`` the report also lists each image's pixel accuracy and mIoU (for
    best/worst examples). ``limit`` evaluates only the first N images of the split. ``tta`` is the
    test-time augmentation (recorded in the report's ``source``). Writes ``out`` (JSON) and the
    Markdown table next to it if given.
    """
    prediction.check_tta(tta)
    prep = Path(prep_dir)
    total = len(split_items(prep, split))  # fails fast on a bad folder or split, before loading the model
    n = total if limit is None else min(int(limit), total)
    net = prediction.load(model_path)
    cm = ConfusionMatrix(NUM_CLASSES)
    rows: list[dict[str, Any]] | None = [] if per_image else None
    count = 0
    for key, truth, pred in tqdm(
        iter_predictions(net, prep, split, batch_size, limit, tta),
        total=n,
        desc=f"evaluate {split}",
        unit="img",
    ):
        cm.update(truth, pred)
        count += 1
        if rows is not None:
            rows.append({"id": key, **image_scores(truth, pred)})
    size = prediction.input_size(net)
    source = {
        "kind": "model",
        "path": None if hasattr(model_path, "predict_on_batch") else str(model_path),
        "input_size": [size, size],
        "tta": tta,
    }
    return _finish(cm, split=split, prep_dir=prep, source=source, num_images=count, per_image=rows, out=out)


def evaluate_predictions(
    pred_dir: str | os.PathLike[str],
    prep_dir: str | os.PathLike[str],
    split: str = "test",
    out: str | os.PathLike[str] | None = None,
    per_image: bool = False,
) -> dict[str, Any]:
    """Score predicted label PNGs ``PRED_DIR/{id}.png`` (uint8 class ids, from any model) on a split.

    A prediction whose size differs from the label is resized nearest-neighbour. Missing
    predictions are an error naming the missing ids.
    """
    pred = Path(pred_dir)
    if not pred.is_dir():
        raise NotADirectoryError(f"prediction folder not found: {pred}")
    prep = Path(prep_dir)
    items = split_items(prep, split)
    missing = [key for key, _, _ in items if not (pred / f"{key}.png").is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise FacesegmError(
            f"{len(missing)} of {len(items)} predictions missing in {pred} for split {split!r}: "
            f"ids {shown} (expected one {{id}}.png per image)"
        )
    cm = ConfusionMatrix(NUM_CLASSES)
    rows: list[dict[str, Any]] | None = [] if per_image else None
    for key, _, label_path in tqdm(items, desc=f"evaluate {split}", unit="img"):
        truth = read_label_map(label_path)
        p = read_label_map(pred / f"{key}.png")
        if p.shape != truth.shape:
            p = cv2.resize(p, truth.shape[::-1], interpolation=cv2.INTER_NEAREST)
        cm.update(truth, p)
        if rows is not None:
            rows.append({"id": key, **image_scores(truth, p)})
    source = {"kind": "predictions", "path": str(pred)}
    return _finish(
        cm, split=split, prep_dir=prep, source=source, num_images=len(items), per_image=rows, out=out
    )


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def report_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the summary figures, then a per-class table (percentages)."""
    src = report.get("source", {})
    lr = report.get("left_right_confusion") or {}
    lr_parts = ", ".join(f"{k} {_pct(v)}" for k, v in (lr.get("parts") or {}).items())
    lines = [
        f"# Evaluation on the `{report.get('split')}` split ({report.get('num_images')} images)",
        "",
        f"Source: {src.get('kind', '?')} `{src.get('path')}`; prepared data `{report.get('prepared_dir')}`.",
        "Dataset-level figures: one confusion matrix over every pixel of the split. "
        f"Test-time augmentation: {src.get('tta', 'none (predictions given)')}.",
        "",
        "| Metric | Value (%) |",
        "|---|---:|",
        f"| Pixel accuracy | {_pct(report['pixel_accuracy'])} |",
        f"| Mean IoU (19 classes, absent ones left out) | {_pct(report['mean_iou'])} |",
        f"| Mean IoU without background | {_pct(report['mean_iou_no_bg'])} |",
        f"| Mean F1, foreground (FaRL/SegFace convention) | {_pct(report['mean_f1_fg'])} |",
        f"| Left/right confusion: sided pixels given the mirror class ({lr_parts}) | {_pct(lr.get('rate'))} |",
        "",
        "| Class | IoU (%) | F1 (%) | Support (pixels) | Share of pixels (%) |",
        "|---|---:|---:|---:|---:|",
    ]
    total = max(1, sum(int(v["support"]) for v in report["per_class"].values()))
    for name, v in report["per_class"].items():
        iou = "absent" if v.get("absent") else _pct(v["iou"])
        f1 = "absent" if v.get("absent") else _pct(v["f1"])
        share = f"{100 * int(v['support']) / total:.2f}"
        lines.append(f"| {DISPLAY_NAMES.get(name, name)} | {iou} | {f1} | {int(v['support'])} | {share} |")
    if report.get("absent_classes"):
        lines += ["", f"Absent from truth and prediction: {', '.join(report['absent_classes'])}."]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    """Write ``out`` (.json) and the Markdown table next to it (.md), both atomically."""
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise ValueError(f"report path must end in .json, got {out}")
    atomic_write_json(out, report)
    atomic_write_text(out.with_suffix(".md"), report_markdown(report))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facesegm evaluate``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a trained model (RUN/model.keras)")
    src.add_argument("--pred-dir", help="a folder of predicted label maps {id}.png (uint8 class ids)")
    parser.add_argument(
        "--data", required=True, help="prepared dataset folder (output of `facesegm prepare`)"
    )
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to score (default: test)")
    parser.add_argument(
        "--out", default=None, help="report path REPORT.json (a REPORT.md is written next to it)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="images per model call (default: 8)")
    parser.add_argument("--per-image", action="store_true", help="also list every image's accuracy and mIoU")
    prediction.add_tta_argument(parser)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm evaluate``."""
    if args.model is not None:
        report = evaluate_model(
            args.model,
            args.data,
            args.split,
            args.batch_size,
            out=args.out,
            per_image=args.per_image,
            tta=args.tta,
        )
    else:
        report = evaluate_predictions(
            args.pred_dir, args.data, args.split, out=args.out, per_image=args.per_image
        )
    print(
        f"{report['split']}: {report['num_images']} images, "
        + ", ".join(f"{k}={_pct(report[k])}%" for k in SUMMARY_KEYS)
        + f", left_right_confusion={_pct(report['left_right_confusion']['rate'])}%"
        + f", tta={report['source'].get('tta', 'none')}"
    )
    if args.out is not None:
        print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
    return 0
