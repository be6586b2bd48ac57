"""Full-resolution face parsing with a trained U-Net: ``FaceParser`` and ``facesegm predict``.

The network sees the size it was trained at (its input shape). Any photo is resized to that size,
the logits turned into class probabilities, and the PROBABILITIES (not the arg-max labels) are
upsampled bilinearly to the photo's own resolution. The arg-max of upsampled probabilities gives
smooth part boundaries at full resolution instead of the staircase an upsampled 128x128 or 256x256
label map would give, and the probabilities themselves make soft recolour masks.
"""

from __future__ import annotations

import argparse
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facesegm_utils.fileio import FacesegmError, atomic_write_bytes, read_rgb, write_image_atomic
from facesegm_utils.labels import NUM_CLASSES

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
COLOR_ORDERS: tuple[str, ...] = ("rgb", "bgr")


def to_rgb(image: np.ndarray, color_order: str = "rgb") -> np.ndarray:
    """Normalise one image to RGB float32 (H, W, 3) in 0..255, the scale the U-Net takes.

    Accepts grey (H, W) or (H, W, 1), 3 channels (RGB, or BGR with ``color_order="bgr"``) and
    4 channels (RGBA/BGRA: alpha dropped); uint8 (0..255) or float arrays, read as 0..1 when their
    maximum is <= 1 and as 0..255 otherwise. Anything else raises ``ValueError``.
    """
    if color_order not in COLOR_ORDERS:
        raise ValueError(f"unknown color_order {color_order!r}; expected one of {', '.join(COLOR_ORDERS)}")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., :3]
        if color_order == "bgr":
            arr = arr[..., ::-1]
    else:
        raise ValueError(
            f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image is empty: shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ValueError("image contains NaN or infinity")
        lo, hi = float(out.min()), float(out.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"float image values must be in [0, 1] or [0, 255], got [{lo:.3g}, {hi:.3g}]")
        return out * 255.0 if hi <= 1.0 else out
    raise ValueError(f"expected a uint8 or float image, got dtype {arr.dtype}")


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float32."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def resize_proba(proba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize class probabilities (h, w, C) to ``size`` = (H, W): bilinear when enlarging, area
    averaging when shrinking. Both are convex combinations, so each pixel still sums to 1."""
    h, w = size
    if proba.shape[:2] == (h, w):
        return proba
    if h >= proba.shape[0] and w >= proba.shape[1]:
        return cv2.resize(proba, (w, h), interpolation=cv2.INTER_LINEAR)
    # OpenCV's area resize takes at most 4 channels at a time
    parts = []
    for i in range(0, proba.shape[2], 4):
        chunk = cv2.resize(np.ascontiguousarray(proba[..., i : i + 4]), (w, h), interpolation=cv2.INTER_AREA)
        parts.append(chunk[..., None] if chunk.ndim == 2 else chunk)
    return np.concatenate(parts, axis=2)


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
    stretched back, as ``facesegm prepare`` did with the training images.
    """

    def __init__(
        self, model: str | os.PathLike[str] | Any, batch_size: int = 8, image_size: int | None = None
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        if hasattr(model, "predict_on_batch"):
            self.model = model
            self.model_path: Path | None = None
        else:
            from facesegm_utils.callbacks import load_model

            self.model_path = Path(model)
            try:
                self.model = load_model(self.model_path, compile=False)
            except (FileNotFoundError, FacesegmError):
                raise
            except Exception as exc:  # keras raises many types for a damaged file
                raise FacesegmError(
                    f"could not load model {self.model_path}: {exc.__class__.__name__}: {exc} "
                    "(expected a .keras file written by `facesegm train`)"
                ) from None
        shape = self.model.input_shape
        if isinstance(shape, list):
            shape = shape[0]
        if len(shape) != 4 or shape[3] != 3:
            raise FacesegmError(f"expected a model taking (B, S, S, 3) RGB images, got input shape {shape}")
        if shape[1] is not None and shape[2] is not None:
            if shape[1] != shape[2]:
                raise FacesegmError(f"expected a square model input, got {shape[1]}x{shape[2]}")
            self.image_size = int(shape[1])
        elif image_size is not None:
            self.image_size = int(image_size)
        else:
            raise FacesegmError("the model accepts any input size: pass image_size=... to FaceParser")
        out = self.model.output_shape
        if isinstance(out, list):
            out = out[0]
        if out[-1] != NUM_CLASSES:
            raise FacesegmError(f"expected a model with {NUM_CLASSES} output classes, got output shape {out}")

    def _proba_small(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities at the model's size (B, S, S, 19) for RGB float 0..255 images of any size."""
        s = self.image_size
        x = np.stack(
            [
                im
                if im.shape[:2] == (s, s)
                else cv2.resize(
                    im,
                    (s, s),
                    interpolation=cv2.INTER_AREA if min(im.shape[:2]) > s else cv2.INTER_LINEAR,
                )
                for im in images
            ]
        ).astype(np.float32)
        logits = np.asarray(self.model.predict_on_batch(x), dtype=np.float32)
        if logits.shape != (len(images), s, s, NUM_CLASSES):
            raise FacesegmError(
                f"model returned logits of shape {logits.shape}, expected (B, {s}, {s}, {NUM_CLASSES})"
            )
        return softmax(logits)

    def predict_proba(self, image: np.ndarray, color_order: str = "rgb") -> np.ndarray:
        """Class probabilities (H, W, 19) float32 at the image's own resolution; each pixel sums to 1."""
        return self.predict_batch([image], proba=True, color_order=color_order)[0]

    def predict_labels(self, image: np.ndarray, color_order: str = "rgb") -> np.ndarray:
        """Label map (H, W) uint8 at the image's own resolution (arg-max of the upsampled probabilities)."""
        return self.predict_batch([image], proba=False, color_order=color_order)[0]

    def iter_batches(
        self, images: Iterable[np.ndarray], proba: bool = False, color_order: str = "rgb"
    ) -> Iterator[np.ndarray]:
        """Yield one result per image, running the model ``batch_size`` images at a time."""
        batch: list[np.ndarray] = []
        for im in images:
            batch.append(to_rgb(im, color_order))
            if len(batch) == self.batch_size:
                yield from self._finish(batch, proba)
                batch = []
        if batch:
            yield from self._finish(batch, proba)

    def _finish(self, batch: list[np.ndarray], proba: bool) -> Iterator[np.ndarray]:
        small = self._proba_small(batch)
        for im, p in zip(batch, small, strict=True):
            full = resize_proba(p, im.shape[:2])
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
    parser.add_argument(
        "--save-proba", action="store_true", help="also write {stem}_proba.npy (float16 H x W x 19)"
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm predict``."""
    src = Path(args.input)
    if not src.exists():
        raise FileNotFoundError(f"input not found: {src} (expected an image or a folder of images)")
    if src.is_file() and src.suffix.lower() not in IMAGE_SUFFIXES:
        raise FacesegmError(f"input {src} is not an image: expected one of {', '.join(IMAGE_SUFFIXES)}")
    parser = FaceParser(args.model, batch_size=args.batch_size)
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
