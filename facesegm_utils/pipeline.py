"""The tf.data input pipeline over a prepared dataset, with paired augmentation.

:func:`make_dataset` yields ``(image, label)`` batches: ``image`` float32 RGB in [0, 255] of shape
(B, S, S, 3) and ``label`` int32 (B, S, S). Class weights are not applied here: training weights
the cross-entropy in the loss (:mod:`facesegm_utils.losses`); :func:`class_weights` computes them
from the prepared dataset's pixel frequencies. Augmentation (training only) draws each random value once per example and
applies it to the image and the label alike: a horizontal flip that also swaps the left/right
classes, one affine transform (scale, rotation, translation; image bilinear, label nearest), and
colour jitter on the image only. All random ops are stateless and seeded per example, so a run is
reproducible from ``seed``.

Host memory: ``cache="none"`` shuffles file names and rereads the files every epoch, so it stays
flat with the dataset's size; ``cache="memory"`` keeps the prepared files' encoded bytes (about 0.08
MB a face), and falls back to ``none`` above its budget. Decoding always happens after the cache and
the shuffle, per element. (A ``disk`` mode was removed: its shuffle buffer held every encoded record
in memory, the same as ``memory``; see benchmarks/README.md, bench_scale.)
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from facesegm_utils.fileio import FacesegmError
from facesegm_utils.labels import FLIP_PERMUTATION, NUM_CLASSES
from facesegm_utils.prepare import split_items
from facesegm_utils.trainconfig import CACHE_MODES


def read_dataset_info(prep_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The prepared dataset's ``dataset.json`` (classes, size, counts, train pixel frequencies)."""
    path = Path(prep_dir) / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset.json not found in {prep_dir}: expected a folder written by `facesegm prepare`"
        )
    info = json.loads(path.read_text())
    for key in ("size", "class_pixel_frequency"):
        if key not in info:
            raise FacesegmError(f"{path} has no {key!r}; expected the output of `facesegm prepare`")
    return info


@dataclass(frozen=True)
class PreparedData:
    """A prepared dataset as training reads it: its folder, ``dataset.json``, image size and split counts."""

    folder: Path
    info: dict[str, Any]
    #: the size the model trains at: the one asked for, else the prepared one
    image_size: int
    #: images per split as ``dataset.json`` counts them (a split it does not count is left out)
    counts: dict[str, int]


def open_prepared(data: str | os.PathLike[str], image_size: int | None = None) -> PreparedData:
    """The prepared folder ``data`` (the output of ``facesegm prepare``), checked: it holds
    ``dataset.json`` and ``manifest.csv``, an image size (``image_size``, else the prepared size) and
    training images. Raises ``FacesegmError`` naming what is missing."""
    folder = Path(data)
    if not folder.is_dir():
        raise FacesegmError(
            f"prepared dataset folder not found: {folder}; expected the output of `facesegm prepare` "
            "(train/ val/ test/, manifest.csv, dataset.json)"
        )
    missing = [n for n in ("dataset.json", "manifest.csv") if not (folder / n).is_file()]
    if missing:
        raise FacesegmError(
            f"{folder} is not a prepared dataset: {', '.join(missing)} missing; run `facesegm prepare` first"
        )
    info = read_dataset_info(folder)
    size = (
        info["size"][0] if isinstance(info["size"], (list, tuple)) else info["size"]
    )  # read_dataset_info checks
    size = int(image_size or size or 0)
    if not size:
        raise FacesegmError(f"no image size given and none found in {folder / 'dataset.json'}")
    counts = info.get("counts") or info.get("split_counts") or {}
    counts = {k: int(v) for k, v in counts.items() if v is not None} if isinstance(counts, dict) else {}
    if counts.get("train") == 0:
        raise FacesegmError(f"the prepared dataset {folder} has no training images")
    return PreparedData(folder, info, size, counts)


