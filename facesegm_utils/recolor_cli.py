"""``facesegm recolor``: recolour a part in an image, a folder of images or a video.

The part's weight comes from a trained model (``--model``, through
:class:`facesegm_utils.inference.FaceParser`) or from given label maps (``--labels``); videos are
recoloured frame by frame with the temporal smoothing of :func:`facesegm_utils.video.recolor_sequence`.
With ``--align auto`` (the default) each face is parsed in its CelebA-HQ crop; in a video the faces
are detected every few frames and followed in between (:class:`facesegm_utils.track.FaceTracker`).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from facesegm_utils.fileio import FacesegmError, read_label_map, read_rgb, write_image_atomic
from facesegm_utils.inference import IMAGE_SUFFIXES, FaceParser, add_align_argument, list_images
from facesegm_utils.labels import NUM_CLASSES
from facesegm_utils.recolor import METHODS, RECOLOR_PARTS, parse_color, part_classes, valid_parts
from facesegm_utils.video import VIDEO_SUFFIXES, VideoReader, VideoWriter, recolor_sequence


def _label_source(labels: Path, images: list[Path]) -> list[Path]:
    """One label map per image: a single file for all, or ``{stem}.png`` from a folder."""
    if labels.is_dir():
        paths = [labels / f"{p.stem}.png" for p in images]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"label map not found: {missing[0]} (expected {{stem}}.png for every image)"
            )
        return paths
    if not labels.is_file():
        raise FileNotFoundError(f"label map not found: {labels}")
    return [labels] * len(images)


def _check_labels(lbl: np.ndarray, shape: tuple[int, int], path: Path) -> np.ndarray:
    if lbl.shape != shape:
        raise FacesegmError(
            f"label map {path} is {lbl.shape[1]}x{lbl.shape[0]}, expected the input's size {shape[1]}x{shape[0]}"
        )
    if lbl.max() >= NUM_CLASSES:
        raise FacesegmError(f"label map {path} holds class id {lbl.max()}; expected ids 0..{NUM_CLASSES - 1}")
    return lbl


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facesegm recolor``."""
    parser.add_argument("--input", required=True, help="an image, a folder of images, or a video (.mp4/.avi)")
    parser.add_argument("--out", required=True, help="output image, folder or video (.mp4/.avi)")
    parser.add_argument(
        "--part", required=True, help=f"part to recolour: {', '.join(RECOLOR_PARTS)}, or any class/group name"
    )
    parser.add_argument("--color", required=True, help="target colour: '#RRGGBB', '#RGB' or a CSS name")
    parser.add_argument("--strength", type=float, default=0.8, help="0..1 (default 0.8)")
    parser.add_argument("--method", choices=METHODS, default="lab", help="lab (default) or the earlier hsv")
    parser.add_argument(
        "--smooth", type=float, default=0.6, help="video: EMA weight of the past mask, 0 = off (default 0.6)"
    )
    parser.add_argument(
        "--smooth-motion",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="video: warp the smoothed mask along the optical flow before averaging, so it follows "
        "a moving face (default on; --no-smooth-motion averages in place)",
    )
    parser.add_argument("--feather", type=float, default=None, help="edge blur sigma in px (default: auto)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="trained model (.keras) that predicts the parts")
    src.add_argument(
        "--labels", default=None, help="a label map PNG (or a folder of {stem}.png) to use instead"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="frames/images per model call (default 8)")
    add_align_argument(parser)


def _check_args(args: argparse.Namespace) -> tuple[Path, Path, bool]:
    """Validate ``facesegm recolor``'s options; return the input, the output and whether it is a video."""
    if (args.model is None) == (args.labels is None):
        raise FacesegmError("give exactly one of --model M.keras or --labels LABELS.png")
    parse_color(args.color)
    if args.part not in valid_parts():
        part_classes(args.part)
    if not 0.0 <= args.strength <= 1.0:
        raise ValueError(f"--strength must be in [0, 1], got {args.strength}")
    if not 0.0 <= args.smooth < 1.0:
        raise ValueError(f"--smooth must be in [0, 1), got {args.smooth}")
    src, out = Path(args.input), Path(args.out)
    if not src.exists():
        raise FileNotFoundError(f"input not found: {src} (expected an image, a folder of images or a video)")
    is_video = src.is_file() and src.suffix.lower() in VIDEO_SUFFIXES
    if src.is_file() and not is_video and src.suffix.lower() not in IMAGE_SUFFIXES:
        raise FacesegmError(
            f"input {src} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a video ({', '.join(VIDEO_SUFFIXES)})"
        )
    if is_video and out.suffix.lower() not in VIDEO_SUFFIXES:
        raise FacesegmError(
            f"--out {out} must be a video file ({', '.join(VIDEO_SUFFIXES)}) for a video input"
        )
    if args.labels is not None and is_video and not Path(args.labels).is_file():
        raise FileNotFoundError(f"label map not found: {args.labels} (a video takes one label map PNG)")
    return src, out, is_video


def _recolor_video(
    args: argparse.Namespace, src: Path, out: Path, parser: FaceParser | None, options: dict
) -> None:
    from tqdm.auto import tqdm

    reader = VideoReader(src)
    shape = (reader.size[1], reader.size[0])
    frames_in, frames_for_model = itertools.tee(iter(reader))
    if parser is not None:
        maps: Iterable[np.ndarray] = parser.iter_batches(frames_for_model, proba=True, video=True)
    else:
        lbl = _check_labels(read_label_map(args.labels), shape, Path(args.labels))
        maps = itertools.repeat(lbl)  # the same map for every frame
    with VideoWriter(out, reader.fps) as writer:
        frames = recolor_sequence(frames_in, maps, smooth=args.smooth, motion=args.smooth_motion, **options)
        for frame, _ in tqdm(frames, total=reader.frame_count or None, desc="recolor", unit="frame"):
            writer.write(frame)
    print(
        f"wrote {writer.count} frames ({reader.size[0]}x{reader.size[1]}, {reader.fps:g} fps, {writer.codec}) to {out}"
    )


def _recolor_images(
    args: argparse.Namespace, src: Path, out: Path, parser: FaceParser | None, options: dict
) -> None:
    from tqdm.auto import tqdm

    images = list_images(src) if src.is_dir() else [src]
    if not images:
        raise FacesegmError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {src}")
    if src.is_dir():
        targets = [out / p.name for p in images]
    elif out.suffix.lower() in IMAGE_SUFFIXES:
        targets = [out]
    else:
        targets = [out / src.name]
    label_paths = _label_source(Path(args.labels), images) if args.labels is not None else None
    step = args.batch_size if parser is not None else 1
    with tqdm(total=len(images), desc="recolor", unit="image") as bar:
        for start in range(0, len(images), step):
            chunk = range(start, min(start + step, len(images)))
            pixels = [read_rgb(images[i]) for i in chunk]
            if parser is not None:
                maps_list = parser.predict_batch(pixels, proba=True)
            else:
                assert label_paths is not None
                maps_list = [
                    _check_labels(read_label_map(label_paths[i]), img.shape[:2], label_paths[i])
                    for i, img in zip(chunk, pixels, strict=True)
                ]
            for i, img, m in zip(chunk, pixels, maps_list, strict=True):
                result, _ = next(recolor_sequence([img], [m], **options))
                write_image_atomic(targets[i], result)
                bar.update(1)
    print(f"wrote {len(images)} recoloured image(s) to {out}")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm recolor``."""
    src, out, is_video = _check_args(args)
    parser = (
        FaceParser(args.model, batch_size=args.batch_size, align=args.align)
        if args.model is not None
        else None
    )
    options = dict(
        part=args.part, color=args.color, strength=args.strength, method=args.method, feather=args.feather
    )
    if is_video:
        _recolor_video(args, src, out, parser, options)
    else:
        _recolor_images(args, src, out, parser, options)
    return 0
