"""Shared test fixtures: a small synthetic dataset in the raw CelebAMask-HQ layout."""

from __future__ import annotations

import functools
import socket
from pathlib import Path

import pytest

from facesegm_utils import synthetic

#: what ``synthetic_raw`` holds: faces 0..SYNTH_COUNT-1 at SYNTH_SIZE x SYNTH_SIZE, seed SYNTH_SEED
SYNTH_COUNT = 12
SYNTH_SIZE = 64
SYNTH_SEED = 0
#: the tiny trained model of ``tiny_run``: its input size
TINY_SIZE = 64


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw CelebAMask-HQ-layout folder with 12 synthetic faces at 64x64 (seed 0); treat it as read-only."""
    out = tmp_path_factory.mktemp("synthetic_raw")
    return synthetic.write_dataset(out, count=SYNTH_COUNT, size=SYNTH_SIZE, seed=SYNTH_SEED)


@pytest.fixture(scope="session")
def quick_course(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The whole course run once per session in the quick profile (as `make course`); the summary dict."""
    from facesegm_utils import course

    out = tmp_path_factory.mktemp("course")
    return course.run_course("quick", None, out)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with a tiny U-Net trained briefly on synthetic faces at 64² (not a random model:
    its logits have clear winners, as a trained model's do)."""
    import keras
    import numpy as np

    from facesegm_utils.celebamask import merge_parts
    from facesegm_utils.model import build_unet

    keras.utils.set_random_seed(0)
    faces = [synthetic.generate_face(1, k, TINY_SIZE) for k in range(16)]
    x = np.stack([f[0] for f in faces]).astype(np.float32)
    y = np.stack([merge_parts(f[1]) for f in faces])
    model = build_unet(TINY_SIZE, base_filters=4, depth=2)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=25, verbose=0)
    run = tmp_path_factory.mktemp("tiny_run")
    model.save(run / "model.keras")
    return run


@pytest.fixture(scope="session")
def weights_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One private cache of converted ImageNet weights per session (each checkpoint converted once)."""
    return tmp_path_factory.mktemp("facesegm_cache")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, weights_cache: Path) -> Path:
    """Every socket connection refused; private caches (the session's converted weights, an empty
    Keras one)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("FACESEGM_CACHE", str(weights_cache))
    from keras.src.utils import file_utils

    get_file = functools.partial(file_utils.get_file, cache_dir=str(tmp_path / "keras"))
    monkeypatch.setattr(file_utils, "get_file", get_file)
    return tmp_path
