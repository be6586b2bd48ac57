"""Faces in wide frames: parsing with and without alignment, against the same faces as crops.

Synthetic faces the model never saw (seed 7) are pasted into 1280x720 frames on a plain grey
background at 30, 45 and 60% of the frame's height, turned by -20..20 degrees, with known truth.
Each face is parsed three ways with the same model through ``FaceParser``:

* **crop**: the face image itself, whole (``align="none"``), as the test set is scored;
* **frame, none**: the whole frame resized to the model (today's behaviour before alignment);
* **frame, auto**: MTCNN finds the face, the CelebA-HQ crop is parsed and pasted back (the default);
* **frame, true landmarks**: the same with the generator's own landmarks (alignment without
  detection error).

Reported: mIoU over all pixels (frames and crops each pooled into one confusion matrix), hair
IoU and upper/lower-lip IoU, the ratio to the crop mIoU, and the time of one 1280x720 frame split
into detection, the two warps (crop and paste back) and the parse, next to the whole-frame parse,
median of repeats, in this process on the CPU.

Then the video case (``--clip``): a face moving along a known path (translation + rotation) over
a clip; the crop transform is tracked by ``track.FaceTracker`` (detection every N frames,
landmarks carried by optical flow, smoothed) and by detection on every frame. Jitter = RMS
frame-to-frame change of the crop corners' error against the true path, in frame pixels.

Run: ``.venv/bin/python benchmarks/bench_wild.py --model outputs/run/model.keras`` (a model from
``make course``; rewrites the ``bench_wild`` section of benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _readme import machine, today, update_section  # noqa: E402

from facesegm_utils import align, detect, prediction, synthetic  # noqa: E402
from facesegm_utils.celebamask import merge_parts  # noqa: E402
from facesegm_utils.inference import FaceParser  # noqa: E402
from facesegm_utils.labels import CLASSES  # noqa: E402
from facesegm_utils.metrics import ConfusionMatrix  # noqa: E402

FRAME = (720, 1280)
HEIGHTS = (0.3, 0.45, 0.6)
ANGLES = (-20.0, -10.0, 0.0, 10.0, 20.0)
GREY = (128, 128, 128)


def scene(i: int, size: int, rng: np.random.Generator) -> tuple:
    """Face ``i`` of seed 7: its image, labels, and a 1280x720 frame holding it with its truth."""
    image, masks = synthetic.generate_face(7, i, size)
    labels, lm = merge_parts(masks), synthetic.face_landmarks(7, i, size)
    height, angle = HEIGHTS[i % len(HEIGHTS)], ANGLES[i % len(ANGLES)]
    half = height * FRAME[0] * 0.72  # the turned square's half extent
    centre = (rng.uniform(half, FRAME[1] - half), rng.uniform(half, FRAME[0] - half))
    frame, truth, marks = align.place_face(image, labels, lm, FRAME, height, angle, centre, GREY)
    return image, labels, frame, truth, marks


def accuracy(model: object, faces: int, size: int) -> tuple[dict[str, ConfusionMatrix], int]:
    rng = np.random.default_rng(0)
    auto, whole = FaceParser(model), FaceParser(model, align="none")
    names = ("crop", "frame, none", "frame, auto", "frame, true landmarks")
    cms = {k: ConfusionMatrix() for k in names + ("crop, found", "frame, auto, found")}
    found = 0
    for i in range(faces):
        image, labels, frame, truth, marks = scene(i, size, rng)
        crop = whole.predict_labels(image)
        aligned = auto.predict_labels(frame)
        cms["crop"].update(labels, crop)
        cms["frame, none"].update(truth, whole.predict_labels(frame))
        cms["frame, auto"].update(truth, aligned)
        true = align.parse_faces(auto.model, [frame], landmarks=[[marks]])[0]
        cms["frame, true landmarks"].update(truth, np.argmax(true, axis=2))
        if len(detect.detect_faces(image)) == 1:  # faces MTCNN finds in the crop itself
            found += 1
            cms["crop, found"].update(labels, crop)
            cms["frame, auto, found"].update(truth, aligned)
        print(f"face {i + 1}/{faces}", end="\r", file=sys.stderr)
    return cms, found


def timing(model: object, size: int, repeats: int) -> dict[str, float]:
    """Median ms of each step for one 1280x720 frame with one face (45% of its height)."""
    _, _, frame, _, _ = scene(1, size, np.random.default_rng(1))
    s = prediction.input_size(model)
    steps: dict[str, list[float]] = {k: [] for k in ("detect", "warps", "parse crop", "whole frame")}
    for _ in range(repeats + 1):  # the first round warms up
        t0 = time.perf_counter()
        (marks,) = align.find_landmarks(frame)[:1]
        t1 = time.perf_counter()
        m = align.crop_transform(marks, s)
        crop = align.warp_crop(frame, m, s)
        t2 = time.perf_counter()
        (p,) = prediction.predict_proba(model, [crop], s)
        t3 = time.perf_counter()
        align.combine(FRAME, [(p, m)])
        t4 = time.perf_counter()
        prediction.predict_proba(model, [frame], s)
        t5 = time.perf_counter()
        for k, v in zip(steps, (t1 - t0, (t2 - t1) + (t4 - t3), t3 - t2, t5 - t4), strict=True):
            steps[k].append(1000 * v)
    return {k: statistics.median(v[1:]) for k, v in steps.items()}


def moving_scene(n_frames: int, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A 1280x720 clip of face 1 (45% of the height) filmed by a camera circling 5% of the frame's
    width at 1% per frame (``clips.make_motion_clip``), and the true landmarks in every frame."""
    from facesegm_utils.clips import make_motion_clip

    _, _, frame, truth, marks = scene(1, size, np.random.default_rng(1))
    clip = make_motion_clip(frame, truth, n_frames=n_frames, speed=0.01, radius=0.05, edge_noise=0.0)
    true, cur = [], marks
    for step in clip.motion:
        cur = cur @ step[:, :2].T + step[:, 2]
        true.append(cur)
    return clip.frames, true


