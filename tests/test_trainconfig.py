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
