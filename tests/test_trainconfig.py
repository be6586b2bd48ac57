"""Tests of the training configuration: round trip, option checks."""

from __future__ import annotations

import pytest

from facesegm_utils.trainconfig import TrainConfig


def test_config_round_trip_and_bad_option() -> None:
    cfg = TrainConfig(data="d", out="o", loss="dice", epochs=3)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(data="d", out="o", loss="focal").validate()
    with pytest.raises(ValueError, match="unknown training options"):
        TrainConfig.from_dict({"data": "d", "out": "o", "lrate": 1})


def test_cache_option_parses_validates_and_reproduces() -> None:
    import argparse

    from facesegm_utils.trainconfig import add_arguments, command_line

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--data", "d", "--out", "o"]).cache == "memory"
    args = parser.parse_args(["--data", "d", "--out", "o", "--cache", "none"])
    cfg = TrainConfig(data="d", out="o", cache=args.cache)
    cfg.validate()
    assert command_line(cfg) == "facesegm train --data d --out o --cache none"
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "d", "--out", "o", "--cache", "ram"])
    with pytest.raises(ValueError, match="cache must be one of memory, none"):
        TrainConfig(data="d", out="o", cache="ram").validate()


def test_encoder_options_parse_validate_and_reproduce() -> None:
    import argparse

    from facesegm_utils.trainconfig import add_arguments, command_line

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--data", "d", "--out", "o", "--encoder", "none", "--encoder-weights", "none"]
    args = parser.parse_args([*argv, "--decoder-filters", "12", "--encoder-lr-scale", "0.5"])
    assert (args.encoder, args.encoder_weights, args.decoder_filters, args.encoder_lr_scale) == (
        None,
        None,
        12,
        0.5,
    )
    cfg = TrainConfig(data="d", out="o", encoder=None, encoder_weights=None)
    cfg.validate()
    default = TrainConfig(data="d", out="o")
    if default.encoder is not None:  # switching the default encoder off is reproduced as "--encoder none"
        assert "--encoder none" in command_line(cfg)
    cfg = TrainConfig(
        data="d", out="o", encoder="efficientnet_lite0", encoder_weights="imagenet", freeze_encoder_epochs=2
    )
    cfg.validate()
    assert parser.parse_args(command_line(cfg).split()[2:]).freeze_encoder_epochs == 2
    for bad, match in (
        ({"encoder": None, "encoder_weights": "imagenet"}, "needs an encoder"),
        ({"encoder_weights": "coco"}, "encoder_weights must be"),
        ({"encoder_lr_scale": 2.0}, "encoder_lr_scale"),
        ({"freeze_encoder_epochs": -1}, "freeze_encoder_epochs"),
        ({"decoder_filters": 0}, "decoder_filters"),
    ):
        with pytest.raises(ValueError, match=match):
            TrainConfig(data="d", out="o", **bad).validate()