def jitter(n_frames: int, size: int, every: int) -> dict[str, dict[str, float]]:
    """Crop jitter and error (px) and detections: tracker vs MTCNN on every frame."""
    from facesegm_utils.track import FaceTracker, crop_jitter

    frames, true = moving_scene(n_frames, size)
    out = {}
    for name, tracker in ((f"tracked, detection every {every}", FaceTracker(every=every)),
                          ("detection on every frame", FaceTracker(every=1, correct=1.0))):  # fmt: skip
        t0 = time.perf_counter()
        found = [tracker.update(f)[0] for f in frames]
        ms = 1000 * (time.perf_counter() - t0) / len(frames)
        out[name] = {**crop_jitter(found, true), "detections": tracker.detections, "ms": ms}
    return out


def real_photo_framing() -> str:
    """Real faces: each photo a dependency ships, cut the CelebA-HQ way at 512², pasted into 1280x720
    frames at 30/45/60% of the height and turned -20..20 degrees; the crop from detecting it in the
    frame against the crop from its landmarks in its own crop carried into the frame."""
    import cv2
    import matplotlib.cbook

    from facesegm_utils.fileio import read_rgb

    photos = {
        "matplotlib's Grace Hopper": read_rgb(
            matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        )
    }
    try:
        import skimage.data

        photos["scikit-image's astronaut"] = skimage.data.astronaut()
    except ImportError:
        pass
    lines = [
        "| photo | found | max \\|scale - 1\\| | max \\|rotation\\| (°) | max shift (of the side) |",
        "|---|---|---|---|---|",
    ]
    for name, img in photos.items():
        m = align.crop_transform(detect.detect_faces(img)[0].landmarks, 512)
        face = np.clip(align.warp_crop(img, m, 512), 0, 255).astype(np.uint8)
        marks = detect.detect_faces(face)[0].landmarks
        errs = []
        for height in HEIGHTS:
            for angle in ANGLES:
                frame, _, true = align.place_face(
                    face, np.zeros((512, 512), np.uint8), marks, FRAME, height, angle, (640, 360)
                )
                found = detect.detect_faces(frame)
                if found:
                    inv = np.vstack([cv2.invertAffineTransform(align.crop_transform(true, 512)), [0, 0, 1]])
                    errs.append(
                        align.transform_error(align.crop_transform(found[0].landmarks, 512) @ inv, 512, 512)
                    )
        lines.append(
            f"| {name} | {len(errs)}/{len(HEIGHTS) * len(ANGLES)} | {max(abs(e['scale'] - 1) for e in errs):.3f} "
            f"| {max(abs(e['rotation_deg']) for e in errs):.2f} | {max(e['shift'] for e in errs):.4f} |"
        )
    return "\n".join(lines)


def recipe_model(size: int) -> object:
    """The default recipe's network (EfficientNet-Lite0 U-Net) at ``size``, untrained: for its cost only."""
    from facesegm_utils.model import build_unet

    return build_unet(size, encoder="efficientnet_lite0", encoder_weights=None, decoder_filters=16)


