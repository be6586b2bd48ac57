"""Tests of the optimizer with a slower or frozen pretrained encoder."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import pytest

from facesegm_utils import optim


def _toy() -> keras.Model:
    """A model with an ``encoder_toy`` sub-model (one Dense) and a head outside it."""
    inp = keras.Input((3,))
    enc_in = keras.Input((3,))
    encoder = keras.Model(enc_in, keras.layers.Dense(4, name="enc_dense")(enc_in), name="encoder_toy")
    out = keras.layers.Dense(2, name="head")(encoder(inp))
    return keras.Model(inp, out)


def _step(model: keras.Model, opt: keras.optimizers.Optimizer, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights moved by ``steps`` Adam steps (encoder kernel delta, head kernel delta)."""
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    y = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")
    enc0 = model.get_layer("encoder_toy").get_layer("enc_dense").kernel.numpy().copy()
    head0 = model.get_layer("head").kernel.numpy().copy()
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=8, epochs=steps, verbose=0, shuffle=False)
    enc = model.get_layer("encoder_toy").get_layer("enc_dense").kernel.numpy()
    return np.abs(enc - enc0).max(), np.abs(model.get_layer("head").kernel.numpy() - head0).max()


def test_encoder_prefixes_and_plain_adam() -> None:
    model = _toy()
    assert optim.encoder_prefixes(model) == ("enc_dense/",)
    assert type(optim.make_optimizer(model, 1e-3)) is keras.optimizers.Adam
    assert isinstance(optim.make_optimizer(model, 1e-3, 0.1), optim.EncoderAdam)


def test_scaled_encoder_learning_rate() -> None:
    keras.utils.set_random_seed(0)
    # Adam's first step moves every weight by about lr, whatever the gradient's size: 0.01 and 0.001
    model = _toy()
    enc, head = _step(model, optim.make_optimizer(model, 1e-2, encoder_lr_scale=0.1), 1)
    assert head == pytest.approx(1e-2, rel=1e-3)
    assert enc == pytest.approx(1e-3, rel=1e-3)


def test_frozen_encoder_then_training() -> None:
    keras.utils.set_random_seed(0)
    model = _toy()
    opt = optim.make_optimizer(model, 1e-2, frozen_steps=2)
    enc, head = _step(model, opt, 2)
    assert enc == 0.0 and head > 0
    enc, _ = _step(model, opt, 1)
    assert enc > 0


def test_config_round_trip() -> None:
    opt = optim.EncoderAdam(1e-3, ("a/", "b/"), 0.25, 7)
    again = optim.EncoderAdam.from_config(opt.get_config())
    assert (again.encoder_prefixes, again.encoder_lr_scale, again.frozen_steps) == (("a/", "b/"), 0.25, 7)
    with pytest.raises(ValueError, match="encoder_lr_scale"):
        optim.EncoderAdam(1e-3, ("a/",), -1.0)


@pytest.mark.slow
def test_training_with_a_frozen_pretrained_encoder(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from facesegm_utils import efficientnet, prepare, synthetic, training
    from facesegm_utils.runs import load_model
    from facesegm_utils.trainconfig import TrainConfig

    monkeypatch.setenv("FACESEGM_CACHE", str(tmp_path / "cache"))
    raw = synthetic.write_dataset(tmp_path / "raw", count=8, size=64, seed=0)
    prepare.prepare_dataset(raw, tmp_path / "prep", 32, split="ratio", ratios=(0.5, 0.25, 0.25), workers=1)
    cfg = TrainConfig(
        data=str(tmp_path / "prep"),
        out=str(tmp_path / "run"),
        epochs=2,
        batch_size=2,
        encoder="efficientnet_lite0",
        encoder_weights="imagenet",
        decoder_filters=2,
        freeze_encoder_epochs=2,
        mixed_precision="off",
        strategy="default",
        patience=5,
    )
    result = training.train(cfg)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["encoder_weights_loaded"] == efficientnet.WEIGHTS_SOURCE
    model = load_model(result["model_path"])
    encoder = model.get_layer("encoder_efficientnet_lite0")
    pretrained = efficientnet.efficientnet_lite0(
        include_top=False, weights="imagenet", input_shape=(32, 32, 3)
    )
    for name in ("stem_conv", "block15_project_conv"):  # frozen all along: exactly the ImageNet kernels
        np.testing.assert_array_equal(
            encoder.get_layer(name).get_weights()[0], pretrained.get_layer(name).get_weights()[0]
        )


def _rates(schedule: keras.optimizers.schedules.LearningRateSchedule, steps: Sequence[int]) -> np.ndarray:
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def test_cosine_schedule_resumed_with_more_epochs_does_not_jump() -> None:
    """The issue's case: stopped at epoch 20 of 30, resumed with 60 epochs (10 steps an epoch)."""
    lr, steps = 3e-3, 10
    first = optim.cosine_schedule(lr, 30, steps, warmup_epochs=1)
    resumed = optim.cosine_schedule(lr, 30, steps, warmup_epochs=1, resumes=[(20, 60)])
    after = _rates(resumed, [200, 201, *range(210, 601, 10)])  # the resumed run's steps
    assert after[0] == pytest.approx(_rates(first, [200])[0], rel=1e-6)
    assert after[0] == pytest.approx(8.2e-4, rel=0.05)  # where the 30-epoch schedule stood, not 2.3e-3
    assert 0 <= after[0] - after[1] < 1e-5 and np.all(np.diff(after) <= 1e-12)  # one small step, only down
    assert after[-1] == pytest.approx(lr / 100, rel=1e-5)
    extended = optim.cosine_schedule(lr, 30, steps, warmup_epochs=1, resumes=[(20, 60), (60, 80)])
    np.testing.assert_allclose(_rates(extended, range(600, 801, 20)), lr / 100, rtol=1e-5)  # a finished run
