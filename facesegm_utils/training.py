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
import atexit
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from facesegm_utils import trainconfig
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
    RESUME_MAY_CHANGE,
    STRATEGIES,
    TrainConfig,
    check_image_size,
    check_prepared,
    command_line,
    info_size,
    resume_differences,
    split_count,
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


# ------------------------------------------------------------------------------------------- train
def _datasets(
    cfg: TrainConfig, prep: Path, global_batch: int, image_size: int, class_weights: Any, out: Path
) -> tuple:
    """Training and validation datasets of ``global_batch``."""
    import tensorflow as tf

    from facesegm_utils import pipeline

    train_ds = pipeline.make_dataset(
        prep,
        "train",
        global_batch,
        training=True,
        augment=cfg.augment,
        shuffle=True,
        cache=cfg.cache,
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
        seed=cfg.seed,
        image_size=image_size,
        drop_remainder=global_batch > cfg.batch_size and n_val >= global_batch,
    )
    # records are read from a list of files, not from files a reader op could split: shard by DATA
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return train_ds.with_options(options), val_ds.with_options(options)


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


def _check_resume(cfg: TrainConfig, run: Path, image_size: int) -> None:
    """Refuse to continue a run folder whose ``config.json`` holds other options (FacesegmError)."""
    path = run / "config.json"
    if not path.is_file():
        return
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FacesegmError(f"cannot read {path} ({exc}); use --restart to move the run aside") from None
    diffs = resume_differences(record, cfg, image_size)
    if diffs:
        raise FacesegmError(
            f"{run} holds a run made with other options, so it cannot be continued with these:\n  "
            + "\n  ".join(diffs)
            + f"\nRun with the old options to continue it, or add --restart to move {run} aside (renamed, "
            f"nothing deleted) and start over. Options that may change: {', '.join(RESUME_MAY_CHANGE)}."
        )


def _worker_folder(run: Path, strategy: Any, restart: bool) -> Path:
    """Where this process writes: the run folder for the chief; for another worker a temporary
    folder (removed at exit), seeded with the chief's backup so that every worker resumes alike."""
    if is_chief(strategy):
        return run
    task_id = int(strategy.cluster_resolver.task_id)
    tmp = Path(tempfile.mkdtemp(prefix=f"facesegm-worker{task_id}-{os.getpid()}-"))  # see cli.supervise
    atexit.register(shutil.rmtree, tmp, True)
    if not restart and (run / "backup").is_dir():
        shutil.copytree(run / "backup", tmp / "backup")
    return tmp


def _plan(cfg: TrainConfig, n_train: int, strategy: Any) -> dict[str, Any]:
    """Replicas, global batch, steps per epoch and the learning rate after ``--scale-lr``."""
    replicas = int(strategy.num_replicas_in_sync)
    global_batch = cfg.batch_size * replicas
    steps_per_epoch = math.ceil(n_train / global_batch) if n_train else None
    if n_train and replicas > 1:
        steps_per_epoch = max(1, n_train // global_batch)
        if n_train < global_batch:
            raise FacesegmError(f"{n_train} training images cannot fill one global batch of {global_batch}")
    if cfg.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch or cfg.max_steps_per_epoch, cfg.max_steps_per_epoch)
    lr = cfg.lr * replicas if cfg.scale_lr == "linear" else cfg.lr
    return {"replicas": replicas, "global_batch": global_batch, "steps_per_epoch": steps_per_epoch, "lr": lr}


def _compile(cfg: TrainConfig, build_kwargs: dict[str, Any], plan: dict[str, Any], class_weights: Any) -> Any:
    """The U-Net, compiled (call inside the strategy's scope)."""
    model = build_unet(**build_kwargs)
    steps = plan["steps_per_epoch"] or 1
    lr: Any = plan["lr"]
    if cfg.schedule == "cosine":
        lr = cosine_schedule(plan["lr"], cfg.epochs, steps, cfg.warmup_epochs)
    optimizer = make_optimizer(model, lr, cfg.encoder_lr_scale, cfg.freeze_encoder_epochs * steps)
    compile_model(model, get_loss(cfg.loss, class_weights), lr, NUM_CLASSES, optimizer)
    return model


def _float32_export(policy: str, build_kwargs: dict[str, Any]) -> Any:
    """Under mixed precision, a function giving a float32 twin to save; else None."""
    if policy == "float32":
        return None
    twin: dict[str, keras.Model] = {}

    def export() -> keras.Model:
        if "model" not in twin:
            keras.mixed_precision.set_global_policy("float32")
            try:
                twin["model"] = build_unet(**build_kwargs)
            finally:
                keras.mixed_precision.set_global_policy(policy)
        return twin["model"]

    return export


