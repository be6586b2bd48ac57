"""Recolour speed: the default LAB method against the earlier HSV-plus-sharpen pipeline, one CPU core.

Both run on the SAME 512x512 synthetic face and label map, interleaved, in this process, with
OpenCV and BLAS limited to one thread and the process pinned to one core. Reported: the median ms
per frame of

* ``recolor()`` with a ready weight map (the recolouring itself; target <= 8 ms),
* ``part_weight() + recolor()`` from a label map (the whole per-frame step after the model),
* the earlier pipeline: full-frame HSV hue swap (and saturation for lips), whole-frame sharpening,
  hard paste of the part.

Second, the halo on MODEL masks (a trained model's probabilities as the soft mask): the mean colour
change (mean |RGB difference|, 0..255) outside the true part's mask dilated by 3 px, and inside the
true part, at strength 0.8, with today's raw probability mask against the refined one
(``recolor.refine_weight``: guided filter + confidence ramp), on synthetic 512x512 faces the model
never saw; and the ms per frame of both, side by side on one core.

Run: ``.venv/bin/python benchmarks/bench_recolor.py --model outputs/run/model.keras`` (a model from
``make course``; rewrites the ``bench_recolor`` section of benchmarks/README.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _readme import machine, pin_one_core, today, update_section  # noqa: E402

from facesegm_utils.celebamask import merge_parts  # noqa: E402
from facesegm_utils.labels import group_ids  # noqa: E402
from facesegm_utils.recolor import parse_color, part_classes, part_weight, recolor, refine_weight  # noqa: E402
from facesegm_utils.synthetic import generate_face  # noqa: E402

SHARPEN = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32)


def earlier_pipeline(image: np.ndarray, labels: np.ndarray, part: str, color: str) -> np.ndarray:
    """The earlier project's recolour: HSV hue swap (+ saturation for lips), sharpen, hard paste."""
    r, g, b = parse_color(color)
    th, ts, _ = cv2.cvtColor(np.array([[[r, g, b]]], np.uint8), cv2.COLOR_RGB2HSV)[0, 0]
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = th
    if part == "lips":
        hsv[..., 1] = ts
    swapped = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    sharp = cv2.filter2D(swapped, -1, SHARPEN)
    mask = np.isin(labels, group_ids(part)).astype(np.uint8)
    return cv2.copyTo(sharp, mask, image.copy())


def median_ms(fns: dict[str, Callable[[], object]], repeats: int, inner: int) -> dict[str, float]:
    """Median ms per call of each function, measured in interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t0) / inner * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def pick_face(size: int, dark: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """The first synthetic face with dark (or light) hair: image, label map, index."""
    hair_id = group_ids("hair")[0]
    for k in range(40):
        img, masks = generate_face(0, k, size)
        lbl = merge_parts(masks)
        hair = lbl == hair_id
        if hair.mean() < 0.05:
            continue
        light = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)[..., 0][hair].mean() / 2.55
        if (light < 35) == dark:
            return img, lbl, k
    raise RuntimeError("no suitable synthetic face in the first 40")


#: first face of the faces the refinement was tuned on, and of held-out faces (the course uses 0..399)
TUNED, HELD_OUT = 1000, 2000


def model_faces(parser, size: int, count: int, first: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image, true labels, model probabilities) of synthetic faces ``first..first+count-1``."""
    out = []
    for k in range(first, first + count):
        img, masks = generate_face(0, k, size)
        out.append((img, merge_parts(masks), parser.predict_proba(img)))
    return out


