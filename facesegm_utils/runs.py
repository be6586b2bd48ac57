"""Saved runs: what ``facesegm train`` leaves in a run folder, read back.

:func:`load_model` loads a ``.keras`` file written by this package (custom losses, metric and
optimizer included), from the file or from its run folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras

from facesegm_utils.callbacks import DatasetMeanIoU
from facesegm_utils.fileio import FacesegmError
from facesegm_utils.losses import CEDiceLoss, SoftDiceLoss, SparseCrossEntropy
from facesegm_utils.optim import EncoderAdam


def custom_objects() -> dict[str, Any]:
    """The package's serializable objects, for ``keras.models.load_model``."""
    return {
        "facesegm>SparseCrossEntropy": SparseCrossEntropy,
        "facesegm>SoftDiceLoss": SoftDiceLoss,
        "facesegm>CEDiceLoss": CEDiceLoss,
        "facesegm>DatasetMeanIoU": DatasetMeanIoU,
        "facesegm>EncoderAdam": EncoderAdam,
    }


def load_model(path: str | os.PathLike[str], compile: bool = False) -> keras.Model:
    """Load a ``.keras`` model saved by this package (custom losses and metric included)."""
    path = Path(path)
    if path.is_dir() and (path / "model.keras").is_file():
        path = path / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(
            f"model not found: {path} (expected a .keras file or a run folder holding model.keras)"
        )
    if path.suffix != ".keras":
        raise FacesegmError(f"cannot load {path}: expected a .keras file written by `facesegm train`")
    return keras.models.load_model(path, compile=compile, custom_objects=custom_objects())
