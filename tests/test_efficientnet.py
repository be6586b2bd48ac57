"""Tests of EfficientNet-Lite0 and -Lite2 in Keras with the packaged ImageNet weights."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import cv2
import keras
import matplotlib.cbook
import numpy as np
import pytest

from facesegm_utils import efficientnet as E
from facesegm_utils import torchckpt
from facesegm_utils.encoders import ENCODERS, LITE0, LITE2
from facesegm_utils.fileio import FacesegmError

#: 0-based indices of the 1000 ImageNet classes (the Keras / torchvision order); "military uniform" is
#: 652 here and 653 in the 1001-class TF-slim order that puts "background" first
MILITARY_UNIFORM = 652
#: classes the Grace Hopper photo plausibly shows: military uniform, bulletproof vest, suit, Windsor tie, bow tie,
#: mortarboard, academic gown, lab coat, trench coat, ballplayer (a uniformed person: Lite2's third guess)
PLAUSIBLE = {652, 465, 834, 906, 457, 667, 400, 617, 869, 981}


@pytest.fixture(scope="module")
def cache(weights_cache: Path) -> Path:
    return weights_cache


@pytest.fixture(autouse=True)
def _private_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESEGM_CACHE", str(cache))


def _float_tensors(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in state.items() if v.dtype.kind == "f"}


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return torchckpt.load_legacy_checkpoint(LITE0.path())


LITES = ("efficientnet_lite0", "efficientnet_lite2")
_NETS: dict[str, keras.Model] = {}


def classifier(name: str) -> keras.Model:
    """The ImageNet classifier of a registered Lite encoder at its native size, built once per session."""
    if name not in _NETS:
        entry = ENCODERS[name]
        _NETS[name] = entry.build(entry.native_size, True, True)
    return _NETS[name]


def photo(path: Path | str, size: int) -> np.ndarray:
    image = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype("float32")


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
@pytest.mark.parametrize("name", LITES)
def test_classifier_parameters_and_grace_hopper(name: str) -> None:
    entry = ENCODERS[name]
    net = classifier(name)
    checkpoint = torchckpt.load_legacy_checkpoint(entry.weights.path())
    assert net.count_params() == sum(v.size for v in _float_tensors(checkpoint).values())
    assert E.convert_state_dict(checkpoint, entry.weights.variant)[1] == set(_float_tensors(checkpoint))
    image = photo(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), entry.native_size)
    batch = np.stack([image, image[:, ::-1]])  # the photo and its mirror image
    top5 = np.argsort(-np.asarray(net(batch)), axis=-1)[:, :5]
    for row in top5:
        assert MILITARY_UNIFORM in row, row
        assert set(row[:3]) <= PLAUSIBLE, row


def test_random_weights_do_not_know_grace_hopper() -> None:
    keras.utils.set_random_seed(0)
    random_net = E.efficientnet_lite("lite0", include_top=True)
    image = photo(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), 224)
    assert MILITARY_UNIFORM not in np.argsort(-np.asarray(random_net(image[None])), axis=-1)[0, :5]


#: scikit-image (a test dependency) ships photos inside its wheel; read as files, no skimage import needed
SKIMAGE_PHOTOS = {"chelsea.png": {281, 282, 283, 284, 285}, "coffee.png": {967}}  # the cats; espresso


@pytest.mark.slow
@pytest.mark.parametrize("name", LITES)
def test_more_photos_a_dependency_ships(name: str) -> None:
    spec = importlib.util.find_spec("skimage")
    assert spec is not None, "scikit-image (dev extra) ships the photos this test classifies"
    folder = Path(spec.submodule_search_locations[0]) / "data"
    net, size = classifier(name), ENCODERS[name].native_size
    for file, expected in SKIMAGE_PHOTOS.items():
        top1 = int(np.argmax(np.asarray(net(photo(folder / file, size)[None]))[0]))
        assert top1 in expected, (file, top1)


def test_lite2_scales_lite0() -> None:
    """Width 1.1 and depth 1.2, stem, head and first/last repeats fixed: the checkpoint's 21 blocks."""
    assert [s[0] for s in E.stages("lite2")] == [1, 3, 3, 4, 4, 5, 1]
    assert [s[4] for s in E.stages("lite2")] == [16, 24, 48, 88, 120, 208, 352]
    assert E.feature_blocks("lite2") == {2: 0, 4: 3, 8: 6, 16: 14, 32: 20}
    assert E.feature_blocks("lite0") == E.FEATURE_BLOCKS
    with pytest.raises(FacesegmError, match="unknown EfficientNet-Lite variant"):
        E.stages("lite9")
    with pytest.raises(FacesegmError, match="not lite0"):
        E.efficientnet_lite("lite0", checkpoint=LITE2)


def test_conversion_runs_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = E.converted_weights_file(None, LITE0.conversion())
    assert first.parent == cache and first.name.endswith(".weights.h5")
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]

    def fail(*args: object) -> None:
        raise AssertionError("the checkpoint was converted a second time")

    monkeypatch.setattr(torchckpt, "load_legacy_checkpoint", fail)
    assert E.converted_weights_file(None, LITE0.conversion()) == first


def test_a_changed_checkpoint_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESEGM_CACHE", str(tmp_path / "empty"))
    wrong = dataclasses.replace(LITE0, sha256="0" * 64)
    with pytest.raises(FacesegmError, match="not the expected 0000"):
        E.converted_weights_file(None, wrong.conversion())
    missing = dataclasses.replace(LITE0, module="no_such_weights_package", requirement="no-such==1")
    with pytest.raises(FacesegmError, match="pip install no-such==1"):
        missing.path()


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
