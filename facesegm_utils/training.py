"""Training: ``facesegm train`` and :func:`train`, one configuration in, one run folder out.

A run folder holds ``model.keras`` (the best epoch by validation mIoU, float32 so it runs anywhere),
``config.json`` (everything needed to reproduce the run), ``history.csv`` (one row per epoch, kept
across resumes), ``logs/`` (TensorBoard) and, while training, ``backup/`` (BackupAndRestore: run the
same command again after an interruption and training resumes at the epoch where it stopped).

Distribution uses ``tf.distribute`` only: one device by default, ``MirroredStrategy`` over several
GPUs, ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` is set. ``batch_size`` is per replica; the
global batch is ``batch_size * num_replicas_in_sync``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from facesegm_utils.callbacks import (
    VAL_MIOU,
    BestModelCheckpoint,
    HistoryCSV,
    NaNGuard,
    compile_model,
    tensorboard_available,
)
from facesegm_utils.evaluation import evaluate_model
from facesegm_utils.fileio import FacesegmError, atomic_write_json, read_history
from facesegm_utils.labels import CLASSES, NUM_CLASSES
from facesegm_utils.losses import get_loss
from facesegm_utils.model import build_unet, weights_source
from facesegm_utils.optim import make_optimizer
from facesegm_utils.trainconfig import (
    PRECISIONS,
    STRATEGIES,
    TrainConfig,
    check_image_size,
    check_prepared,
    command_line,
    info_size,
    split_count,
)
from facesegm_utils.trainconfig import add_arguments as add_arguments


# ---------------------------------------------------------------------------- devices & precision
def gpu_count() -> int:
    """How many GPUs TensorFlow sees."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def make_strategy(name: str = "auto") -> Any:
    """A ``tf.distribute`` strategy: ``auto`` picks MultiWorker (TF_CONFIG set), Mirrored (>1 GPU) or default.

    ``mirrored`` mirrors over every GPU, or over every logical CPU device when there is no GPU.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {name!r}")
    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multiworker"
        elif gpu_count() > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    return tf.distribute.get_strategy()


def resolve_precision(mode: str) -> str:
    """The Keras dtype policy for ``--mixed-precision``: ``auto`` = mixed_float16 on a GPU, else float32."""
    if mode not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {', '.join(PRECISIONS)}; got {mode!r}")
    if mode == "on" or (mode == "auto" and gpu_count() > 0):
        return "mixed_float16"
    return "float32"


# ------------------------------------------------------------------------------------------- train
def _datasets(cfg: TrainConfig, prep: Path, global_batch: int, image_size: int, class_weights: Any) -> tuple:
    from facesegm_utils import pipeline

    train_ds = pipeline.make_dataset(
        prep,
        "train",
        global_batch,
        training=True,
        augment=cfg.augment,
        shuffle=True,
        cache=cfg.cache,
        cache_dir=Path(cfg.out) / "cache",
        seed=cfg.seed,
        drop_remainder=global_batch > cfg.batch_size,  # equal shards for every replica
        repeat=cfg.max_steps_per_epoch is not None,
        image_size=image_size,
    )
    # with several replicas, a partial last batch cannot be sharded evenly: drop it when possible
    n_val = split_count(pipeline.read_dataset_info(prep), "val") or 0
    val_ds = pipeline.make_dataset(
        prep,
        "val",
        global_batch,
        training=False,
        cache=cfg.cache,
        cache_dir=Path(cfg.out) / "cache",
        seed=cfg.seed,
        image_size=image_size,
        drop_remainder=global_batch > cfg.batch_size and n_val >= global_batch,
    )
    return train_ds, val_ds


def cosine_schedule(lr: float, epochs: int, steps_per_epoch: int, warmup_epochs: int = 0) -> Any:
    """Linear warmup from ``lr / 100`` to ``lr`` over ``warmup_epochs``, then cosine decay to ``lr / 100``."""
    total = max(1, int(epochs) * int(steps_per_epoch))
    warmup = min(int(warmup_epochs) * int(steps_per_epoch), total - 1)
    if warmup <= 0:
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=0.01)
    return keras.optimizers.schedules.CosineDecay(
        lr / 100, decay_steps=total - warmup, alpha=0.01, warmup_target=lr, warmup_steps=warmup
    )


def _versions() -> dict[str, str]:
    from facesegm_utils import env

    return env.versions()


def train(config: TrainConfig | dict[str, Any], callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train a U-Net as ``config`` says; return ``{"history", "model_path", "run_dir", ...}``.

    Running the same configuration again into the same folder after an interruption resumes from
    ``RUN/backup/``. ``callbacks`` are added to the package's own (handy for notebooks and tests).
    Raises ``FacesegmError`` for a missing prepared folder or a loss that turned NaN, and
    ``ValueError`` for an option out of range or an image size that ``2**depth`` does not divide.
    """
    cfg = TrainConfig.from_dict(config) if isinstance(config, dict) else config
    cfg.validate()
    prep = check_prepared(cfg.data)
    from facesegm_utils import pipeline

    info = pipeline.read_dataset_info(prep)
    image_size = int(cfg.image_size or info_size(info) or 0)
    if not image_size:
        raise FacesegmError(f"no image size given and none found in {prep / 'dataset.json'}")
    check_image_size(image_size, cfg.depth, cfg.encoder)
    n_train = split_count(info, "train")
    if n_train == 0:
        raise FacesegmError(f"the prepared dataset {prep} has no training images")

    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    backup = run / "backup"
    resuming = backup.is_dir() and any(backup.iterdir())
    keras.utils.set_random_seed(cfg.seed)
    previous_policy = keras.mixed_precision.global_policy()
    policy = resolve_precision(cfg.mixed_precision)
    strategy = make_strategy(cfg.strategy)
    replicas = int(strategy.num_replicas_in_sync)
    global_batch = cfg.batch_size * replicas
    # pipeline.class_weights is the one class-weight function (it checks the frequencies it reads)
    class_weights = (
        None if cfg.class_weights == "none" else pipeline.class_weights(info, cfg.class_weights).tolist()
    )
    steps_per_epoch = math.ceil(n_train / global_batch) if n_train else None
    if n_train and replicas > 1:
        steps_per_epoch = max(1, n_train // global_batch)
        if n_train < global_batch:
            raise FacesegmError(f"{n_train} training images cannot fill one global batch of {global_batch}")
    if cfg.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch or cfg.max_steps_per_epoch, cfg.max_steps_per_epoch)

    build_kwargs = {
        "image_size": image_size,
        "num_classes": NUM_CLASSES,
        "base_filters": cfg.base_filters,
        "depth": cfg.depth,
        "dropout": cfg.dropout,
        "upsampling": cfg.upsampling,
        "encoder": cfg.encoder,
        "encoder_weights": cfg.encoder_weights,
        "decoder_filters": cfg.decoder_filters,
    }
    record: dict[str, Any] = {
        **cfg.to_dict(),
        "image_size": image_size,
        "num_classes": NUM_CLASSES,
        "classes": list(CLASSES),
        "dtype_policy": policy,
        "strategy_name": type(strategy).__name__,
        "replicas": replicas,
        "global_batch_size": global_batch,
        "steps_per_epoch": steps_per_epoch,
        "class_weight_values": class_weights,
        "encoder_weights_loaded": weights_source(cfg.encoder, cfg.encoder_weights),
        "dataset": {k: info.get(k) for k in ("size", "image_size", "counts", "split") if k in info},
        "versions": _versions(),
        "command": command_line(cfg),
        "status": "running",
    }
    atomic_write_json(run / "config.json", record)

    history_path = run / "history.csv"
    initial_best = -math.inf
    if resuming and history_path.is_file():
        past = read_history(history_path).get(VAL_MIOU, [])
        past = [v for v in past if math.isfinite(v)]
        initial_best = max(past) if past else -math.inf
    elif history_path.is_file():
        history_path.unlink()

    start = time.perf_counter()
    try:
        keras.mixed_precision.set_global_policy(policy)
        train_ds, val_ds = _datasets(cfg, prep, global_batch, image_size, class_weights)
        with strategy.scope():
            model = build_unet(**build_kwargs)
            lr: Any = cfg.lr
            if cfg.schedule == "cosine":
                lr = cosine_schedule(cfg.lr, cfg.epochs, steps_per_epoch or 1, cfg.warmup_epochs)
            frozen_steps = cfg.freeze_encoder_epochs * (steps_per_epoch or 1)
            optimizer = make_optimizer(model, lr, cfg.encoder_lr_scale, frozen_steps)
            compile_model(model, get_loss(cfg.loss, class_weights), lr, NUM_CLASSES, optimizer)

        export = None
        if policy != "float32":
            twin: dict[str, keras.Model] = {}

            def export() -> keras.Model:
                if "model" not in twin:
                    keras.mixed_precision.set_global_policy("float32")
                    try:
                        twin["model"] = build_unet(**build_kwargs)
                    finally:
                        keras.mixed_precision.set_global_policy(policy)
                return twin["model"]

        checkpoint = BestModelCheckpoint(run / "model.keras", VAL_MIOU, initial_best, export)
        nan_guard = NaNGuard()
        cbs: list[Any] = [
            keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=True),
            checkpoint,
            HistoryCSV(history_path, append=resuming),
            nan_guard,
            keras.callbacks.EarlyStopping(monitor=VAL_MIOU, mode="max", patience=cfg.patience, verbose=1),
        ]
        if tensorboard_available():
            cbs.append(
                keras.callbacks.TensorBoard(log_dir=str(run / "logs"), write_graph=False, profile_batch=0)
            )
        else:
            print("note: the tensorboard package is not installed, so no TensorBoard logs are written")
        if cfg.schedule == "plateau":
            cbs.append(
                keras.callbacks.ReduceLROnPlateau(
                    monitor="val_loss",
                    factor=0.5,
                    patience=max(1, cfg.patience // 3),
                    min_lr=cfg.lr / 100,
                    verbose=1,
                )
            )
        cbs.extend(callbacks or [])
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.epochs,
            steps_per_epoch=steps_per_epoch if cfg.max_steps_per_epoch is not None else None,
            callbacks=cbs,
            shuffle=False,  # the tf.data pipeline shuffles (seeded) itself
            verbose=2,
        )
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    seconds = time.perf_counter() - start
    if nan_guard.nan_epoch is not None:
        record["status"] = f"stopped: NaN loss in epoch {nan_guard.nan_epoch}"
        atomic_write_json(run / "config.json", record)
        raise FacesegmError(
            f"training loss became NaN/inf in epoch {nan_guard.nan_epoch} (learning rate {cfg.lr}); "
            f"try a lower learning rate, e.g. --lr {cfg.lr / 10:g}"
        )
    history = read_history(history_path) if history_path.is_file() else {}
    best = [v for v in history.get(VAL_MIOU, []) if math.isfinite(v)]
    record.update(
        {
            "status": "finished",
            "epochs_run": len(history.get("epoch", [])),
            "best_val_miou": max(best) if best else None,
            "best_epoch": int(history["epoch"][int(np.nanargmax(history[VAL_MIOU]))]) if best else None,
            "train_seconds_this_session": round(seconds, 2),
        }
    )
    atomic_write_json(run / "config.json", record)
    return {
        "history": history,
        "run_dir": str(run),
        "model_path": str(run / "model.keras"),
        "history_csv": str(history_path),
        "config_path": str(run / "config.json"),
        "logs_dir": str(run / "logs"),
        "best_val_miou": record["best_val_miou"],
        "best_epoch": record["best_epoch"],
        "epochs_run": record["epochs_run"],
        "seconds": seconds,
        "replicas": replicas,
        "dtype_policy": policy,
        "params": int(model.count_params()),
    }


