"""Tests of the U-Net builder and its analytic helpers."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from facesegm_utils import cli, encoders, prepare, synthetic
from facesegm_utils import model as M
from facesegm_utils.fileio import FacesegmError
from facesegm_utils.torchckpt import load_legacy_checkpoint


@pytest.mark.parametrize(
    ("size", "depth", "upsampling"),
    [(32, 2, "transpose"), (64, 3, "bilinear"), (48, 4, "transpose"), (16, 1, "bilinear")],
)
def test_output_shape_and_dtype(size: int, depth: int, upsampling: str) -> None:
    net = M.build_unet(size, num_classes=5, base_filters=4, depth=depth, upsampling=upsampling)
    assert net.input_shape == (None, size, size, 3)
    assert net.output_shape == (None, size, size, 5)
    out = net(np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32"))
    assert tuple(out.shape) == (2, size, size, 5)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_layers_named_by_stage() -> None:
    net = M.build_unet(32, base_filters=4, depth=2)
    names = [layer.name for layer in net.layers]
    for expected in (
        "rescale",
        "enc1_conv1",
        "enc2_pool",
        "bottleneck_conv2",
        "dec2_up",
        "dec1_concat",
        "logits",
    ):
        assert expected in names
    assert [r["stage"] for r in M.stage_summary(net)] == [
        "rescale", "enc1", "enc2", "bottleneck", "dec2", "dec1", "logits"
    ]  # fmt: skip
    assert sum(r["params"] for r in M.stage_summary(net)) == M.count_params(net)


def test_logits_float32_under_mixed_precision() -> None:
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        net = M.build_unet(32, base_filters=4, depth=2)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert net.get_layer("enc1_conv1").compute_dtype == "float16"
    assert keras.backend.standardize_dtype(net.output.dtype) == "float32"


@pytest.mark.slow
def test_encoder_variant_builds_without_weights() -> None:
    net = M.build_unet(64, num_classes=19, base_filters=8, encoder="mobilenetv2", encoder_weights=None)
    out = net(np.zeros((1, 64, 64, 3), "float32"))
    assert tuple(out.shape) == (1, 64, 64, 19)
    with pytest.raises(ValueError, match="not divisible by 32"):
        M.build_unet(48, encoder="mobilenetv2")


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"image_size 100 is not divisible by 16"):
        M.build_unet(100, depth=4)
    with pytest.raises(ValueError, match="upsampling"):
        M.build_unet(32, depth=2, upsampling="nearest")
    with pytest.raises(ValueError, match="unknown encoder 'resnet'"):
        M.build_unet(64, encoder="resnet")


def test_flops_hand_computed() -> None:
    # depth 1, 2 filters, no batch norm, 8x8 input, 3 classes:
    inp = 8 * 8
    enc = 2 * inp * (2 * 9 * 3) + 2 * inp * (2 * 9 * 2)  # enc1 conv1 (3->2), conv2 (2->2) at 8x8
    bott = 2 * 16 * (4 * 9 * 2) + 2 * 16 * (4 * 9 * 4)  # bottleneck at 4x4: 2->4, 4->4
    up = 2 * 16 * 4 * 4 * 2  # transposed 2x2 s2: each of 4x4x4 inputs scatters to 2x2x2 outputs
    dec = 2 * inp * (2 * 9 * 4) + 2 * inp * (2 * 9 * 2)  # concat(2+2)->2, 2->2
    head = 2 * inp * 3 * 2
    net = M.build_unet(8, num_classes=3, base_filters=2, depth=1, batch_norm=False)
    assert M.flops_per_image(net) == enc + bott + up + dec + head


def test_receptive_field_analytic_matches_gradient() -> None:
    analytic = M.receptive_field(depth=2)
    assert analytic["enc1"] == 5 and analytic["bottleneck"] == 32 and analytic["output"] == 44
    keras.utils.set_random_seed(0)
    net = M.build_unet(64, num_classes=3, base_filters=4, depth=2)
    grad = M.gradient_receptive_field(net, samples=8)
    assert grad.shape == (64, 64)
    assert M.field_extent(grad) == analytic["output"]


def test_random_encoder_weights_differ_from_imagenet() -> None:
    random = M.build_unet(64, encoder="efficientnet_lite0", encoder_weights=None, decoder_filters=4)
    stem = np.transpose(load_legacy_checkpoint(encoders.LITE0.path())["_conv_stem.weight"], (2, 3, 1, 0))
    assert not np.allclose(
        random.get_layer("encoder_efficientnet_lite0").get_layer("stem_conv").get_weights()[0], stem
    )
    assert M.weights_source("efficientnet_lite0", None) is None


def test_decoder_widths() -> None:
    assert M.decoder_widths(8) == (128, 64, 32, 16, 8)
    assert M.decoder_widths(8, 16) == (128, 64, 48, 32, 16)
    assert M.decoder_widths(8, [5, 4, 3, 2, 1]) == (5, 4, 3, 2, 1)
    with pytest.raises(ValueError, match="decoder_filters"):
        M.decoder_widths(8, [4, 2])
    with pytest.raises(ValueError, match="needs an encoder"):
        M.build_unet(32, depth=2, encoder_weights="imagenet")


@pytest.mark.slow
def test_unobtainable_imagenet_weights_stop_with_a_clear_error(
    offline: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = keras.applications.MobileNetV2

    def no_download(**kwargs: object) -> keras.Model:
        if kwargs.get("weights") == "imagenet":  # what Keras raises offline without a cached file
            raise Exception("URL fetch failure on https://storage.googleapis.com/...: network disabled")
        return real(**kwargs)

    monkeypatch.setattr(keras.applications, "MobileNetV2", no_download)
    with pytest.raises(FacesegmError, match=r"encoder 'mobilenetv2'.*--encoder efficientnet_lite0"):
        M.build_unet(64, encoder="mobilenetv2", encoder_weights="imagenet", base_filters=4)
    raw = synthetic.write_dataset(offline / "raw", count=6, size=64, seed=0)
    prep = offline / "prep"
    prepare.prepare_dataset(raw, prep, 32, split="ratio", ratios=(0.5, 0.25, 0.25), workers=1)
    argv = ["train", "--data", str(prep), "--out", str(offline / "run"), "--image-size", "32"]
    argv += ["--epochs", "1", "--encoder", "mobilenetv2", "--encoder-weights", "imagenet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "encoder 'mobilenetv2'" in err[-1] and "efficientnet_lite0" in err[-1]
    assert not (offline / "run" / "model.keras").exists()


def test_encoder_features_shapes() -> None:
    net = M.build_unet(64, encoder="efficientnet_lite0", encoder_weights=None, decoder_filters=2)
    feats = M.encoder_features(net, np.zeros((1, 64, 64, 3), "float32"))
    assert [f.shape for f in feats] == [
        (1, 32, 32, 16),
        (1, 16, 16, 24),
        (1, 8, 8, 40),
        (1, 4, 4, 112),
        (1, 2, 2, 320),
    ]
    with pytest.raises(ValueError, match="no pretrained encoder"):
        M.encoder_features(M.build_unet(32, base_filters=2, depth=2), np.zeros((1, 32, 32, 3), "float32"))