def training_datasets(
    data: PreparedData,
    global_batch: int,
    replicas: int,
    *,
    augment: bool,
    cache: str,
    seed: int,
    repeat: bool,
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The training and validation datasets of ``global_batch``, sharded by data over ``replicas``.

    With several replicas a partial last batch cannot be shared evenly, so it is dropped (from the
    validation split only when the split fills at least one batch).
    """
    common = dict(cache=cache, seed=seed, image_size=data.image_size)
    train_ds = make_dataset(
        data.folder, "train", global_batch, training=True, augment=augment, shuffle=True,
        drop_remainder=replicas > 1, repeat=repeat, **common,
    )  # fmt: skip
    full_val = data.counts.get("val", 0) >= global_batch
    val_ds = make_dataset(
        data.folder, "val", global_batch, drop_remainder=replicas > 1 and full_val, **common
    )
    # records are read from a list of files, not from files a reader op could split: shard by DATA
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return train_ds.with_options(options), val_ds.with_options(options)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation. Set a field to 0 (or an equal pair) to switch that part off."""

    flip_prob: float = 0.5
    scale: tuple[float, float] = (0.9, 1.1)
    rotation_deg: float = 10.0
    translate: float = 0.05  # fraction of the image side
    brightness: float = 0.1  # max delta, fraction of full range
    contrast: tuple[float, float] = (0.85, 1.15)
    saturation: tuple[float, float] = (0.85, 1.15)
    hue: float = 0.02  # max delta, fraction of the hue circle

    def geometric_only(self) -> AugmentConfig:
        """This config without colour jitter: flip and affine only (for checks and figures)."""
        return replace(self, brightness=0.0, contrast=(1.0, 1.0), saturation=(1.0, 1.0), hue=0.0)


def _affine_transform(seed: tf.Tensor, size: int, cfg: AugmentConfig) -> tf.Tensor:
    """Projective-transform parameters (8,) mapping output pixels to input pixels for a random
    scale s, rotation t and translation (tx, ty) about the image centre."""
    u = tf.random.stateless_uniform([4], seed=seed, minval=0.0, maxval=1.0)
    s = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[0]
    theta = (2.0 * u[1] - 1.0) * cfg.rotation_deg * math.pi / 180.0
    tx = (2.0 * u[2] - 1.0) * cfg.translate * size
    ty = (2.0 * u[3] - 1.0) * cfg.translate * size
    c = (size - 1) / 2.0
    cos, sin = tf.cos(theta) / s, tf.sin(theta) / s
    # input = c + R(-theta)/s (output - c - t)
    a0, a1, b0, b1 = cos, sin, -sin, cos
    a2 = c - a0 * (c + tx) - a1 * (c + ty)
    b2 = c - b0 * (c + tx) - b1 * (c + ty)
    return tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])


def _transform(x: tf.Tensor, transform: tf.Tensor, interpolation: str) -> tf.Tensor:
    size = tf.shape(x)[0:2]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[None],
        transforms=transform[None],
        output_shape=size,
        fill_value=tf.constant(0.0),
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )
    return out[0]


