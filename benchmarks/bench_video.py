"""Video smoothing judged on error and flicker: per frame, EMA and motion-compensated EMA.

Run: ``.venv/bin/python benchmarks/bench_video.py [--sizes 256 512] [--faces 2] [--frames 24]``

For synthetic faces (seed 0, ids 0, 1, ...) two clips are built with per-frame edge noise, a shaky
hand (:func:`facesegm_utils.clips.make_jitter_clip`) and real motion at 4 % of the frame per frame
(:func:`facesegm_utils.clips.make_motion_clip`), and each part is recoloured the three ways of
:func:`facesegm_utils.video.compare_smoothing`, side by side in this process, pinned to one core.
Reported: the mean over faces of the error against the true moving mask, the flicker beyond the
true motion and the raw flicker, the time per frame, and the target on the moving clip (error no
worse than per frame, flicker beyond motion at most half of per frame). Writes the ``bench_video``
section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _readme import machine, pin_one_core, today, update_section  # noqa: E402

from facesegm_utils import clips, video  # noqa: E402
from facesegm_utils.celebamask import merge_parts  # noqa: E402
from facesegm_utils.synthetic import generate_face  # noqa: E402

CLIPS = {"shaky hand": clips.make_jitter_clip, "moving 4%/frame": clips.make_motion_clip}
PARTS = ("hair", "lips")


def bench(size: int, faces: int, frames: int) -> dict[tuple[str, str, str], dict[str, float]]:
    """(part, clip, variant) -> mean measures over ``faces`` faces."""
    acc: dict[tuple[str, str, str], list[list[float]]] = {}
    image, masks = generate_face(0, 0, size)
    video.compare_smoothing(
        clips.make_motion_clip(image, merge_parts(masks), n_frames=3), "hair", "#fff"
    )  # warm-up
    for k in range(faces):
        image, masks = generate_face(0, k, size)
        labels = merge_parts(masks)
        for clip_name, make in CLIPS.items():
            clip = make(image, labels, n_frames=frames, seed=k)
            for part in PARTS:
                for variant, run in video.compare_smoothing(clip, part, "#d4a84b").items():
                    row = [run.error, run.residual_flicker, run.flicker, run.ms_per_frame]
                    acc.setdefault((part, clip_name, variant), []).append(row)
    keys = ("error", "residual", "flicker", "ms")
    return {key: dict(zip(keys, np.mean(rows, axis=0).tolist(), strict=True)) for key, rows in acc.items()}


def table(size: int, res: dict[tuple[str, str, str], dict[str, float]]) -> list[str]:
    lines = [
        f"**{size}x{size}**",
        "",
        "| part | clip | mask | error | flicker beyond motion | flicker | ms/frame |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (part, clip_name, variant), r in res.items():
        ms = f"{r['ms']:.1f}" if variant != "true mask" else ""
        lines.append(
            f"| {part} | {clip_name} | {variant} | {r['error']:.4f} | {r['residual']:.4f} | "
            f"{r['flicker']:.4f} | {ms} |"
        )
    lines += ["", "Target on the moving clip (motion-compensated EMA against per frame):", ""]
    for part in PARTS:
        mc = res[(part, "moving 4%/frame", "motion-compensated EMA")]
        pf = res[(part, "moving 4%/frame", "per frame")]
        ok = mc["error"] <= pf["error"] and mc["residual"] <= 0.5 * pf["residual"]
        lines.append(
            f"- {part}: error {mc['error'] / pf['error']:.2f}x of per frame (target <= 1), flicker beyond "
            f"motion {mc['residual'] / pf['residual']:.2f}x (target <= 0.5): {'met' if ok else 'NOT met'}"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--faces", type=int, default=2)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--no-readme", action="store_true", help="print only, leave the README alone")
    args = parser.parse_args()
    pin_one_core()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    sizes = " ".join(map(str, args.sizes))
    cmd = f".venv/bin/python benchmarks/bench_video.py --sizes {sizes} --faces {args.faces} --frames {args.frames}"
    md = [
        "## Video smoothing: error and flicker (`bench_video`)",
        "",
        f"Machine: {machine()}; pinned to one core. Date: {today()}. Load average when it ran: {load:.1f}.",
        f"Command: `{cmd}`",
        "",
        f"Synthetic faces 0..{args.faces - 1} (seed 0), clips of {args.frames} frames with per-frame edge noise "
        "(the noisy label maps stand in for a per-frame predictor), alpha 0.6; means over the faces. "
        "*Error*: mean |weight - true weight|. *Flicker*: mean frame-to-frame |weight change|; "
        "*beyond motion*: after moving the previous weight by the true motion (the true mask's own "
        "figure is its floor). ms/frame: recolour + smoothing (+ optical flow), one core.",
        "",
    ]
    for size in args.sizes:
        md += table(size, bench(size, args.faces, args.frames))
    text = "\n".join(md)
    print(text)
    if not args.no_readme:
        update_section("bench_video", text)


if __name__ == "__main__":
    main()
