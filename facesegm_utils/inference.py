"""Full-resolution face parsing with a trained U-Net: ``FaceParser`` and ``facesegm predict``.

The network sees the size it was trained at (its input shape). Any photo goes through the package's
one prediction path, :func:`facesegm_utils.prediction.predict_proba`: it is resized to that size,
the logits turned into class probabilities, and the PROBABILITIES (not the arg-max labels) are
upsampled bilinearly to the photo's own resolution. The arg-max of upsampled probabilities gives
smooth part boundaries at full resolution instead of the staircase an upsampled 128x128 or 256x256
label map would give, and the probabilities themselves make soft recolour masks.

A photo is not a training crop: the face is somewhere in a wider frame, smaller, maybe tilted, and
there may be several. With ``align="auto"`` (the default) each face is found (MTCNN), warped into
the CelebA-HQ framing the model was trained on, parsed, and its probabilities warped back
(:mod:`facesegm_utils.align`); a photo without a face is parsed whole, with a one-line notice.
``align="none"`` resizes the whole image to the model: right for images that are already aligned
crops, such as a prepared dataset (``facesegm evaluate`` always parses those whole).
"""

from __future__ import annotations

import argparse
import io
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from facesegm_utils import align as aligner
from facesegm_utils import prediction, track
from facesegm_utils.fileio import FacesegmError, atomic_write_bytes, read_rgb, write_image_atomic
from facesegm_utils.prediction import to_rgb

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly in ``folder`` (by suffix), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder of images: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class FaceParser:
    """A trained U-Net, loaded once, that labels face photos of any size at their own resolution.

    ``model`` is a ``.keras`` path (or a run folder holding ``model.keras``) or an already loaded
    Keras model. ``image_size`` is read from the model's input shape; pass it only for a model that
    accepts any size. Non-square photos are stretched to the square input and the probabilities
    stretched back, as ``facesegm prepare`` did with the training images. ``align``: ``"auto"``
    finds and aligns each face as the training crops were (see the module's docstring), ``"none"``
    parses the whole image (for already aligned crops).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Any,
        batch_size: int = 8,
        image_size: int | None = None,
        align: str = "auto",
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if align not in aligner.ALIGN_MODES:
            raise ValueError(f"unknown align {align!r}; expected one of {', '.join(aligner.ALIGN_MODES)}")
        self.batch_size = batch_size
        self.align = align
        self.model_path: Path | None = None if hasattr(model, "predict_on_batch") else Path(model)
        self.model = prediction.load(model)
        self.image_size = prediction.input_size(self.model, image_size)

    def predict_proba(self, image: np.ndarray, color_order: str = "rgb") -> np.ndarray:
        """Class probabilities (H, W, 19) float32 at the image's own resolution; each pixel sums to 1."""
        return self.predict_batch([image], proba=True, color_order=color_order)[0]

    def predict_labels(self, image: np.ndarray, color_order: str = "rgb") -> np.ndarray:
        """Label map (H, W) uint8 at the image's own resolution (arg-max of the upsampled probabilities)."""
        return self.predict_batch([image], proba=False, color_order=color_order)[0]

    def iter_batches(
        self,
        images: Iterable[np.ndarray],
        proba: bool = False,
        color_order: str = "rgb",
        video: bool = False,
    ) -> Iterator[np.ndarray]:
        """Yield one result per image, running the model ``batch_size`` images at a time.

        ``video=True``: the images are a video's frames in order; with ``align="auto"`` the faces are
        detected on a schedule and followed in between (:class:`~facesegm_utils.track.FaceTracker`),
        and a missing face is noticed once, not on every frame.
        """
        tracker = track.FaceTracker() if video and self.align == "auto" else None
        batch: list[np.ndarray] = []
        for im in images:
            batch.append(to_rgb(im, color_order))
            if len(batch) == self.batch_size:
                yield from self._finish(batch, proba, tracker)
                batch = []
        if batch:
            yield from self._finish(batch, proba, tracker)

    def _finish(
        self, batch: list[np.ndarray], proba: bool, tracker: track.FaceTracker | None = None
    ) -> Iterator[np.ndarray]:
        if tracker is not None:
            marks = [tracker.update(im) for im in batch]
            # a video without a face gets one notice, on its first batch
            notice = aligner.print_notice if tracker.frame_index == len(batch) else _silent
            results = aligner.parse_faces(self.model, batch, self.image_size, marks, _once(notice))
        elif self.align == "auto":
            results = aligner.parse_faces(self.model, batch, self.image_size)
        else:
            results = prediction.predict_proba(self.model, batch, self.image_size)
        for full in results:
            yield full if proba else np.argmax(full, axis=2).astype(np.uint8)

    def predict_batch(
        self, images: Iterable[np.ndarray], proba: bool = False, color_order: str = "rgb"
    ) -> list[np.ndarray]:
        """Label maps (or probabilities with ``proba=True``) for several images, each at its own size."""
        return list(self.iter_batches(images, proba=proba, color_order=color_order))

    def predict_folder(
        self,
        in_dir: str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        save_proba: bool = False,
        progress: bool = True,
    ) -> list[Path]:
        """Label every image in ``in_dir``; write ``out_dir/{stem}.png`` (uint8 class ids) atomically.

        With ``save_proba`` also ``{stem}_proba.npy`` (float16, H x W x 19). Returns the label paths.
        A corrupt image raises ``FacesegmError`` naming the file.
        """
        from tqdm.auto import tqdm

        files = list_images(in_dir)
        if not files:
            raise FacesegmError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {in_dir}")
        out_dir = Path(out_dir)
        written: list[Path] = []
        results = self.iter_batches((read_rgb(f) for f in files), proba=True)
        for f, p in tqdm(
            zip(files, results, strict=True), total=len(files), desc="predict", disable=not progress
        ):
            written.append(
                write_image_atomic(out_dir / f"{f.stem}.png", np.argmax(p, axis=2).astype(np.uint8))
            )
            if save_proba:
                save_proba_file(out_dir / f"{f.stem}_proba.npy", p)
        return written


