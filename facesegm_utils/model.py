"""The U-Net: a plain encoder-decoder with skip connections, or a pretrained backbone as encoder.

Backbones come from the registry :mod:`facesegm_utils.encoders` (``efficientnet_lite0`` and
``efficientnet_lite2`` with ImageNet weights installed with packages, working offline; the Keras
Applications ``mobilenetv2`` / ``efficientnetv2b0``, downloaded by Keras on first use). Asking for
weights that cannot be had raises :class:`FacesegmError`; a model never silently starts from random
weights.

Only ``keras.layers`` / ``keras.ops`` are used here (no TensorFlow import), so the same model builds
under any Keras backend. A model takes raw RGB floats in 0..255 of shape (S, S, 3) and returns
float32 logits of shape (S, S, num_classes): the first layer rescales the pixels itself and the last
layer is float32 even under a mixed-precision policy, so the loss always sees float32 logits.

Layers are named by stage so the architecture can be read off ``model.summary()`` or
:func:`stage_summary`: ``enc{i}_conv1 .. enc{i}_pool`` (encoder level ``i``, 1 = full resolution),
``bottleneck_*``, ``dec{i}_up``, ``dec{i}_concat`` (the skip connection from ``enc{i}``),
``dec{i}_conv1 ..`` and ``logits``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from facesegm_utils.encoders import ENCODER_WEIGHTS, ENCODERS, backbone
from facesegm_utils.labels import NUM_CLASSES

UPSAMPLING_MODES: tuple[str, ...] = ("transpose", "bilinear")
#: a backbone encoder always downsamples five times (stride 32)
ENCODER_DEPTH = 5


# ----------------------------------------------------------------------------------------- blocks
def conv_block(
    x: Any, filters: int, name: str, *, batch_norm: bool = True, dropout: float = 0.0, convs: int = 2
) -> Any:
    """``convs`` x (3x3 Conv2D [+ BatchNorm] + ReLU), layers named ``{name}_conv1``, ``{name}_bn1``, ..."""
    for i in range(1, convs + 1):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer="he_normal",
            name=f"{name}_conv{i}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def encoder_block(x: Any, filters: int, level: int, *, batch_norm: bool = True) -> tuple[Any, Any]:
    """One encoder level: a conv block (kept as the skip) then 2x2 max-pooling. Returns (pooled, skip)."""
    skip = conv_block(x, filters, f"enc{level}", batch_norm=batch_norm)
    pooled = keras.layers.MaxPooling2D(2, name=f"enc{level}_pool")(skip)
    return pooled, skip


def decoder_block(
    x: Any, skip: Any, filters: int, level: int, *, batch_norm: bool = True, upsampling: str = "transpose"
) -> Any:
    """One decoder level: upsample x2, concatenate the encoder's skip, then a conv block."""
    if upsampling == "transpose":
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"dec{level}_up")(x)
    elif upsampling == "bilinear":
        x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_up")(x)
    else:
        raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")
    if skip is not None:
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([x, skip])
    return conv_block(x, filters, f"dec{level}", batch_norm=batch_norm)


def _check_args(
    image_size: int,
    depth: int,
    upsampling: str,
    encoder: str | None,
    num_classes: int,
    encoder_weights: str | None = None,
) -> None:
    if upsampling not in UPSAMPLING_MODES:
        raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")
    if encoder is not None and encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; expected None or one of {', '.join(ENCODERS)}")
    if encoder_weights not in (None, *ENCODER_WEIGHTS):
        raise ValueError(f"encoder_weights must be None or one of {ENCODER_WEIGHTS}, got {encoder_weights!r}")
    if encoder is None and encoder_weights is not None:
        raise ValueError(f"encoder_weights={encoder_weights!r} needs an encoder (got encoder=None)")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if encoder is None and depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    factor = 2 ** (ENCODER_DEPTH if encoder is not None else depth)
    if image_size <= 0 or image_size % factor:
        what = (
            f"encoder {encoder!r} (stride {factor})" if encoder else f"depth {depth} (2**{depth} = {factor})"
        )
        raise ValueError(
            f"image_size {image_size} is not divisible by {factor}, as a U-Net with {what} needs; "
            f"use a multiple of {factor} such as {max(factor, round(image_size / factor) * factor)}"
        )


def decoder_widths(base_filters: int, decoder_filters: int | Sequence[int] | None = None) -> tuple[int, ...]:
    """Filters of a backbone U-Net's five decoder levels, at strides 16, 8, 4, 2 and 1.

    ``None``: ``base_filters * (16, 8, 4, 2, 1)``; an int ``d``: ``(8d, 4d, 3d, 2d, d)``, a light decoder
    (16 gives 128, 64, 48, 32, 16); a sequence: five widths as given.
    """
    if decoder_filters is None:
        widths = tuple(base_filters * 2**i for i in range(ENCODER_DEPTH - 1, -1, -1))
    elif isinstance(decoder_filters, int):
        widths = tuple(decoder_filters * m for m in (8, 4, 3, 2, 1))
    else:
        widths = tuple(int(f) for f in decoder_filters)
    if len(widths) != ENCODER_DEPTH or min(widths) < 1:
        raise ValueError(
            f"decoder_filters must be an int >= 1 or {ENCODER_DEPTH} positive widths (strides 16..1), "
            f"got {decoder_filters!r}"
        )
    return widths


