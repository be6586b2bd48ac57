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
import csv
import dataclasses
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from facesegm_utils.fileio import FacesegmError, atomic_write_json, atomic_write_text, read_numeric_csv
from facesegm_utils.labels import CLASSES, NUM_CLASSES
from facesegm_utils.losses import LOSS_NAMES, CEDiceLoss, SoftDiceLoss, SparseCrossEntropy, get_loss
from facesegm_utils.model import ENCODER_DEPTH, ENCODERS, UPSAMPLING_MODES, build_unet

CLASS_WEIGHT_METHODS: tuple[str, ...] = ("none", "median_frequency", "inverse_sqrt")
SCHEDULES: tuple[str, ...] = ("plateau", "cosine", "constant")
PRECISIONS: tuple[str, ...] = ("auto", "on", "off")
STRATEGIES: tuple[str, ...] = ("auto", "default", "mirrored", "multiworker")


# ----------------------------------------------------------------------------------------- metrics
@keras.saving.register_keras_serializable(package="facesegm")
class DatasetMeanIoU(keras.metrics.MeanIoU):
    """Mean IoU from logits over one confusion matrix accumulated across the whole epoch.

    Classes absent from both truth and prediction over the epoch are left out of the mean (Keras'
    ``MeanIoU`` rule). This is the dataset-level mIoU, not an average of per-batch figures.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, name: str = "miou", **kwargs: Any) -> None:
        kwargs.setdefault("sparse_y_true", True)
        kwargs.setdefault("sparse_y_pred", False)
        super().__init__(num_classes=num_classes, name=name, **kwargs)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        if len(y_true.shape) == len(y_pred.shape):
            y_true = keras.ops.squeeze(y_true, axis=-1)
        return super().update_state(y_true, y_pred, sample_weight)


def custom_objects() -> dict[str, Any]:
    """The package's serializable objects, for ``keras.models.load_model``."""
    return {
        "facesegm>SparseCrossEntropy": SparseCrossEntropy,
        "facesegm>SoftDiceLoss": SoftDiceLoss,
        "facesegm>CEDiceLoss": CEDiceLoss,
        "facesegm>DatasetMeanIoU": DatasetMeanIoU,
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


def compile_model(model: keras.Model, loss: keras.losses.Loss, learning_rate: Any, num_classes: int) -> None:
    """Compile with Adam, ``loss`` and the metrics ``pixel_accuracy`` and ``miou``."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss,
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy"),
            DatasetMeanIoU(num_classes, name="miou"),
        ],
    )


# ------------------------------------------------------------------------------------------ config
@dataclass
class TrainConfig:
    """Every option of a training run. ``image_size=None`` takes the prepared dataset's size."""

    data: str
    out: str
    image_size: int | None = None
    epochs: int = 20
    batch_size: int = 8
    loss: str = "ce+dice"
    class_weights: str = "none"
    base_filters: int = 32
    depth: int = 4
    dropout: float = 0.0
    upsampling: str = "transpose"
    encoder: str | None = None
    encoder_weights: str | None = None
    lr: float = 1e-3
    schedule: str = "plateau"
    mixed_precision: str = "auto"
    strategy: str = "auto"
    seed: int = 0
    patience: int = 8
    max_steps_per_epoch: int | None = None
    augment: bool = True
    cache: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training options {unknown}; expected some of {sorted(names)}")
        return cls(**data)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first option that is out of range."""
        choices = {
            "loss": (self.loss, LOSS_NAMES),
            "class_weights": (self.class_weights, CLASS_WEIGHT_METHODS),
            "schedule": (self.schedule, SCHEDULES),
            "mixed_precision": (self.mixed_precision, PRECISIONS),
            "strategy": (self.strategy, STRATEGIES),
            "upsampling": (self.upsampling, UPSAMPLING_MODES),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.encoder is not None and self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)} or None; got {self.encoder!r}")
        for name in ("epochs", "batch_size", "base_filters", "depth", "patience"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number; got {self.lr}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1 or None; got {self.max_steps_per_epoch}")
        if self.image_size is not None:
            check_image_size(int(self.image_size), self.depth, self.encoder)


def check_image_size(image_size: int, depth: int, encoder: str | None = None) -> None:
    """Raise ``ValueError`` if ``image_size`` is not divisible by the U-Net's total stride."""
    factor = 2 ** (ENCODER_DEPTH if encoder else depth)
    if image_size < 1 or image_size % factor:
        raise ValueError(
            f"image size {image_size} is not divisible by 2**{ENCODER_DEPTH if encoder else depth} = {factor}, "
            f"which a U-Net of depth {ENCODER_DEPTH if encoder else depth} needs; choose a multiple of {factor}"
        )


def check_prepared(data: str | os.PathLike[str]) -> Path:
    """The prepared folder, after checking it holds ``dataset.json`` and ``manifest.csv``."""
    prep = Path(data)
    if not prep.is_dir():
        raise FacesegmError(
            f"prepared dataset folder not found: {prep}; expected the output of `facesegm prepare` "
            "(train/ val/ test/, manifest.csv, dataset.json)"
        )
    missing = [n for n in ("dataset.json", "manifest.csv") if not (prep / n).is_file()]
    if missing:
        raise FacesegmError(
            f"{prep} is not a prepared dataset: {', '.join(missing)} missing; run `facesegm prepare` first"
        )
    return prep


def _split_count(info: dict[str, Any], split: str) -> int | None:
    counts = info.get("counts") or info.get("split_counts") or {}
    value = counts.get(split) if isinstance(counts, dict) else None
    return int(value) if value is not None else None


def _info_size(info: dict[str, Any]) -> int | None:
    for key in ("size", "image_size"):
        value = info.get(key)
        if isinstance(value, (list, tuple)):
            value = value[0]
        if value is not None:
            return int(value)
    return None


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


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (needed by the TensorBoard callback) is installed."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def resolve_precision(mode: str) -> str:
    """The Keras dtype policy for ``--mixed-precision``: ``auto`` = mixed_float16 on a GPU, else float32."""
    if mode not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {', '.join(PRECISIONS)}; got {mode!r}")
    if mode == "on" or (mode == "auto" and gpu_count() > 0):
        return "mixed_float16"
    return "float32"


# --------------------------------------------------------------------------------------- callbacks
class BestModelCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` (atomically) whenever ``monitor`` improves (mode max).

    ``export`` may return another model to save (a float32 twin under mixed precision): its weights
    are copied from the training model first.
    """

    def __init__(
        self, path: Path, monitor: str = "val_miou", initial_best: float = -math.inf, export: Any = None
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.best = initial_best
        self.best_epoch: int | None = None
        self.export = export

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) <= self.best:
            return
        self.best, self.best_epoch = float(value), epoch + 1
        target = self.model
        if self.export is not None:
            target = self.export()
            target.set_weights(self.model.get_weights())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.stem}.tmp.keras")
        target.save(tmp)
        os.replace(tmp, self.path)


class HistoryCSV(keras.callbacks.Callback):
    """One row per epoch in ``path`` (epoch numbered from 1, learning rate, every log); rewritten
    atomically after each epoch and kept across resumes (rows after the resume point are dropped)."""

    def __init__(self, path: Path, append: bool) -> None:
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = read_history(self.path) if append and self.path.is_file() else []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.rows = [r for r in self.rows if int(float(r["epoch"])) <= epoch]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row: dict[str, Any] = {"epoch": epoch + 1}
        try:
            row["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        except (AttributeError, TypeError, ValueError):
            pass
        row.update({k: float(v) for k, v in (logs or {}).items() if k not in ("learning_rate", "lr")})
        self.rows.append(row)
        keys: list[str] = []
        for r in self.rows:
            keys.extend(k for k in r if k not in keys)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


class NaNGuard(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that also remembers the (1-based) epoch where the loss became NaN or infinite."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.nan_epoch: int | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.nan_epoch is None:
            self.nan_epoch = self.epoch + 1
        super().on_batch_end(batch, logs)


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a ``history.csv`` with numbers as floats."""
    return read_numeric_csv(path)


def history_columns(path: str | os.PathLike[str]) -> dict[str, list[float]]:
    """``history.csv`` as ``{column: [value per epoch]}``."""
    rows = read_history(path)
    keys = list(rows[0]) if rows else []
    return {k: [r.get(k, math.nan) for r in rows] for k in keys}


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
        seed=cfg.seed,
        drop_remainder=global_batch > cfg.batch_size,  # equal shards for every replica
        repeat=cfg.max_steps_per_epoch is not None,
        image_size=image_size,
    )
    # with several replicas, a partial last batch cannot be sharded evenly: drop it when possible
    n_val = _split_count(pipeline.read_dataset_info(prep), "val") or 0
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
    return train_ds, val_ds


def _class_weight_vector(method: str, prep: Path) -> list[float] | None:
    if method == "none":
        return None
    from facesegm_utils import pipeline

    weights = np.asarray(pipeline.class_weights(prep, method), dtype="float64").reshape(-1)
    if weights.shape != (NUM_CLASSES,) or not np.all(np.isfinite(weights)):
        raise FacesegmError(
            f"class weights ({method}) from {prep} are not {NUM_CLASSES} finite numbers: {weights}"
        )
    return [float(w) for w in weights]


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
    image_size = int(cfg.image_size or _info_size(info) or 0)
    if not image_size:
        raise FacesegmError(f"no image size given and none found in {prep / 'dataset.json'}")
    check_image_size(image_size, cfg.depth, cfg.encoder)
    n_train = _split_count(info, "train")
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
    class_weights = _class_weight_vector(cfg.class_weights, prep)
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
        "dataset": {k: info.get(k) for k in ("size", "image_size", "counts", "split") if k in info},
        "versions": _versions(),
        "command": command_line(cfg),
        "status": "running",
    }
    atomic_write_json(run / "config.json", record)

    history_path = run / "history.csv"
    initial_best = -math.inf
    if resuming and history_path.is_file():
        past = [r.get("val_miou", math.nan) for r in read_history(history_path)]
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
                lr = keras.optimizers.schedules.CosineDecay(
                    cfg.lr, decay_steps=max(1, cfg.epochs * (steps_per_epoch or 1)), alpha=0.01
                )
            compile_model(model, get_loss(cfg.loss, class_weights), lr, NUM_CLASSES)

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

        checkpoint = BestModelCheckpoint(run / "model.keras", "val_miou", initial_best, export)
        nan_guard = NaNGuard()
        cbs: list[Any] = [
            keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=True),
            checkpoint,
            HistoryCSV(history_path, append=resuming),
            nan_guard,
            keras.callbacks.EarlyStopping(monitor="val_miou", mode="max", patience=cfg.patience, verbose=1),
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
    history = history_columns(history_path) if history_path.is_file() else {}
    best = [v for v in history.get("val_miou", []) if math.isfinite(v)]
    record.update(
        {
            "status": "finished",
            "epochs_run": len(history.get("epoch", [])),
            "best_val_miou": max(best) if best else None,
            "best_epoch": int(history["epoch"][int(np.nanargmax(history["val_miou"]))]) if best else None,
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
    }


def evaluate_split(
    model: keras.Model | str | os.PathLike[str],
    data: str | os.PathLike[str],
    split: str = "test",
    batch_size: int = 8,
) -> dict[str, float]:
    """Dataset-level ``pixel_accuracy`` and ``miou`` of a model on one split of a prepared dataset."""
    from facesegm_utils import pipeline

    prep = check_prepared(data)
    net = model if isinstance(model, keras.Model) else load_model(model)
    size = int(net.input_shape[1])
    ds = pipeline.make_dataset(prep, split, batch_size, training=False, image_size=size)
    acc = keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy")
    miou = DatasetMeanIoU(int(net.output_shape[-1]), name="miou")
    n = 0
    for batch in ds:
        images, labels = batch[0], batch[1]
        logits = net(images, training=False)
        acc.update_state(labels, logits)
        miou.update_state(labels, logits)
        n += int(images.shape[0])
    if n == 0:
        raise FacesegmError(f"split {split!r} of {prep} holds no images")
    return {"pixel_accuracy": float(acc.result()), "miou": float(miou.result()), "images": n}


def compare_losses(
    base: TrainConfig, losses: list[str], epochs: int, out_root: str | os.PathLike[str], split: str = "val"
) -> list[dict[str, Any]]:
    """Train one short run per loss (same seed, data and model) and score each on ``split``.

    Each run goes to ``out_root/<loss>``; returns one row per loss with the split's dataset-level
    ``miou`` and ``pixel_accuracy``, the best validation mIoU seen and the seconds taken.
    """
    rows = []
    for name in losses:
        slug = name.replace("+", "_")
        run = Path(out_root) / slug
        if (run / "backup").is_dir():
            import shutil

            shutil.rmtree(run / "backup")
        cfg = dataclasses.replace(
            base, loss=name, epochs=int(epochs), out=str(run), patience=max(1, int(epochs))
        )
        result = train(cfg)
        scores = evaluate_split(result["model_path"], base.data, split, batch_size=base.batch_size)
        rows.append(
            {
                "loss": name,
                f"{split}_miou": scores["miou"],
                f"{split}_pixel_accuracy": scores["pixel_accuracy"],
                "best_val_miou": result["best_val_miou"],
                "seconds": round(result["seconds"], 1),
            }
        )
    return rows


def command_line(cfg: TrainConfig) -> str:
    """The ``facesegm train`` command that reproduces ``cfg``."""
    parts = ["facesegm train", f"--data {cfg.data}", f"--out {cfg.out}"]
    for f in dataclasses.fields(cfg):
        if f.name in ("data", "out", "extra"):
            continue
        value = getattr(cfg, f.name)
        if value is None or value == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{f.name.replace('_', '-')}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facesegm train``."""
    d = TrainConfig(data="", out="")
    parser.add_argument("--data", required=True, help="prepared dataset folder (from `facesegm prepare`)")
    parser.add_argument(
        "--out", required=True, help="run folder (model.keras, history.csv, logs/, config.json)"
    )
    parser.add_argument("--image-size", type=int, default=None, help="default: the prepared dataset's size")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="per replica")
    parser.add_argument("--loss", choices=LOSS_NAMES, default=d.loss)
    parser.add_argument("--class-weights", choices=CLASS_WEIGHT_METHODS, default=d.class_weights)
    parser.add_argument("--base-filters", type=int, default=d.base_filters)
    parser.add_argument("--depth", type=int, default=d.depth)
    parser.add_argument("--dropout", type=float, default=d.dropout)
    parser.add_argument("--upsampling", choices=UPSAMPLING_MODES, default=d.upsampling)
    parser.add_argument("--encoder", choices=tuple(ENCODERS), default=None)
    parser.add_argument("--encoder-weights", choices=("imagenet",), default=None, help="needs internet once")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    parser.add_argument("--mixed-precision", choices=PRECISIONS, default=d.mixed_precision)
    parser.add_argument("--strategy", choices=STRATEGIES, default=d.strategy)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience (epochs)")
    parser.add_argument("--max-steps-per-epoch", type=int, default=None)
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument("--no-cache", dest="cache", action="store_false")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm train``."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    result = train(cfg)
    print(json.dumps({k: result[k] for k in ("model_path", "best_val_miou", "best_epoch", "epochs_run")}))
    return 0
