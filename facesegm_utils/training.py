"""Training: ``facesegm train`` and :func:`train`, one configuration in, one run folder out.

A run folder holds ``model.keras`` (the best epoch by validation mIoU, float32 so it runs anywhere),
``config.json`` (everything needed to reproduce the run), ``history.csv`` (one row per epoch, kept
across resumes), ``logs/`` (TensorBoard) and ``backup/`` (BackupAndRestore: the last epoch's weights
and optimizer state). Run the same command again after an interruption and training resumes at the
epoch where it stopped; after the end it says the run is complete and changes nothing, and with a
larger ``--epochs`` it extends the run (:mod:`facesegm_utils.runs`).

:func:`train` reads top to bottom: the options and the data, the run folder, the strategy and its
replicas, the model compiled, the fit, the outcome.

Distribution uses ``tf.distribute`` only: one device by default, ``MirroredStrategy`` over several
GPUs, ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` is set. ``batch_size`` is per replica; the
global batch is ``batch_size * num_replicas_in_sync``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

from facesegm_utils import pipeline, runs, trainconfig
from facesegm_utils.callbacks import NaNGuard, compile_model, run_callbacks
from facesegm_utils.evaluation import evaluate_model
from facesegm_utils.fileio import FacesegmError, atomic_write_json
from facesegm_utils.labels import NUM_CLASSES
from facesegm_utils.losses import get_loss
from facesegm_utils.model import build_unet
from facesegm_utils.optim import cosine_schedule, make_optimizer
from facesegm_utils.trainconfig import (
    PRECISIONS,
    STRATEGIES,
    TrainConfig,
    check_image_size,
)


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
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _patch_nested_reduce(strategy)
        return strategy
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


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run folder: the only process, or in a multi-worker cluster the
    task ``chief`` (or worker 0 when the cluster names no chief), as TensorFlow's guide does."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None or task_type == "chief":
        return True
    return (
        task_type == "worker"
        and int(resolver.task_id) == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def _patch_nested_reduce(strategy: Any) -> None:
    """Make ``strategy.reduce`` take what Keras 3's ``fit`` gives it under multi-worker training
    (on this strategy object only; keras-team/keras#20585).

    Keras "reduces" the first batch of each dataset (a tuple) only to learn its shapes, but
    ``MultiWorkerMirroredStrategy.reduce`` takes one value, not a nest ("Attempt to convert a value
    (PerReplica:{...})"), and the workers' batches may differ in size (a last partial batch). A nest
    is therefore answered with this worker's own values, which is all Keras needs. Keras also
    averages each step's scalar logs with ``axis=0``, which a scalar does not have ("Invalid
    reduction dimension 0"): a scalar is averaged across the replicas only.
    """
    reduce = strategy.reduce

    def local(value: Any) -> Any:
        return strategy.experimental_local_results(value)[0] if hasattr(value, "values") else value

    def patched(reduce_op: Any, value: Any, axis: Any = None) -> Any:
        if isinstance(value, (tuple, list, dict)):
            import tensorflow as tf

            return tf.nest.map_structure(local, value)
        if axis is not None and getattr(getattr(local(value), "shape", None), "rank", None) == 0:
            axis = None
        return reduce(reduce_op, value, axis=axis)

    strategy.reduce = patched


# ------------------------------------------------------------------------------------------- train
def train(
    config: TrainConfig | dict[str, Any], callbacks: list[Any] | None = None, restart: bool = False
) -> dict[str, Any]:
    """Train a U-Net as ``config`` says; return ``{"mode", "history", "model_path", "run_dir", ...}``.

    The same configuration into the same folder again resumes an interrupted run, and on a finished
    run prints one line and changes nothing unless ``epochs`` is larger: then it extends the run (see
    :func:`facesegm_utils.runs.run_state`); ``restart=True`` moves an earlier run aside first. Only
    the chief of several workers writes ``RUN``. ``callbacks`` are added to the package's own. Raises
    ``FacesegmError`` for a missing prepared folder, a run made with other options or a NaN loss, and
    ``ValueError`` for an option out of range.
    """
    # 1. the options and the data
    cfg = TrainConfig.from_dict(config) if isinstance(config, dict) else config
    cfg.validate()
    data = pipeline.open_prepared(cfg.data, cfg.image_size)
    check_image_size(data.image_size, cfg.depth, cfg.encoder)
    # 2. the run folder: a new run, a resumed or extended one, or a complete one (then nothing changes)
    run = Path(cfg.out)
    state = runs.run_state(run, cfg, data.image_size, restart)
    if state.mode == "complete":
        print(runs.complete_line(state.record or {}))
        return _result(run, run, state.record or {}, 0.0, state.mode)
    resuming = state.mode in ("resume", "extend")
    # 3. the strategy, its replicas and the precision
    keras.utils.set_random_seed(cfg.seed)
    strategy = make_strategy(cfg.strategy)
    plan = cfg.plan(data.counts.get("train"), int(strategy.num_replicas_in_sync))
    unet_options = cfg.unet_options(data.image_size)
    policy = resolve_precision(cfg.mixed_precision)
    if restart and is_chief(strategy):
        runs.move_aside(run)
    with _worker_folder(run, strategy, restart) as out, _dtype_policy(policy):
        # 4. the data as tf.data, the loss, and the record of what runs (config.json)
        weights = (
            None if cfg.class_weights == "none" else pipeline.class_weights(data.info, cfg.class_weights)
        )
        train_ds, val_ds = pipeline.training_datasets(
            data, plan.global_batch, plan.replicas, augment=cfg.augment, cache=cfg.cache,
            seed=cfg.seed, repeat=cfg.max_steps_per_epoch is not None,
        )  # fmt: skip
        loss = get_loss(cfg.loss, weights)  # the Dice loss uses no class weights
        record = runs.new_record(cfg, data, plan, policy, type(strategy).__name__, loss, state.segments)
        atomic_write_json(out / runs.CONFIG, record)
        if not resuming:  # an earlier start that never finished an epoch, or stopped on a NaN loss
            (out / runs.HISTORY).unlink(missing_ok=True)
        # 5. the model, compiled in the strategy's scope
        steps = plan.steps_per_epoch or 1
        lr: Any = plan.lr
        if cfg.schedule == "cosine":
            (_, epochs), *resumes = state.segments
            lr = cosine_schedule(plan.lr, epochs, steps, cfg.warmup_epochs, resumes)
        with strategy.scope():
            model = build_unet(**unet_options)
            optimizer = make_optimizer(model, lr, cfg.encoder_lr_scale, cfg.freeze_encoder_epochs * steps)
            compile_model(model, loss, lr, NUM_CLASSES, optimizer)
        # 6. fit: the package's callbacks write backup/, model.keras (the best epoch), history.csv, logs/
        cbs = run_callbacks(
            out, patience=cfg.patience, schedule=cfg.schedule, lr=plan.lr, resuming=resuming,
            initial_best=runs.best_val_miou(out) if resuming else -math.inf,
            export=_float32_export(policy, unet_options),
        )  # fmt: skip
        start = time.perf_counter()
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.epochs,
            steps_per_epoch=plan.steps_per_epoch if cfg.max_steps_per_epoch is not None else None,
            callbacks=cbs + list(callbacks or []),
            shuffle=False,  # the tf.data pipeline shuffles (seeded) itself
            verbose=2,
        )
        seconds = time.perf_counter() - start
        # 7. the outcome, in config.json
        _stop_on_nan(next(cb.nan_epoch for cb in cbs if isinstance(cb, NaNGuard)), out, record, plan.lr)
        record = runs.finished_record(record, out, seconds, int(model.count_params()))
        atomic_write_json(out / runs.CONFIG, record)
        return _result(run, out, record, seconds, state.mode)


def _stop_on_nan(nan_epoch: int | None, out: Path, record: dict[str, Any], lr: float) -> None:
    """After a loss that turned NaN in ``nan_epoch``: record it, drop the NaN backup, raise."""
    if nan_epoch is None:
        return
    atomic_write_json(out / runs.CONFIG, {**record, "status": f"stopped: NaN loss in epoch {nan_epoch}"})
    shutil.rmtree(out / runs.BACKUP, ignore_errors=True)  # NaN weights: nothing to resume from
    raise FacesegmError(
        f"training loss became NaN/inf in epoch {nan_epoch} (learning rate {lr:g}); "
        f"try a lower learning rate, e.g. --lr {record['lr'] / 10:g}"
    )


@contextlib.contextmanager
def _worker_folder(run: Path, strategy: Any, restart: bool) -> Iterator[Path]:
    """Where this process writes, created: the run folder for the chief; for another worker a
    temporary folder (removed at the end, or at exit), seeded with the chief's backup so that every
    worker resumes alike."""
    if is_chief(strategy):
        run.mkdir(parents=True, exist_ok=True)
        yield run
        return
    task_id = int(strategy.cluster_resolver.task_id)
    tmp = Path(tempfile.mkdtemp(prefix=f"facesegm-worker{task_id}-{os.getpid()}-"))  # see cli.supervise
    atexit.register(shutil.rmtree, tmp, True)
    if not restart and (run / runs.BACKUP).is_dir():
        shutil.copytree(run / runs.BACKUP, tmp / runs.BACKUP)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _dtype_policy(policy: str) -> Iterator[None]:
    """Keras' global dtype policy set to ``policy`` inside, and given back after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _float32_export(policy: str, unet_options: dict[str, Any]) -> Any:
    """Under mixed precision, a function giving a float32 twin to save; else None."""
    if policy == "float32":
        return None
    twin: dict[str, keras.Model] = {}

    def export() -> keras.Model:
        if "model" not in twin:
            with _dtype_policy("float32"):
                twin["model"] = build_unet(**unet_options)
        return twin["model"]

    return export


def _result(run: Path, out: Path, record: dict[str, Any], seconds: float, mode: str) -> dict[str, Any]:
    """What :func:`train` returns, from a run's ``config.json`` and ``history.csv`` (in ``out``);
    ``mode`` is what it did (see :class:`facesegm_utils.runs.RunState`)."""
    return {
        "mode": mode,
        "history": runs.history(out),
        "run_dir": str(run),
        "model_path": str(run / runs.MODEL),
        "history_csv": str(run / runs.HISTORY),
        "config_path": str(run / runs.CONFIG),
        "logs_dir": str(run / "logs"),
        "best_val_miou": record.get("best_val_miou"),
        "best_epoch": record.get("best_epoch"),
        "epochs_run": record.get("epochs_run"),
        "seconds": seconds,
        "replicas": record.get("replicas"),
        "dtype_policy": record.get("dtype_policy"),
        "params": record.get("params"),
        "chief": out == run,
    }


def compare_runs(
    base: TrainConfig,
    variants: dict[str, dict[str, Any]],
    epochs: int,
    out_root: str | os.PathLike[str],
    split: str = "val",
) -> list[dict[str, Any]]:
    """Train one short run per variant (``base`` with the variant's options; same seed and data).

    Each run goes to ``out_root/<name>`` (``+`` in a name becomes ``_``) and always starts fresh
    (an earlier run there is moved aside, see :func:`move_aside`).
    Returns one row per variant: ``name``, the split's dataset-level ``{split}_miou`` and
    ``{split}_pixel_accuracy`` (scored by :func:`facesegm_utils.evaluation.evaluate_model`, at full
    resolution), ``best_val_miou`` (at model size), ``history`` (the per-epoch columns), ``params``
    and ``seconds``.
    """
    rows = []
    for name, options in variants.items():
        run = Path(out_root) / name.replace("+", "_")
        cfg = dataclasses.replace(base, **options, epochs=int(epochs), out=str(run), patience=None)
        result = train(cfg, restart=True)
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
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facesegm train``: every :class:`TrainConfig` option, and ``--restart``."""
    trainconfig.add_arguments(parser)
    parser.add_argument(
        "--restart",
        action="store_true",
        help="start over: move an earlier run in --out aside (renamed with a timestamp, nothing deleted)",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm train``."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    result = train(cfg, restart=bool(getattr(args, "restart", False)))
    if result["mode"] != "complete":  # a complete run has said its one line
        print(json.dumps({k: result[k] for k in ("model_path", "best_val_miou", "best_epoch", "epochs_run")}))
    return 0