def _callbacks(
    cfg: TrainConfig, out: Path, lr: float, resuming: bool, initial_best: float, export: Any
) -> list:
    """The package's callbacks writing into ``out``: backup, best checkpoint, history, NaN guard, ..."""
    cbs: list[Any] = [
        keras.callbacks.BackupAndRestore(str(out / "backup"), delete_checkpoint=True),
        BestModelCheckpoint(out / "model.keras", VAL_MIOU, initial_best, export),
        HistoryCSV(out / "history.csv", append=resuming),
        NaNGuard(),
        keras.callbacks.EarlyStopping(monitor=VAL_MIOU, mode="max", patience=cfg.patience, verbose=1),
    ]
    if tensorboard_available():
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(out / "logs"), write_graph=False, profile_batch=0))
    else:
        print("note: the tensorboard package is not installed, so no TensorBoard logs are written")
    if cfg.schedule == "plateau":
        cbs.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(1, cfg.patience // 3), min_lr=lr / 100, verbose=1
            )
        )
    return cbs


def _initial_best(history_path: Path, resuming: bool) -> float:
    """The best validation mIoU of the epochs a resumed run already has (a new run starts empty)."""
    if not history_path.is_file():
        return -math.inf
    if not resuming:
        history_path.unlink()
        return -math.inf
    past = [v for v in read_history(history_path).get(VAL_MIOU, []) if math.isfinite(v)]
    return max(past) if past else -math.inf


def _resolve_data(cfg: TrainConfig) -> tuple[Path, dict[str, Any], int, int | None]:
    """The prepared folder, its ``dataset.json``, the image size and the training count, checked."""
    from facesegm_utils import pipeline

    prep = check_prepared(cfg.data)
    info = pipeline.read_dataset_info(prep)
    image_size = int(cfg.image_size or info_size(info) or 0)
    if not image_size:
        raise FacesegmError(f"no image size given and none found in {prep / 'dataset.json'}")
    check_image_size(image_size, cfg.depth, cfg.encoder)
    n_train = split_count(info, "train")
    if n_train == 0:
        raise FacesegmError(f"the prepared dataset {prep} has no training images")
    return prep, info, image_size, n_train


def train(
    config: TrainConfig | dict[str, Any], callbacks: list[Any] | None = None, restart: bool = False
) -> dict[str, Any]:
    """Train a U-Net as ``config`` says; return ``{"history", "model_path", "run_dir", ...}``.

    Running the same configuration again into the same folder after an interruption resumes from
    ``RUN/backup/``; other options (than :data:`RESUME_MAY_CHANGE`) stop with a ``FacesegmError``
    listing them, and ``restart=True`` moves an earlier run folder aside first. Under
    ``MultiWorkerMirroredStrategy`` only the chief writes ``RUN``; the other workers write to
    temporary folders removed at the end. ``callbacks`` are added to the package's own. Raises
    ``FacesegmError`` for a missing prepared folder or a loss that turned NaN, and ``ValueError``
    for an option out of range or an image size that ``2**depth`` does not divide.
    """
    cfg = TrainConfig.from_dict(config) if isinstance(config, dict) else config
    cfg.validate()
    prep, info, image_size, n_train = _resolve_data(cfg)
    run = Path(cfg.out)
    if not restart:
        _check_resume(cfg, run, image_size)
    keras.utils.set_random_seed(cfg.seed)
    strategy = make_strategy(cfg.strategy)
    if restart and is_chief(strategy):
        move_aside(run)
    out = _worker_folder(run, strategy, restart)
    out.mkdir(parents=True, exist_ok=True)
    resuming = (out / "backup").is_dir() and any((out / "backup").iterdir())
    try:
        return _fit(cfg, prep, info, image_size, n_train, strategy, run, out, resuming, callbacks)
    finally:
        if out != run:
            shutil.rmtree(out, ignore_errors=True)


