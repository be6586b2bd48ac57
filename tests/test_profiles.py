"""One recipe: the course profiles override only what is a matter of scale, never the training recipe."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import nbformat

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


def test_profiles_override_only_scale_keys() -> None:
    profiles = course.load_profiles()
    for name, profile in profiles.items():
        if name.startswith("_"):
            continue
        sections = [profile.get("common", {}), *profile.get("notebooks", {}).values()]
        for params in sections:
            extra = set(params) - SCALE_KEYS
            assert not extra, f"profile {name!r} overrides {sorted(extra)}, which are not scale keys"


def _train_config_keywords(notebook: Path) -> list[set[str]]:
    """The keyword names of every ``TrainConfig(...)`` call in a notebook's code cells."""
    calls = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(
            line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "TrainConfig"
            ):
                calls.append({k.arg for k in node.keywords if k.arg})
    return calls


def test_notebooks_leave_the_recipe_to_trainconfig_defaults() -> None:
    """The notebooks build their training configurations from scale options only: no recipe option."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    recipe = {"loss", "class_weights", "lr", "schedule", "patience", "augment", "dropout", "warmup_epochs"}
    assert recipe <= fields
    scale = {"data", "out", *course.TRAIN_OPTIONS.values()}
    assert set(course.TRAIN_OPTIONS) <= SCALE_KEYS and not scale & recipe
    calls = [kw for nb in course.list_notebooks() for kw in _train_config_keywords(nb)]
    assert len(calls) >= 3  # notebook 04's loss comparison, main run and side-by-side base
    for keywords in calls:
        assert keywords <= scale, f"a notebook sets recipe option(s) {sorted(keywords - scale)}"


def test_full_profile_trains_the_pretrained_encoder() -> None:
    full = course.load_profiles()["full"]["notebooks"]["04_training"]
    assert (full["ENCODER"], full["ENCODER_WEIGHTS"]) == ("efficientnet_lite0", "imagenet")