# ------------------------------------------------------------------------------------------ models
def build_unet(
    image_size: int,
    num_classes: int = NUM_CLASSES,
    base_filters: int = 32,
    depth: int = 4,
    batch_norm: bool = True,
    dropout: float = 0.0,
    upsampling: str = "transpose",
    encoder: str | None = None,
    encoder_weights: str | None = None,
    decoder_filters: int | Sequence[int] | None = None,
    image_skip: bool = True,
    name: str = "unet",
) -> keras.Model:
    """Build a U-Net for (image_size, image_size, 3) RGB inputs in 0..255 returning float32 logits.

    Plain U-Net (``encoder=None``): ``depth`` encoder levels with ``base_filters * 2**(i-1)`` filters,
    a bottleneck with ``base_filters * 2**depth`` filters (``dropout`` applies there), and ``depth``
    decoder levels mirroring the encoder. With an ``encoder`` (see :data:`encoders.ENCODERS`) a pretrained
    backbone (``encoder_weights="imagenet"`` or ``None`` for random) replaces the encoder: its features
    at strides 2, 4, 8 and 16 are the skips, stride 32 is the bottleneck, and five decoder levels of
    :func:`decoder_widths` filters bring it back to full resolution, where the image itself is the
    last skip (sharp part edges) unless ``image_skip=False`` (then the last level upsamples and
    convolves without a skip). Input scaling is inside the model in every case. Raises
    ``ValueError`` for bad arguments and :class:`FacesegmError` when ImageNet weights cannot be had.
    """
    _check_args(image_size, depth, upsampling, encoder, num_classes, encoder_weights)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    if encoder is None:
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
        skips = []
        for level in range(1, depth + 1):
            x, skip = encoder_block(x, base_filters * 2 ** (level - 1), level, batch_norm=batch_norm)
            skips.append(skip)
        x = conv_block(x, base_filters * 2**depth, "bottleneck", batch_norm=batch_norm, dropout=dropout)
        for level in range(depth, 0, -1):
            x = decoder_block(
                x,
                skips[level - 1],
                base_filters * 2 ** (level - 1),
                level,
                batch_norm=batch_norm,
                upsampling=upsampling,
            )
    else:
        widths = decoder_widths(base_filters, decoder_filters)
        *skips, x = backbone(encoder, image_size, encoder_weights)(inputs)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="bottleneck_dropout")(x)
        image = (
            keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="dec1_image")(inputs)
            if image_skip
            else None
        )
        for level, filters in zip(range(ENCODER_DEPTH, 0, -1), widths, strict=True):
            skip = skips[level - 2] if level > 1 else image
            x = decoder_block(x, skip, filters, level, batch_norm=batch_norm, upsampling=upsampling)
    outputs = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def weights_source(encoder: str | None, encoder_weights: str | None) -> str | None:
    """Where a model's pretrained encoder weights came from (for ``config.json``); ``None`` = random."""
    if encoder is None or encoder_weights is None:
        return None
    return ENCODERS[encoder].weights_source


# ----------------------------------------------------------------------------------------- helpers
def encoder_features(model: keras.Model, images: np.ndarray) -> list[np.ndarray]:
    """The pretrained encoder's five feature maps (strides 2, 4, 8, 16, 32) for RGB ``images`` in 0..255.

    ``model`` is a backbone U-Net from :func:`build_unet` (or the ``encoder_*`` model itself).
    """
    encoder = model
    if not model.name.startswith("encoder_"):
        found = [layer for layer in model.layers if layer.name.startswith("encoder_")]
        if not found:
            raise ValueError(f"model {model.name!r} has no pretrained encoder (build it with encoder=...)")
        encoder = found[0]
    x = np.asarray(images, dtype="float32")
    return [keras.ops.convert_to_numpy(f) for f in encoder(x, training=False)]


def count_params(model: keras.Model) -> int:
    """Total number of parameters (trainable and not)."""
    return int(model.count_params())


def _iter_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _iter_layers(layer)
        else:
            yield layer


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape[1:])