def augment_pair(
    image: tf.Tensor, label: tf.Tensor, seed: tf.Tensor, config: AugmentConfig | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Augment one (image float32 (S,S,3) 0..255, label int32 (S,S)) pair with a stateless ``seed`` (2,).

    The flip and the affine transform use one random draw for both; colour jitter touches only
    the image. Pixels moved in from outside are 0 in the image and background in the label.
    """
    cfg = config or AugmentConfig()
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=7)
    size = image.shape[0] if image.shape[0] is not None else tf.shape(image)[0]
    if cfg.flip_prob > 0:
        do_flip = tf.random.stateless_uniform([], seed=seeds[0]) < cfg.flip_prob
        perm = tf.constant(FLIP_PERMUTATION, tf.int32)
        image = tf.cond(do_flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
        label = tf.cond(do_flip, lambda: tf.gather(perm, tf.reverse(label, axis=[1])), lambda: label)
    if cfg.scale[0] != cfg.scale[1] or cfg.rotation_deg > 0 or cfg.translate > 0:
        t = _affine_transform(seeds[1], size, cfg)
        image = _transform(image, t, "BILINEAR")
        label = _transform(label[..., None], t, "NEAREST")[..., 0]
    if (
        cfg.brightness
        or cfg.contrast[0] != cfg.contrast[1]
        or cfg.saturation[0] != cfg.saturation[1]
        or cfg.hue
    ):
        x = image / 255.0
        if cfg.brightness:
            x = tf.image.stateless_random_brightness(x, cfg.brightness, seed=seeds[2])
        if cfg.contrast[0] != cfg.contrast[1]:
            x = tf.image.stateless_random_contrast(x, cfg.contrast[0], cfg.contrast[1], seed=seeds[3])
        if cfg.saturation[0] != cfg.saturation[1]:
            x = tf.image.stateless_random_saturation(x, cfg.saturation[0], cfg.saturation[1], seed=seeds[4])
        if cfg.hue:
            x = tf.image.stateless_random_hue(x, cfg.hue, seed=seeds[5])
        image = tf.clip_by_value(x, 0.0, 1.0) * 255.0
    return image, label


def _decoder(size: int, image_size: int | None):
    """Decode one encoded (JPEG bytes, PNG bytes) record into (float32 RGB image, int32 label)."""
    out = image_size or size

    def decode(img_bytes: tf.Tensor, lab_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # the accurate IDCT gives the pixels OpenCV gives evaluation and inference (TF's default differs)
        image = tf.io.decode_jpeg(img_bytes, channels=3, dct_method="INTEGER_ACCURATE")
        label = tf.io.decode_png(lab_bytes, channels=1)
        image = tf.ensure_shape(image, [size, size, 3])
        label = tf.ensure_shape(label, [size, size, 1])
        image = tf.cast(image, tf.float32)
        if out != size:
            image = tf.image.resize(image, [out, out], method="bilinear", antialias=out < size)
            label = tf.image.resize(label, [out, out], method="nearest")
        label = tf.cast(label[..., 0], tf.int32)
        return image, label

    return decode


def _read_record(img_path: tf.Tensor, lab_path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The encoded bytes of one prepared (image, label) pair: what the cache and the shuffle hold."""
    return tf.io.read_file(img_path), tf.io.read_file(lab_path)


def default_cache_budget_bytes() -> int:
    """The memory cache's default budget: a quarter of this machine's physical memory."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 4
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 2 << 30


def resolve_cache(cache: str | bool, files: list[str], *, budget_bytes: int | None = None) -> str:
    """The cache mode to use for ``files`` (``memory`` or ``none``).

    The encoded files' total size estimates the cache. ``memory`` above ``budget_bytes`` (default:
    a quarter of physical memory) falls back to ``none`` (read the prepared files every epoch) with
    a one-line notice. True/False mean ``memory``/``none``.
    """
    mode = {True: "memory", False: "none"}.get(cache, cache) if isinstance(cache, bool) else cache
    if mode not in CACHE_MODES:
        removed = " ('disk' was removed: it held every record in memory; 'none' is the bounded mode)"
        raise ValueError(
            f"unknown cache {cache!r}; expected one of {', '.join(CACHE_MODES)}{removed if mode == 'disk' else ''}"
        )
    if mode == "none":
        return mode
    need = sum(os.path.getsize(f) for f in files)
    budget = default_cache_budget_bytes() if budget_bytes is None else budget_bytes
    if need > budget:
        print(
            f"cache: memory cache of {need / 2**20:.0f} MB would exceed the budget "
            f"({budget / 2**20:.0f} MB); reading the prepared files every epoch instead (cache=none)",
            file=sys.stderr,
        )
        return "none"
    return mode


def make_dataset(
    prep_dir: str | os.PathLike[str],
    split: str,
    batch_size: int,
    *,
    training: bool = False,
    augment: AugmentConfig | bool | None = None,
    shuffle: bool | None = None,
    cache: str | bool = "none",
    cache_budget_bytes: int | None = None,
    seed: int = 0,
    drop_remainder: bool = False,
    repeat: bool = False,
    image_size: int | None = None,
) -> tf.data.Dataset:
    """A batched, prefetched dataset of one split of a prepared folder.

    ``training`` turns on shuffling and augmentation unless ``shuffle``/``augment`` say otherwise
    (``augment`` may be an :class:`AugmentConfig`, True for the default one, or False).
    ``cache`` (``none`` by default; training uses ``memory``; see :func:`resolve_cache`): ``memory``
    keeps the *encoded* bytes of the prepared files (about 0.08 MB a face at 512²), never decoded
    tensors, and shuffles those records; ``none`` shuffles file names and rereads the files, so host
    memory stays flat with the dataset's size. Decoding, resizing and casting come after the cache.
    ``image_size`` resizes (image bilinear, label nearest) when it differs from the prepared size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    info = read_dataset_info(prep_dir)
    size = int(info["size"])
    items = split_items(prep_dir, split)
    images, labels = [str(it[1]) for it in items], [str(it[2]) for it in items]
    shuffle = training if shuffle is None else shuffle
    mode = resolve_cache(cache, images + labels, budget_bytes=cache_budget_bytes)
    ds = _encoded_records(images, labels, mode, bool(shuffle), seed)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(_decoder(size, image_size), num_parallel_calls=tf.data.AUTOTUNE)
    ds = _augmented(ds, _augment_config(training, augment), seed)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def _augment_config(training: bool, augment: AugmentConfig | bool | None) -> AugmentConfig | None:
    """The augmentation to apply: the default one for training or ``augment=True``, else as given."""
    if augment is None or augment is True:
        return AugmentConfig() if (training or augment is True) else None
    return augment or None


