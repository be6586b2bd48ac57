"""One recipe: the course profiles override only what is a matter of scale, never the training recipe."""

from __future__ import annotations

import dataclasses

from facesegm_utils import course
from facesegm_utils.trainconfig import TrainConfig

#: what a profile may set: sizes, counts, durations, model scale, hardware and display flags
SCALE_KEYS = {
    # every notebook
    "PROFILE", "IMAGE_SIZE", "SEED",
    # data exploration and preparation
    "N_SHOW", "STATS_LIMIT", "SPLIT", "WORKERS",
    # model scale
    "BASE_FILTERS", "DEPTH", "ENCODER", "ENCODER_WEIGHTS", "DECODER_FILTERS",
    # training length, batch, hardware
    "EPOCHS", "STEPS", "BATCH_SIZE", "MIXED_PRECISION",
    # the short demonstrations of notebook 04 (loss comparison, scratch vs pretrained)
    "COMPARE_LOSSES", "COMPARE_EPOCHS", "COMPARE_STEPS", "SIDE_BY_SIDE_EPOCHS", "SIDE_BY_SIDE_STEPS",
    # evaluation and recolouring demonstrations
    "N_EXAMPLES", "INTERACTIVE", "LIP_COLOR", "HAIR_COLOR", "STRENGTH", "N_FRAMES",
    # export and deploy (notebook 07): how many faces check parity, how many timing rounds
    "PARITY_FACES", "LATENCY_ROUNDS",
}  # fmt: skip
#: the recipe: TrainConfig's defaults, which no profile may change
RECIPE_KEYS = {"LOSS", "CLASS_WEIGHTS", "LEARNING_RATE", "LR", "SCHEDULE", "PATIENCE", "AUGMENT", "DROPOUT"}


def test_profiles_override_only_scale_keys() -> None:
    profiles = course.load_profiles()
    for name, profile in profiles.items():
        if name.startswith("_"):
            continue
        sections = [profile.get("common", {}), *profile.get("notebooks", {}).values()]
        for params in sections:
            extra = set(params) - SCALE_KEYS
            assert not extra, f"profile {name!r} overrides {sorted(extra)}, which are not scale keys"


def test_recipe_keys_are_training_options_not_scale() -> None:
    options = {f.name.upper() for f in dataclasses.fields(TrainConfig)}
    assert {"LOSS", "CLASS_WEIGHTS", "SCHEDULE", "LR", "PATIENCE", "AUGMENT"} <= options
    assert not (RECIPE_KEYS & SCALE_KEYS)


def test_full_profile_trains_the_pretrained_encoder() -> None:
    full = course.load_profiles()["full"]["notebooks"]["04_training"]
    assert (full["ENCODER"], full["ENCODER_WEIGHTS"]) == ("efficientnet_lite0", "imagenet")