def _silent(message: str) -> None:
    """A notice nobody sees (a video's later frames)."""


def _once(notice: Callable[[str], None]) -> Callable[[str], None]:
    """``notice`` passed on for its first message only."""
    seen: list[str] = []

    def first(message: str) -> None:
        if not seen:
            seen.append(message)
            notice(message)

    return first


def save_proba_file(path: str | os.PathLike[str], proba: np.ndarray) -> Path:
    """Write probabilities as float16 ``.npy`` atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(proba, dtype=np.float16))
    return atomic_write_bytes(path, buf.getvalue())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facesegm predict``."""
    parser.add_argument("--model", required=True, help="trained model (.keras) or a run folder")
    parser.add_argument("--input", required=True, help="an image or a folder of images")
    parser.add_argument("--out", required=True, help="folder for the {stem}.png label maps")
    parser.add_argument("--batch-size", type=int, default=8, help="images per model call (default 8)")
    add_align_argument(parser)
    parser.add_argument(
        "--save-proba", action="store_true", help="also write {stem}_proba.npy (float16 H x W x 19)"
    )


def add_align_argument(parser: argparse.ArgumentParser) -> None:
    """``--align auto|none``, shared by ``predict``, ``show`` and ``recolor``."""
    parser.add_argument(
        "--align",
        choices=aligner.ALIGN_MODES,
        default="auto",
        help="auto (default): find each face and parse it framed as the training crops, pasted back; "
        "none: resize the whole image to the model (for already aligned face crops)",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm predict``."""
    src = Path(args.input)
    if not src.exists():
        raise FileNotFoundError(f"input not found: {src} (expected an image or a folder of images)")
    if src.is_file() and src.suffix.lower() not in IMAGE_SUFFIXES:
        raise FacesegmError(f"input {src} is not an image: expected one of {', '.join(IMAGE_SUFFIXES)}")
    parser = FaceParser(args.model, batch_size=args.batch_size, align=args.align)
    out = Path(args.out)
    if src.is_dir():
        written = parser.predict_folder(src, out, save_proba=args.save_proba)
    else:
        proba = parser.predict_proba(read_rgb(src))
        written = [write_image_atomic(out / f"{src.stem}.png", np.argmax(proba, axis=2).astype(np.uint8))]
        if args.save_proba:
            save_proba_file(out / f"{src.stem}_proba.npy", proba)
    print(f"wrote {len(written)} label map(s) to {out} (model input {parser.image_size}x{parser.image_size})")
    return 0
