"""Tests of EfficientNet-Lite0 in Keras with the packaged ImageNet weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import keras
import matplotlib.cbook
import numpy as np
import pytest

from facesegm_utils import efficientnet as E
from facesegm_utils import torchckpt
from facesegm_utils.fileio import FacesegmError

#: 0-based indices of the 1000 ImageNet classes (the Keras / torchvision order); "military uniform" is
#: 652 here and 653 in the 1001-class TF-slim order that puts "background" first
MILITARY_UNIFORM = 652
#: classes the Grace Hopper photo plausibly shows: military uniform, bulletproof vest, suit, Windsor tie, bow tie,
#: mortarboard, academic gown, lab coat, trench coat
PLAUSIBLE = {652, 465, 834, 906, 457, 667, 400, 617, 869}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("facesegm_cache")


@pytest.fixture(autouse=True)
def _private_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESEGM_CACHE", str(cache))


def _float_tensors(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in state.items() if v.dtype.kind == "f"}


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return torchckpt.load_legacy_checkpoint(E.checkpoint_path())


def test_checkpoint_tensors_all_used(state: dict[str, np.ndarray]) -> None:
    floats = _float_tensors(state)
    assert len(floats) == 247
    weights, used = E.convert_state_dict(state)
    assert used == set(floats)  # every float tensor, and only those (not num_batches_tracked)
    assert set(state) - used == {k for k in state if k.endswith("num_batches_tracked")}
    assert weights["stem_conv"][0].shape == (3, 3, 3, 32)
    assert weights["block1_dw_conv"][0].shape == (3, 3, 96, 1)
    assert weights["predictions"][0].shape == (1280, 1000)
    with pytest.raises(FacesegmError, match="no tensor"):
        E.convert_state_dict({k: v for k, v in state.items() if k != "_conv_head.weight"})


@pytest.mark.slow
def test_classifier_parameters_and_grace_hopper(state: dict[str, np.ndarray]) -> None:
    net = E.efficientnet_lite0(include_top=True, weights="imagenet")
    expected = sum(v.size for v in _float_tensors(state).values())
    assert net.count_params() == expected
    assert 4.6e6 < expected < 4.8e6
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    image = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype("float32")
    batch = np.stack([image, image[:, ::-1]])  # the photo and its mirror image
    top5 = np.argsort(-np.asarray(net(batch)), axis=-1)[:, :5]
    for row in top5:
        assert MILITARY_UNIFORM in row, row
        assert set(row[:3]) <= PLAUSIBLE, row
    keras.utils.set_random_seed(0)
    random_net = E.efficientnet_lite0(include_top=True, weights=None)
    assert MILITARY_UNIFORM not in np.argsort(-np.asarray(random_net(batch[:1])), axis=-1)[0, :5]


#: scikit-image (a test dependency) ships photos inside its wheel; read as files, no skimage import needed
SKIMAGE_PHOTOS = {"chelsea.png": {281, 282, 283, 284, 285}, "coffee.png": {967}}  # the cats; espresso


@pytest.mark.slow
def test_more_photos_a_dependency_ships() -> None:
    spec = importlib.util.find_spec("skimage")
    assert spec is not None, "scikit-image (dev extra) ships the photos this test classifies"
    folder = Path(spec.submodule_search_locations[0]) / "data"
    net = E.efficientnet_lite0(include_top=True, weights="imagenet")
    for name, expected in SKIMAGE_PHOTOS.items():
        image = cv2.cvtColor(cv2.imread(str(folder / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype("float32")
        top1 = int(np.argmax(np.asarray(net(image[None]))[0]))
        assert top1 in expected, (name, top1)


def test_conversion_runs_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = E.converted_weights_file()
    assert first.parent == cache and first.name.endswith(".weights.h5")
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]

    def fail(*args: object) -> None:
        raise AssertionError("the checkpoint was converted a second time")

    monkeypatch.setattr(torchckpt, "load_legacy_checkpoint", fail)
    assert E.converted_weights_file() == first


def test_features_without_top() -> None:
    net = E.efficientnet_lite0(include_top=False, weights="imagenet", input_shape=(64, 64, 3))
    assert net.output_shape == (None, 2, 2, 1280)
    for stride, block in E.FEATURE_BLOCKS.items():
        assert net.get_layer(f"block{block}_out").output.shape[1] == 64 // stride
    assert len(E.block_specs()) == 16
    with pytest.raises(FacesegmError, match="weights must be"):
        E.efficientnet_lite0(weights="noisy-student")


def test_checkpoint_hash_is_pinned_and_names_the_cache() -> None:
    assert torchckpt.file_sha256(E.checkpoint_path()) == E.CHECKPOINT_SHA256
    assert E.CHECKPOINT_NAME.split("-")[-1].split(".")[0] == E.CHECKPOINT_SHA256[:8]
    name = E.cache_file().name
    assert E.CHECKPOINT_SHA256[:16] in name and f"_c{E.CONVERTER_VERSION}." in name


def _stem_only() -> keras.Model:
    """A one-layer stand-in for the classifier: the checkpoint's stem convolution."""
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, keras.layers.Conv2D(32, 3, use_bias=False, name="stem_conv")(inputs))


#: the cache machinery with a cheap model: the real checkpoint (hash-checked), its stem tensor only
STEM_ONLY = E.Conversion(
    stem="test_stem_only",
    build=_stem_only,
    convert=lambda state: ({"stem_conv": E._conv(state, "_conv_stem.weight", set())}, {"_conv_stem.weight"}),
)


@pytest.mark.parametrize("planted", ["random weights", "garbage with its hash recorded"])
def test_untrusted_cache_file_is_converted_again(
    planted: str,
    state: dict[str, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FACESEGM_CACHE", str(tmp_path))
    net = _stem_only()
    target = E.cache_file(STEM_ONLY.stem)
    target.parent.mkdir(parents=True, exist_ok=True)
    if planted == "random weights":  # a valid weights file, but not ImageNet's
        net.save_weights(target)
    else:  # a recorded hash does not make an unreadable file loadable
        target.write_bytes(b"not an HDF5 file")
        target.with_name(target.name + ".sha256").write_text(torchckpt.file_sha256(target) + "\n")
    E.load_converted_weights(net, STEM_ONLY)
    expected = np.transpose(state["_conv_stem.weight"], (2, 3, 1, 0))
    np.testing.assert_array_equal(np.asarray(net.get_layer("stem_conv").kernel), expected)
    notices = [line for line in capsys.readouterr().out.splitlines() if "not trusted" in line]
    assert len(notices) == 1 and str(target) in notices[0]
    assert E._unverified(target) is None  # the reconverted file and its recorded hash agree
    E.load_converted_weights(net, STEM_ONLY)  # now trusted: no notice, no conversion
    assert "not trusted" not in capsys.readouterr().out