def _fit(
    cfg: TrainConfig,
    prep: Path,
    info: dict[str, Any],
    image_size: int,
    n_train: int | None,
    strategy: Any,
    run: Path,
    out: Path,
    resuming: bool,
    callbacks: list[Any] | None,
) -> dict[str, Any]:
    """The body of :func:`train` once the folders are settled: record, build, fit, finish."""
    from facesegm_utils import pipeline

    policy, previous_policy = resolve_precision(cfg.mixed_precision), keras.mixed_precision.global_policy()
    plan = _plan(cfg, n_train, strategy)
    # pipeline.class_weights is the one class-weight function (it checks the frequencies it reads)
    class_weights = (
        None if cfg.class_weights == "none" else pipeline.class_weights(info, cfg.class_weights).tolist()
    )
    names = (
        "base_filters",
        "depth",
        "dropout",
        "upsampling",
        "encoder",
        "encoder_weights",
        "decoder_filters",
    )
    build_kwargs = {
        "image_size": image_size,
        "num_classes": NUM_CLASSES,
        **{n: getattr(cfg, n) for n in names},
    }
    record = _record(cfg, info, image_size, policy, strategy, plan, class_weights)
    atomic_write_json(out / "config.json", record)
    initial_best = _initial_best(out / "history.csv", resuming)
    start = time.perf_counter()
    try:
        keras.mixed_precision.set_global_policy(policy)
        train_ds, val_ds = _datasets(cfg, prep, plan["global_batch"], image_size, class_weights, out)
        with strategy.scope():
            model = _compile(cfg, build_kwargs, plan, class_weights)
        cbs = _callbacks(cfg, out, plan["lr"], resuming, initial_best, _float32_export(policy, build_kwargs))
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.epochs,
            steps_per_epoch=plan["steps_per_epoch"] if cfg.max_steps_per_epoch is not None else None,
            callbacks=cbs + list(callbacks or []),
            shuffle=False,  # the tf.data pipeline shuffles (seeded) itself
            verbose=2,
        )
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    nan_epoch = next(cb.nan_epoch for cb in cbs if isinstance(cb, NaNGuard))
    return _finish(cfg, record, out, run, time.perf_counter() - start, nan_epoch, model, plan, policy)


def _record(
    cfg: TrainConfig,
    info: dict[str, Any],
    image_size: int,
    policy: str,
    strategy: Any,
    plan: dict[str, Any],
    class_weights: list[float] | None,
) -> dict[str, Any]:
    """``config.json``: every option, what they resolved to, the data, the versions, the command."""
    return {
        **cfg.to_dict(),
        "image_size": image_size,
        "num_classes": NUM_CLASSES,
        "classes": list(CLASSES),
        "dtype_policy": policy,
        "strategy_name": type(strategy).__name__,
        "replicas": plan["replicas"],
        "global_batch_size": plan["global_batch"],
        "lr_effective": plan["lr"],
        "steps_per_epoch": plan["steps_per_epoch"],
        "class_weight_values": class_weights,
        "encoder_weights_loaded": weights_source(cfg.encoder, cfg.encoder_weights),
        "dataset": {k: info.get(k) for k in ("size", "image_size", "counts", "split") if k in info},
        "versions": _versions(),
        "command": command_line(cfg),
        "status": "running",
    }


def _finish(
    cfg: TrainConfig,
    record: dict[str, Any],
    out: Path,
    run: Path,
    seconds: float,
    nan_epoch: int | None,
    model: keras.Model,
    plan: dict[str, Any],
    policy: str,
) -> dict[str, Any]:
    """Record the outcome in ``config.json``; raise on a NaN loss; the result of :func:`train`."""
    if nan_epoch is not None:
        record["status"] = f"stopped: NaN loss in epoch {nan_epoch}"
        atomic_write_json(out / "config.json", record)
        raise FacesegmError(
            f"training loss became NaN/inf in epoch {nan_epoch} (learning rate {plan['lr']:g}); "
            f"try a lower learning rate, e.g. --lr {cfg.lr / 10:g}"
        )
    history_path = out / "history.csv"
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
    atomic_write_json(out / "config.json", record)
    return {
        "history": history,
        "run_dir": str(run),
        "model_path": str(run / "model.keras"),
        "history_csv": str(run / "history.csv"),
        "config_path": str(run / "config.json"),
        "logs_dir": str(run / "logs"),
        "best_val_miou": record["best_val_miou"],
        "best_epoch": record["best_epoch"],
        "epochs_run": record["epochs_run"],
        "seconds": seconds,
        "replicas": plan["replicas"],
        "dtype_policy": policy,
        "params": int(model.count_params()),
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
        cfg = dataclasses.replace(
            base, **options, epochs=int(epochs), out=str(run), patience=max(1, int(epochs))
        )
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
    print(json.dumps({k: result[k] for k in ("model_path", "best_val_miou", "best_epoch", "epochs_run")}))
    return 0
