"""Saved runs: what ``facesegm train`` leaves in a run folder, read back.

A run folder holds ``model.keras`` (the best epoch), ``config.json`` (the options, what they resolved
to, the status), ``history.csv``, ``logs/`` and ``backup/`` (the last epoch's weights and optimizer
state). :func:`load_model` loads the model; :func:`run_state` decides what training the same folder
again does: start, resume an interrupted run, extend a finished one, or nothing (complete).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from facesegm_utils.callbacks import VAL_MIOU, DatasetMeanIoU
from facesegm_utils.fileio import FacesegmError, read_history
from facesegm_utils.labels import CLASSES, NUM_CLASSES
from facesegm_utils.losses import CEDiceLoss, SoftDiceLoss, SparseCrossEntropy
from facesegm_utils.model import weights_source
from facesegm_utils.optim import EncoderAdam
from facesegm_utils.pipeline import PreparedData
from facesegm_utils.trainconfig import RESUME_MAY_CHANGE, TrainConfig, TrainPlan, command_line


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


#: the run folder's files
CONFIG, HISTORY, MODEL, BACKUP = "config.json", "history.csv", "model.keras", "backup"


def read_record(run: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A run folder's ``config.json`` (None when there is none); ``FacesegmError`` when it cannot be read."""
    path = Path(run) / CONFIG
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FacesegmError(f"cannot read {path} ({exc}); use --restart to move the run aside") from None
    if not isinstance(record, dict):
        raise FacesegmError(f"{path} holds no run record; use --restart to move the run aside")
    return record