def flops_per_image(model: keras.Model) -> int:
    """Analytic FLOPs (2 x multiply-adds) of one forward pass over conv, depthwise, transposed and dense layers.

    Batch norm, activations and pooling are ignored (they are a few percent of the total).
    """
    total = 0
    for layer in _iter_layers(model):
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "Dense"):
            continue
        inp, out = _shape(layer.input), _shape(layer.output)
        if kind == "Dense":
            total += int(np.prod(out[:-1], dtype=np.int64)) * inp[-1] * out[-1]
            continue
        kh, kw = layer.kernel_size
        if kind == "Conv2D":
            groups = getattr(layer, "groups", 1)
            total += out[0] * out[1] * out[2] * kh * kw * (inp[2] // groups)
        elif kind == "Conv2DTranspose":
            total += inp[0] * inp[1] * inp[2] * kh * kw * out[2]
        elif kind == "DepthwiseConv2D":
            total += out[0] * out[1] * out[2] * kh * kw
        else:  # SeparableConv2D: depthwise then pointwise
            mult = layer.depth_multiplier
            total += out[0] * out[1] * inp[2] * mult * kh * kw + out[0] * out[1] * inp[2] * mult * out[2]
    return int(2 * total)


def receptive_field(depth: int = 4, convs_per_block: int = 2, kernel_size: int = 3) -> dict[str, int]:
    """Analytic receptive field (pixels) of a plain U-Net with transposed-conv upsampling.

    Each 3x3 conv widens the field by ``(k-1) * jump`` where ``jump`` is the input-pixel distance
    between neighbouring features at that level (1, 2, 4, ...); each 2x2 pool adds ``jump`` and doubles
    it. The decoder's convolutions add again on the way up (a 2x2 stride-2 transposed conv adds nothing
    along the deepest path). Returns the field after the encoder levels, at the bottleneck and at the
    output, plus the image size that the output field spans in full.
    """
    r, jump = 1, 1
    out: dict[str, int] = {}
    for level in range(1, depth + 1):
        r += convs_per_block * (kernel_size - 1) * jump
        out[f"enc{level}"] = r
        r += jump  # 2x2 pooling, stride 2
        jump *= 2
    r += convs_per_block * (kernel_size - 1) * jump
    out["bottleneck"] = r
    for level in range(depth, 0, -1):
        jump //= 2
        r += convs_per_block * (kernel_size - 1) * jump
        out[f"dec{level}"] = r
    out["output"] = r
    return out


def gradient_receptive_field(
    model: keras.Model, pixel: tuple[int, int] | None = None, seed: int = 0, samples: int = 4
) -> np.ndarray:
    """Empirical receptive field: |d logit(pixel) / d input| summed over channels, as an (S, S) map.

    Uses the current backend's autodiff (TensorFlow, JAX or PyTorch), imported only when called. Pixels
    where the map is non-zero are those that can change the output at ``pixel`` (default: the centre).
    The map is summed over ``samples`` random images: on a single input every ReLU feeding the chosen
    pixel can be inactive (likely in a narrow untrained net), which would show an empty field.
    """
    size = int(model.input_shape[1])
    py, px = pixel if pixel is not None else (size // 2, size // 2)
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 255, size=(max(1, int(samples)), size, size, 3)).astype("float32")
    backend = keras.backend.backend()

    def objective(x: Any) -> Any:
        logits = model(x, training=False)
        return keras.ops.sum(logits[:, py, px, :])

    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(image)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = objective(x)
        grad = tape.gradient(y, x).numpy()
    elif backend == "jax":
        import jax

        grad = np.asarray(jax.grad(objective)(image))
    elif backend == "torch":
        import torch

        x = torch.tensor(image, requires_grad=True)
        objective(x).backward()
        grad = x.grad.detach().cpu().numpy()
    else:
        raise ValueError(f"gradient_receptive_field does not support the {backend!r} backend")
    return np.abs(grad).sum(axis=(0, -1))


def field_extent(grad_map: np.ndarray, rel_threshold: float = 0.0) -> int:
    """Side (pixels) of the bounding box where ``grad_map`` exceeds ``rel_threshold`` x its maximum."""
    if grad_map.max() <= 0:
        return 0
    ys, xs = np.nonzero(grad_map > rel_threshold * grad_map.max())
    return int(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))


def stage_of(layer_name: str) -> str:
    """The stage a layer belongs to: ``enc2_conv1`` -> ``enc2``, ``logits`` -> ``logits``."""
    return layer_name.split("_", 1)[0] if not layer_name.startswith("encoder_") else layer_name


def stage_summary(model: keras.Model) -> list[dict[str, Any]]:
    """One row per stage (in order): ``stage``, ``output_shape`` (without batch), ``params``, ``layers``."""
    rows: list[dict[str, Any]] = []
    index: dict[str, dict[str, Any]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        stage = stage_of(layer.name)
        if stage not in index:
            index[stage] = {"stage": stage, "output_shape": None, "params": 0, "layers": 0}
            rows.append(index[stage])
        row = index[stage]
        row["params"] += int(layer.count_params())
        row["layers"] += 1
        out = layer.output
        row["output_shape"] = [_shape(t) for t in out] if isinstance(out, (list, tuple)) else _shape(out)
    return rows