def halo(faces: list, part: str, color: str, refine: bool, strength: float = 0.8) -> tuple[float, float]:
    """Mean |RGB change| outside the true part dilated by 3 px, and inside the true part (means over faces)."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    outside, inside = [], []
    for img, lbl, proba in faces:
        true = np.isin(lbl, part_classes(part))
        near = cv2.dilate(true.astype(np.uint8), disk) > 0
        weight = part_weight(proba, part, image=img, refine=refine)
        out = recolor(img, weight, color, strength, saturation=(part == "lips"))
        change = np.abs(out.astype(np.int16) - img.astype(np.int16)).mean(axis=2)
        outside.append(change[~near].mean())
        inside.append(change[true].mean())
    return float(np.mean(outside)), float(np.mean(inside))


def describe_model(model: Path) -> str:
    """The model's path, plus its course profile and test mIoU when it sits in a course output."""
    summary = model.resolve().parent.parent / "course_summary.json"
    if not summary.is_file():
        return f"`{model}`"
    data = json.loads(summary.read_text())
    miou = data.get("metrics", {}).get("04_training", {}).get("test_miou")
    extra = f", test mIoU {miou:.2f}" if isinstance(miou, (int, float)) else ""
    return f"`{model}` (the `{data.get('profile', '?')}` profile's course model{extra})"


