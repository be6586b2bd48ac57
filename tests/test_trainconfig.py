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
    args = parser.parse_args(["--data", "d", "--out", "o", "--cache", "disk"])
    cfg = TrainConfig(data="d", out="o", cache=args.cache)
    cfg.validate()
    assert command_line(cfg) == "facesegm train --data d --out o --cache disk"
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "d", "--out", "o", "--cache", "ram"])
    with pytest.raises(ValueError, match="cache must be one of memory, disk, none"):
        TrainConfig(data="d", out="o", cache="ram").validate()
