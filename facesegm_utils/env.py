"""What a notebook's first cell reports: library versions and whether a GPU is present.

Nothing here runs at import time; TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata


def versions() -> dict[str, str]:
    """Installed versions of the libraries the course relies on ("missing" where absent)."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in (
        "tensorflow",
        "keras",
        "numpy",
        "opencv-python-headless",
        "matplotlib",
        "papermill",
        "ipywidgets",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def gpus() -> list[str]:
    """Names of the GPUs TensorFlow sees (empty on a CPU-only machine)."""
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def report(require_tf: str = "2.21", require_keras: str = "3") -> dict[str, object]:
    """Print versions and GPU presence; raise if TensorFlow/Keras are not the versions the course targets."""
    info: dict[str, object] = dict(versions())
    tf_version = str(info["tensorflow"])
    keras_version = str(info["keras"])
    if not tf_version.startswith(require_tf):
        raise RuntimeError(
            f"this course needs TensorFlow {require_tf}.*, found {tf_version}; run `make install`"
        )
    if not keras_version.startswith(require_keras):
        raise RuntimeError(
            f"this course needs Keras {require_keras}.x, found {keras_version}; run `make install`"
        )
    found = gpus()
    info["gpus"] = found
    for key, value in info.items():
        print(f"{key:>24}: {value}")
    print(
        f"{'GPU':>24}: {'yes, ' + str(len(found)) if found else 'no - running on the CPU (fine for the quick profile)'}"
    )
    return info