def model_mask_rows(args: argparse.Namespace) -> list[str]:
    """The halo and timing tables on model masks (README lines)."""
    from facesegm_utils.inference import FaceParser

    if not Path(args.model).is_file():
        raise SystemExit(f"no trained model at {args.model}: run `make course` first or pass --model PATH")
    parser = FaceParser(Path(args.model))
    faces = model_faces(parser, args.size, args.faces, TUNED)
    held_out = model_faces(parser, args.size, args.faces, HELD_OUT)
    lines = [
        "",
        f"### Halo on model masks ({args.size}x{args.size} synthetic faces the model never saw, strength 0.8)",
        "",
        f"Model: {describe_model(Path(args.model))}. Halo = mean colour change (mean |RGB difference|, 0..255) outside the true part "
        "dilated by 3 px; inside = the same inside the true part. Today = the raw probability mask; refined = "
        "`refine_weight` (guided filter on the photo's grey levels from OpenCV box filters, then the "
        "confidence ramp), the default of `part_weight` for probabilities with the photo. The ramp and "
        f"the radius were chosen on faces {TUNED}-{TUNED + args.faces - 1}; faces "
        f"{HELD_OUT}-{HELD_OUT + args.faces - 1} are held out.",
        "",
        "| part | faces | halo today | halo refined | refined ÷ today | inside today | inside refined "
        "| refined ÷ today |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    timing = [
        "",
        f"Time per {args.size}² frame on one core (face {TUNED}):",
        "",
        "| part | today: recolor | default: refine + recolor | of which refine "
        "| part map from the 19 probabilities (same for both) |",
        "|---|---:|---:|---:|---:|",
    ]
    img, _, proba = faces[0]
    for part, color in (("hair", "#d4a84b"), ("lips", "#b0204a")):
        for name, first, group in (("tuned on", TUNED, faces), ("held out", HELD_OUT, held_out)):
            h0, i0 = halo(group, part, color, refine=False)
            h1, i1 = halo(group, part, color, refine=True)
            print(f"{part} ({name}): halo {h0:.3f} -> {h1:.3f} ({h1 / h0:.2f}x), inside {i0:.2f} -> {i1:.2f}")
            lines.append(
                f"| {part} | {first}-{first + args.faces - 1} ({name}) | {h0:.3f} | {h1:.3f} | {h1 / h0:.2f}x "
                f"| {i0:.2f} | {i1:.2f} | {i1 / i0:.2f}x |"
            )
        raw = part_weight(proba, part, refine=False)
        ms = median_ms(
            {
                "today": lambda w=raw, c=color: recolor(img, w, c),
                "refined": lambda w=raw, c=color: recolor(img, refine_weight(w, img), c),
                "refine": lambda w=raw: refine_weight(w, img),
                "part map": lambda p=part: part_weight(proba, p, refine=False),
            },
            args.repeats,
            args.inner,
        )
        print(
            f"{part}: {ms['today']:.2f} -> {ms['refined']:.2f} ms (refine {ms['refine']:.2f} ms; part map "
            f"{ms['part map']:.2f} ms)"
        )
        timing.append(
            f"| {part} | {ms['today']:.2f} ms | {ms['refined']:.2f} ms | {ms['refine']:.2f} ms "
            f"| {ms['part map']:.2f} ms |"
        )
    lines += [
        *timing,
        "",
        "Targets (issue 11): halo at least halved, change inside within 10% of today's, the default under "
        "8 ms per 512² frame on one core. The recolour columns start from the part's probability map "
        "(what video smoothing and the UI cache); making that map from the (H, W, 19) probabilities is "
        "the same step for both and is timed on its own. Neither includes the model.",
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--inner", type=int, default=10)
    ap.add_argument("--no-readme", action="store_true", help="print only, do not rewrite the README section")
    ap.add_argument("--model", default="outputs/run/model.keras", help="trained model for the halo measure")
    ap.add_argument("--faces", type=int, default=8, help="unseen synthetic faces for the halo measure")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    pin_one_core()

    img, lbl, k = pick_face(args.size, dark=True)
    rows = []
    for part, color in (("hair", "#d4a84b"), ("lips", "#b0204a")):
        weight = part_weight(lbl, part)
        ys, xs = np.nonzero(weight)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) / weight.size
        res = median_ms(
            {
                "recolor": lambda w=weight, c=color: recolor(img, w, c),
                "weight+recolor": lambda p=part, c=color: recolor(img, part_weight(lbl, p), c),
                "earlier": lambda p=part, c=color: earlier_pipeline(img, lbl, p, c),
            },
            args.repeats,
            args.inner,
        )
        rows.append((part, box, res))
        print(
            f"{part}: box {box:.0%} of frame | recolor {res['recolor']:.2f} ms | weight+recolor "
            f"{res['weight+recolor']:.2f} ms | earlier {res['earlier']:.2f} ms"
        )

    model_lines = model_mask_rows(args)
    cmd = f"OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_recolor.py --model {args.model}"
    lines = [
        "## bench_recolor",
        "",
        f"Machine: {machine()}. Date: {today()}. One core (`cv2.setNumThreads(1)`, process pinned to one CPU).",
        f"Command: `{cmd}`",
        "",
        f"Frame: synthetic face {k} (dark hair), {args.size}x{args.size}, its label map; median of "
        f"{args.repeats} interleaved rounds of {args.inner} calls.",
        "",
        "| part | part's bounding box | default `recolor` (LAB) | `part_weight` + `recolor` "
        "| earlier HSV + sharpen + hard paste | earlier ÷ default (recolor) | earlier ÷ default (incl. weight) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for part, box, r in rows:
        lines.append(
            f"| {part} | {box:.0%} | {r['recolor']:.2f} ms | {r['weight+recolor']:.2f} ms | {r['earlier']:.2f} ms "
            f"| {r['earlier'] / r['recolor']:.2f}x | {r['earlier'] / r['weight+recolor']:.2f}x |"
        )
    lines += [
        "",
        "A ratio above 1 means the default is faster. The default method only touches the bounding box of "
        "the part, in uint8 LAB through OpenCV, with one 256-entry table for the lightness move and OpenCV's "
        "per-pixel blend for the soft edge; the earlier pipeline converts and sharpens the whole frame but "
        "pastes with a hard mask and no blend. So on a small part (lips) the default is faster, on hair, "
        "whose bounding box is nearly the whole frame, it is slower than the earlier pipeline, and both stay "
        "well under the 8 ms per 512x512 frame budget. Neither number includes the model.",
        f"Load average while it ran: {os.getloadavg()[0]:.1f} (a shared machine: absolute ms are noisy, the "
        "ratios of the interleaved runs less so).",
        *model_lines,
    ]
    if not args.no_readme:
        update_section("bench_recolor", "\n".join(lines))
        print("updated benchmarks/README.md")


if __name__ == "__main__":
    main()