def report(
    cms: dict[str, ConfusionMatrix], found: int, faces: int, times: dict[str, dict], model: str, jit: dict
) -> str:
    hair, u_lip, l_lip = (CLASSES.index(n) for n in ("hair", "u_lip", "l_lip"))
    crops = {k: cms["crop, found" if "found" in k else "crop"].mean_iou() for k in cms}
    lines = [
        "## Faces in wide frames (`bench_wild`)",
        "",
        f"{today()}, {machine()}. Model: {model}. {faces} synthetic faces (seed 7, never trained on) in",
        "1280x720 frames at 30/45/60% of the height, turned -20..20 degrees, plain grey background.",
        f"MTCNN finds {found} of the {faces} faces in their own crop (the generator draws some it does not",
        "find); the `found` rows score those faces only, against their own crop row.",
        "",
        "| parsed as | mIoU | × crop | hair IoU | upper-lip IoU | lower-lip IoU |",
        "|---|---|---|---|---|---|",
    ]
    for name, cm in cms.items():
        iou = cm.iou()
        lines.append(
            f"| {name} | {cm.mean_iou():.3f} | {cm.mean_iou() / crops[name]:.2f}× | {iou[hair]:.3f} "
            f"| {iou[u_lip]:.3f} | {iou[l_lip]:.3f} |"
        )
    lines += [
        "",
        "One 1280x720 frame, one face, median ms (CPU, this process, after a warm-up round); the last",
        "column is (detection + both warps) / whole-frame parse, the cost target being at most 1.",
        "Detection and warps cost the same whatever the model; the parse grows with the model's input:",
        "",
        "| model | detection | both warps | parse of the crop | aligned total "
        "| whole-frame parse (`none`) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, ms in times.items():
        aligned = ms["detect"] + ms["warps"] + ms["parse crop"]
        lines.append(
            f"| {name} | {ms['detect']:.0f} | {ms['warps']:.0f} | {ms['parse crop']:.0f} | {aligned:.0f} "
            f"| {ms['whole frame']:.0f} | {(ms['detect'] + ms['warps']) / ms['whole frame']:.2f} |"
        )
    if jit:
        lines += [
            "",
            "Video: a 1280x720 clip, the camera circling (1% of the width per frame) over a face at 45% of",
            "the height; the crop's four corners against the crop from the true landmarks, in frame pixels",
            "(jitter: RMS frame-to-frame change of that error; a crop that follows the face rigidly has 0):",
            "",
            "| landmarks | crop jitter (px) | mean corner error (px) | MTCNN runs | ms/frame (landmarks only) |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {v['jitter']:.2f} | {v['error']:.1f} | {v['detections']} | {v['ms']:.0f} |"
            for k, v in jit.items()
        ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="trained model (.keras) or a run folder")
    ap.add_argument("--faces", type=int, default=30)
    ap.add_argument("--size", type=int, default=256, help="side of the synthetic face images")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clip", type=int, default=40, help="frames of the video clip (0: skip the video part)")
    ap.add_argument("--every", type=int, default=10, help="video: detect every N frames")
    ap.add_argument(
        "--recipe-size",
        type=int,
        default=512,
        help="also time the default recipe's network at this size (0: no)",
    )
    ap.add_argument("--no-readme", action="store_true", help="print only")
    ap.add_argument("--framing-only", action="store_true", help="only the real-photo framing table")
    ap.add_argument("--label", default=None, help="how to name the model in the report (default: its path)")
    args = ap.parse_args()
    if args.framing_only:
        text = "\n".join([
            "## Real photos in wide frames: framing (`bench_wild --framing-only`)",
            "",
            f"{today()}, {machine()}. A photo a dependency ships, cut the CelebA-HQ way at 512², pasted",
            "into 1280x720 frames at 30/45/60% of the height, turned -20..20 degrees. The crop MTCNN's",
            "landmarks give in the frame, against the crop of the face's own landmarks carried into it",
            "(1 / 0 / 0 = the same crop):",
            "",
            real_photo_framing(),
        ])  # fmt: skip
        print(text)
        if not args.no_readme:
            update_section("bench_wild_framing", text)
        return 0
    if args.model is None:
        ap.error("--model is required (except with --framing-only)")
    model = prediction.load(args.model)
    cms, found = accuracy(model, args.faces, args.size)
    s = prediction.input_size(model)
    times = {f"the model above ({s}²)": timing(model, args.size, args.repeats)}
    if args.recipe_size:
        net = recipe_model(args.recipe_size)
        times[f"default recipe, untrained ({args.recipe_size}²)"] = timing(net, args.size, args.repeats)
    jit = jitter(args.clip, args.size, args.every) if args.clip else {}
    text = report(cms, found, args.faces, times, args.label or f"`{args.model}`", jit)
    print(text)
    if not args.no_readme:
        update_section("bench_wild", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