def _encoded_records(
    images: list[str], labels: list[str], mode: str, shuffle: bool, seed: int
) -> tf.data.Dataset:
    """Encoded (image, label) file bytes, cached in memory and shuffled as records, or shuffled as names."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle and mode == "none":  # shuffle file names, then read
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(_read_record, num_parallel_calls=tf.data.AUTOTUNE)
    if mode == "none":
        return ds
    ds = ds.cache()  # in memory, within the budget resolve_cache checked
    if shuffle:  # shuffle encoded records (the buffer shares the cached byte strings)
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return ds


def _augmented(ds: tf.data.Dataset, cfg: AugmentConfig | None, seed: int) -> tf.data.Dataset:
    """``ds`` with paired augmentation drawn from a seeded random stream (unchanged for ``cfg=None``)."""
    if cfg is None:
        return ds
    rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def _aug(pair: tuple[tf.Tensor, tf.Tensor], r: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return augment_pair(pair[0], pair[1], tf.stack([r, tf.constant(seed, tf.int64)]), cfg)

    return tf.data.Dataset.zip((ds, rand)).map(_aug, num_parallel_calls=tf.data.AUTOTUNE)


def class_weights(
    info_or_prep_dir: dict[str, Any] | str | os.PathLike[str],
    method: str = "median_frequency",
    clip: float | None = 10.0,
) -> np.ndarray:
    """Per-class loss weights (19 float32) from the train pixel frequencies f_c.

    ``median_frequency``: w_c = median(f of present classes) / f_c; ``inverse_sqrt``: w_c = 1/sqrt(f_c).
    Weights are scaled so the pixel-weighted mean ``sum(f_c w_c)`` is 1; with ``clip`` (> 1; None: no
    clipping) they are capped at ``clip`` and the rest rescaled so the mean stays 1. Classes absent
    from train get weight 0 (they contribute nothing to the loss).
    """
    info = info_or_prep_dir if isinstance(info_or_prep_dir, dict) else read_dataset_info(info_or_prep_dir)
    freq = np.asarray(info["class_pixel_frequency"], np.float64)
    if freq.shape != (NUM_CLASSES,) or not np.all(np.isfinite(freq)) or freq.min() < 0 or freq.sum() <= 0:
        raise FacesegmError(
            f"class_pixel_frequency must be {NUM_CLASSES} non-negative numbers with a positive sum, got {freq}"
        )
    freq = freq / freq.sum()
    present = freq > 0
    w = np.zeros(NUM_CLASSES, np.float64)
    if method == "median_frequency":
        w[present] = np.median(freq[present]) / freq[present]
    elif method == "inverse_sqrt":
        w[present] = 1.0 / np.sqrt(freq[present])
    else:
        raise ValueError(
            f"unknown class weight method {method!r}; expected 'median_frequency' or 'inverse_sqrt'"
        )
    w /= float(np.sum(freq * w))
    if clip is not None and w.max() > clip:
        if clip <= 1:
            raise ValueError(f"clip must be > 1 (the weights' pixel-weighted mean is 1), got {clip}")
        # find the scale a with sum(f * min(a w, clip)) = 1 (monotone in a): bisection
        lo, hi = 0.0, 1.0
        while np.sum(freq * np.minimum(hi * w, clip)) < 1:
            lo, hi = hi, hi * 2
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.sum(freq * np.minimum(mid * w, clip)) < 1 else (lo, mid)
        w = np.minimum(hi * w, clip)
    return w.astype(np.float32)