def backup_epoch(run: str | os.PathLike[str]) -> int | None:
    """The epochs the weights in ``RUN/backup/`` hold (Keras' ``BackupAndRestore``); None without a backup."""
    backup = Path(run) / BACKUP
    if not (backup / "latest.weights.h5").is_file():
        return None
    try:
        return int(json.loads((backup / "training_metadata.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resume_differences(record: dict[str, Any], cfg: TrainConfig, image_size: int) -> list[str]:
    """``"name: old -> new"`` for every option of ``cfg`` that differs from a run's ``config.json``
    (``record``), leaving out :data:`~facesegm_utils.trainconfig.RESUME_MAY_CHANGE`. ``image_size`` is
    the size ``cfg`` resolves to; an option the old record lacks counts as its default."""
    new = {**cfg.to_dict(), "image_size": image_size}
    defaults = TrainConfig(data="", out="").to_dict()
    out = []
    for name, value in new.items():
        if name in RESUME_MAY_CHANGE:
            continue
        old = record.get(name, defaults[name])
        if name == "data":
            old, value = str(Path(old).resolve()), str(Path(value).resolve())
        if old != value and not (isinstance(old, list) and list(value or []) == old):
            out.append(f"{name}: {old!r} -> {value!r}")
    return out


@dataclass(frozen=True)
class RunState:
    """What ``facesegm train`` does with its run folder."""

    #: ``new`` (start), ``resume`` (continue an interrupted run), ``extend`` (a finished run, more
    #: epochs) or ``complete`` (a finished run: nothing to do, nothing changes)
    mode: str
    #: the run's earlier ``config.json``, if any
    record: dict[str, Any] | None = None
    #: the epochs the last weights hold (0 for a new run)
    done: int = 0
    #: ``(first epoch, last epoch)`` of each learning-rate segment; a resume that changes ``epochs``
    #: adds one (see :func:`facesegm_utils.optim.cosine_schedule`)
    segments: tuple[tuple[int, int], ...] = ()


def run_state(
    run: str | os.PathLike[str], cfg: TrainConfig, image_size: int, restart: bool = False
) -> RunState:
    """Whether ``cfg`` starts, resumes, extends or finds complete the run in ``run``.

    Raises ``FacesegmError`` when the run was made with other options (than ``RESUME_MAY_CHANGE``),
    when ``--epochs`` would train no epoch of an interrupted run, or when a finished run kept no last
    weights to extend. A run stopped by a NaN loss, or before its first epoch ended, starts over.
    """
    record = None if restart else read_record(run)
    if record is None:
        return RunState("new", segments=((0, cfg.epochs),))
    diffs = resume_differences(record, cfg, image_size)
    if diffs:
        raise FacesegmError(
            f"{run} holds a run made with other options, so it cannot be continued with these:\n  "
            + "\n  ".join(diffs)
            + f"\nRun with the old options to continue it, or add --restart to move {run} aside (renamed, "
            f"nothing deleted) and start over. Options that may change: {', '.join(RESUME_MAY_CHANGE)}."
        )
    done, finished = backup_epoch(run), record.get("status") == "finished"
    epochs = int(record.get("epochs", TrainConfig(data="", out="").epochs))
    if finished:
        if cfg.epochs <= epochs:
            return RunState("complete", record, done or 0)
        if done is None:
            raise FacesegmError(
                f"{run} is a finished run that kept no last weights to extend; use --restart to train again"
            )
    elif done is None or record.get("status") != "running":
        return RunState("new", segments=((0, cfg.epochs),))
    if cfg.epochs <= done:
        raise FacesegmError(
            f"{run} has trained {done} of its {epochs} epochs, so --epochs {cfg.epochs} leaves "
            f"nothing to train; give more to continue it, or --restart to start over"
        )
    segments = tuple((int(a), int(b)) for a, b in record.get("schedule_segments") or [(0, epochs)])
    if cfg.epochs != segments[-1][1]:
        segments += ((done, cfg.epochs),)
    return RunState("extend" if finished else "resume", record, done, segments)


def complete_line(record: dict[str, Any]) -> str:
    """The one line ``facesegm train`` prints for a finished run it leaves as it is."""
    best = record.get("best_val_miou")
    score = f"{best:.3f}" if isinstance(best, (int, float)) else "n/a"
    return (
        f"run complete: best val mIoU {score} at epoch {record.get('best_epoch')}; "
        "--restart to train again, or --epochs N to extend"
    )


def move_aside(run: Path) -> Path | None:
    """Rename a non-empty run folder to ``RUN.old-YYYYmmdd-HHMMSS`` (nothing is deleted); the new name."""
    if not run.is_dir() or not any(run.iterdir()):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = run.with_name(f"{run.name}.old-{stamp}"), 1
    while target.exists():
        target, n = run.with_name(f"{run.name}.old-{stamp}-{n}"), n + 1
    run.rename(target)
    print(f"moved the earlier run {run} aside to {target}")
    return target


def new_record(
    cfg: TrainConfig,
    data: PreparedData,
    plan: TrainPlan,
    policy: str,
    strategy_name: str,
    loss: keras.losses.Loss,
    segments: tuple[tuple[int, int], ...],
) -> dict[str, Any]:
    """``config.json`` of a run that starts: every option, what they resolved to, the data, the
    versions, the command, ``status: running``. ``class_weight_values`` are the class weights ``loss``
    uses (None when it uses none, as Dice)."""
    from facesegm_utils import env

    class_weights = getattr(loss, "class_weights", None)

    return {
        **cfg.to_dict(),
        "image_size": data.image_size,
        "num_classes": NUM_CLASSES,
        "classes": list(CLASSES),
        "dtype_policy": policy,
        "strategy_name": strategy_name,
        "replicas": plan.replicas,
        "global_batch_size": plan.global_batch,
        "lr_effective": plan.lr,
        "steps_per_epoch": plan.steps_per_epoch,
        "schedule_segments": [list(seg) for seg in segments],
        "class_weight_values": list(class_weights) if class_weights else None,
        "encoder_weights_loaded": weights_source(cfg.encoder, cfg.encoder_weights),
        "dataset": {k: data.info.get(k) for k in ("size", "image_size", "counts", "split") if k in data.info},
        "versions": env.versions(),
        "command": command_line(cfg),
        "status": "running",
    }


def history(run: str | os.PathLike[str]) -> dict[str, list[float]]:
    """The columns of a run folder's ``history.csv`` (empty when there is none yet)."""
    path = Path(run) / HISTORY
    return read_history(path) if path.is_file() else {}


def best_val_miou(run: str | os.PathLike[str]) -> float:
    """The best validation mIoU a run folder's ``history.csv`` holds so far (``-inf`` for none)."""
    best, _ = best_epoch(history(run))
    return -math.inf if best is None else best


def best_epoch(columns: dict[str, list[float]]) -> tuple[float | None, int | None]:
    """The best finite validation mIoU in a ``history.csv``'s columns and its (1-based) epoch."""
    pairs = [(v, int(e)) for v, e in zip(columns.get(VAL_MIOU, []), columns.get("epoch", []), strict=False)]
    finite = [(v, e) for v, e in pairs if math.isfinite(v)]
    return max(finite, key=lambda p: p[0]) if finite else (None, None)


def finished_record(record: dict[str, Any], out: Path, seconds: float, params: int) -> dict[str, Any]:
    """``record`` with the outcome read from ``out/history.csv``: ``status: finished``, the epochs run,
    the best epoch and its validation mIoU, this session's seconds and the model's parameters."""
    columns = history(out)
    best, epoch = best_epoch(columns)
    return {
        **record,
        "status": "finished",
        "epochs_run": len(columns.get("epoch", [])),
        "best_val_miou": best,
        "best_epoch": epoch,
        "train_seconds_this_session": round(seconds, 2),
        "params": params,
    }
