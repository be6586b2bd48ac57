"""The encoder registry: every entry passes the same checks (an encoder is one entry plus these tests)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from facesegm_utils import encoders
from facesegm_utils.encoders import ENCODERS, STRIDES, backbone
from facesegm_utils.fileio import FacesegmError
from facesegm_utils.model import build_unet, weights_source
from facesegm_utils.torchckpt import load_legacy_checkpoint

SIZE = 64


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ENCODERS))
def test_entry_builds_offline_has_every_stride_and_round_trips(name: str, offline: Path) -> None:
    """One U-Net per entry (no full-resolution image skip, the careful decoder): ImageNet weights with
    the network refused (offline entries) or the exit-2 message naming the offline ones (downloads);
    features at every stride; a ``.keras`` round trip in safe mode."""
    entry = ENCODERS[name]
    assert set(entry.features) == set(STRIDES) and entry.native_size >= 224 and 60 < entry.imagenet_top1 < 90
    kwargs = dict(encoder=name, decoder_filters=2, image_skip=False)
    if entry.offline:
        net = build_unet(SIZE, encoder_weights="imagenet", **kwargs)
        state = load_legacy_checkpoint(entry.weights.path())
        stem = np.transpose(state["_conv_stem.weight"], (2, 3, 1, 0))
        got = net.get_layer(f"encoder_{name}").get_layer("stem_conv").get_weights()[0]
        np.testing.assert_array_equal(got, stem)
        assert weights_source(name, "imagenet") == entry.weights.source
    else:
        offline_names = encoders.offline_encoders()
        with pytest.raises(FacesegmError, match=rf"encoder '{name}'.*--encoder {offline_names[0]}"):
            build_unet(SIZE, encoder_weights="imagenet", **kwargs)
        assert weights_source(name, "imagenet") == encoders.KERAS_APPLICATIONS
        net = build_unet(SIZE, encoder_weights=None, **kwargs)
    enc = net.get_layer(f"encoder_{name}")
    assert enc.input_shape == (None, SIZE, SIZE, 3)
    assert [tuple(o.shape[1:3]) for o in enc.outputs] == [(SIZE // s, SIZE // s) for s in STRIDES]
    assert "dec1_concat" not in [layer.name for layer in net.layers]  # no full-resolution image skip
    x = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    net.save(offline / "net.keras")
    loaded = keras.saving.load_model(offline / "net.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(net(x)), rtol=1e-5, atol=1e-5)


def test_unknown_encoder_and_weights_are_named() -> None:
    with pytest.raises(ValueError, match="unknown encoder 'resnet'; expected one of efficientnet_lite0"):
        encoders.get("resnet")
    with pytest.raises(ValueError, match="encoder_weights must be"):
        backbone("efficientnet_lite0", SIZE, "noisy-student")
    assert encoders.offline_encoders() == ["efficientnet_lite0", "efficientnet_lite2"]
