"""Flip test-time augmentation against none: mIoU, left/right confusion and time, same model and split.

Both settings go through the one prediction path (``evaluation.evaluate_model(..., tta=...)``), in
alternating rounds in one process (so a busy machine slows both alike); the time is the median over
the rounds, the scores are identical in every round::

    python benchmarks/bench_tta.py --model outputs/run/model.keras --data outputs/prepared --split test

The rule it informs (issue 18): flip becomes the default of ``evaluate`` and ``predict`` if it gains
at least 0.005 mIoU at no more than twice the time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _readme import machine, today, update_section  # noqa: E402

from facesegm_utils import evaluation, prediction  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="prepared dataset")
    parser.add_argument("--split", default="test")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--section", default="bench_tta")
    parser.add_argument("--note", default="", help="what the model is (one line for the README)")
    parser.add_argument("--out-json", default=None)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    net = prediction.load(args.model)
    reports: dict[str, dict] = {}
    seconds: dict[str, list[float]] = {t: [] for t in prediction.TTA_MODES}
    loads = []
    for _ in range(args.rounds):
        for tta in prediction.TTA_MODES:
            t0 = time.perf_counter()
            rep = evaluation.evaluate_model(net, args.data, args.split, args.batch_size, tta=tta)
            seconds[tta].append(time.perf_counter() - t0)
            if tta in reports and rep["confusion_matrix"] != reports[tta]["confusion_matrix"]:
                raise RuntimeError(f"tta={tta}: the scores differ between rounds")
            reports[tta] = rep
        loads.append(os.getloadavg()[0])
    rows = []
    for tta, rep in reports.items():
        lr = rep["left_right_confusion"]
        rows.append(
            {
                "tta": tta,
                "mean_iou": rep["mean_iou"],
                "pixel_accuracy": rep["pixel_accuracy"],
                "left_right_confusion": lr["rate"],
                "parts": lr["parts"],
                "seconds": statistics.median(seconds[tta]),
                "ms_per_image": 1000 * statistics.median(seconds[tta]) / rep["num_images"],
            }
        )
    none, flip = rows
    gain, cost = flip["mean_iou"] - none["mean_iou"], flip["seconds"] / none["seconds"]
    command = "python benchmarks/bench_tta.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        "## bench_tta: flip test-time augmentation against none",
        "",
        f"- machine: {machine()}; date: {today()}; load average while it ran: "
        f"{min(loads):.1f} to {max(loads):.1f} (a shared machine: the time ratio is the figure to read)",
        f"- command: `{command}`",
        f"- model: {args.note or args.model}; split `{args.split}`, {reports['none']['num_images']} images; "
        f"time: median of {args.rounds} alternating rounds of the whole split (reading included)",
        "",
        "| TTA | mIoU | pixel accuracy | left/right confusion | eyes | brows | ears | ms/image |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.2f}%"

    for r in rows:
        parts = " | ".join(pct(v) for v in r["parts"].values())
        lines.append(
            f"| {r['tta']} | {r['mean_iou']:.4f} | {pct(r['pixel_accuracy'])} | {pct(r['left_right_confusion'])} "
            f"| {parts} | {r['ms_per_image']:.1f} |"
        )
    verdict = "meets" if gain >= 0.005 and cost <= 2 else "does not meet"
    lines += [
        "",
        f"flip − none: **{gain:+.4f} mIoU** at **{cost:.2f}x** the time; this {verdict} the rule for "
        "making flip the default of `evaluate` and `predict` (≥ 0.005 mIoU at ≤ 2x the time).",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if args.out_json:
        Path(args.out_json).write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    if not args.no_readme:
        update_section(args.section, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