def compare_runs(
    base: TrainConfig,
    variants: dict[str, dict[str, Any]],
    epochs: int,
    out_root: str | os.PathLike[str],
    split: str = "val",
) -> list[dict[str, Any]]:
    """Train one short run per variant (``base`` with the variant's options; same seed and data).

    Each run goes to ``out_root/<name>`` (``+`` in a name becomes ``_``) and always starts fresh.
    Returns one row per variant: ``name``, the split's dataset-level ``{split}_miou`` and
    ``{split}_pixel_accuracy`` (scored by :func:`facesegm_utils.evaluation.evaluate_model`, at full
    resolution), ``best_val_miou`` (at model size), ``history`` (the per-epoch columns), ``params``
    and ``seconds``.
    """
    import shutil

    rows = []
    for name, options in variants.items():
        run = Path(out_root) / name.replace("+", "_")
        if (run / "backup").is_dir():
            shutil.rmtree(run / "backup")
        cfg = dataclasses.replace(
            base, **options, epochs=int(epochs), out=str(run), patience=max(1, int(epochs))
        )
        result = train(cfg)
        scores = evaluate_model(result["model_path"], base.data, split, batch_size=base.batch_size)
        rows.append(
            {
                "name": name,
                f"{split}_miou": scores["mean_iou"],
                f"{split}_pixel_accuracy": scores["pixel_accuracy"],
                "best_val_miou": result["best_val_miou"],
                "history": result["history"],
                "params": result["params"],
                "seconds": round(result["seconds"], 1),
            }
        )
    return rows


def compare_losses(
    base: TrainConfig, losses: list[str], epochs: int, out_root: str | os.PathLike[str], split: str = "val"
) -> list[dict[str, Any]]:
    """:func:`compare_runs` over losses (same seed, data and model); each row also names its ``loss``."""
    rows = compare_runs(base, {name: {"loss": name} for name in losses}, epochs, out_root, split)
    return [{"loss": row["name"], **row} for row in rows]


# --------------------------------------------------------------------------------------------- CLI
def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm train``."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    result = train(cfg)
    print(json.dumps({k: result[k] for k in ("model_path", "best_val_miou", "best_epoch", "epochs_run")}))
    return 0
