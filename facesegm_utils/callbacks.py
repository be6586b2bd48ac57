"""What training watches and writes: the dataset-level mIoU metric and the callbacks.

:class:`DatasetMeanIoU` is the metric every run reports; :class:`BestModelCheckpoint`,
:class:`HistoryCSV` and :class:`NaNGuard` are the callbacks of :func:`facesegm_utils.training.train`
(:func:`facesegm_utils.fileio.read_history` reads the ``history.csv`` they write);
:func:`run_callbacks` puts them together with Keras' own for a run folder.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

import keras

from facesegm_utils.fileio import atomic_write_text, read_history
from facesegm_utils.labels import NUM_CLASSES

#: the training-time mIoU is computed at the MODEL's input size (labels resized nearest to it), so
#: it is named so in ``history.csv``; the full-resolution score is ``facesegm evaluate``'s
MIOU = "miou_model_size"
#: the validation mIoU that picks the best checkpoint and drives early stopping
VAL_MIOU = "val_" + MIOU
#: epochs without a lower validation loss before ``--schedule plateau`` halves the rate (a third of
#: ``--patience`` when that is set)
PLATEAU_PATIENCE = 10


# ----------------------------------------------------------------------------------------- metrics
@keras.saving.register_keras_serializable(package="facesegm")
class DatasetMeanIoU(keras.metrics.MeanIoU):
    """Mean IoU from logits over one confusion matrix accumulated across the whole epoch.

    Classes absent from both truth and prediction over the epoch are left out of the mean (Keras'
    ``MeanIoU`` rule). This is the dataset-level mIoU, not an average of per-batch figures.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, name: str = MIOU, **kwargs: Any) -> None:
        kwargs.setdefault("sparse_y_true", True)
        kwargs.setdefault("sparse_y_pred", False)
        super().__init__(num_classes=num_classes, name=name, **kwargs)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        if len(y_true.shape) == len(y_pred.shape):
            y_true = keras.ops.squeeze(y_true, axis=-1)
        return super().update_state(y_true, y_pred, sample_weight)


def compile_model(
    model: keras.Model, loss: keras.losses.Loss, learning_rate: Any, num_classes: int, optimizer: Any = None
) -> None:
    """Compile with ``optimizer`` (default Adam at ``learning_rate``), ``loss`` and the metrics
    ``pixel_accuracy`` and ``miou_model_size``."""
    model.compile(
        optimizer=optimizer if optimizer is not None else keras.optimizers.Adam(learning_rate),
        loss=loss,
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy"),
            DatasetMeanIoU(num_classes, name=MIOU),
        ],
    )
    # Build the optimizer's slots now, in the caller's strategy scope. Left to fit(), outside a
    # distribution strategy Keras creates them while tracing the first train step, and a tf.function
    # that creates variables traces twice (bench_first_step: 11 s more a run, Lite0 U-Net at 128²).
    model.optimizer.build(model.trainable_variables)


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (needed by the TensorBoard callback) is installed."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


# --------------------------------------------------------------------------------------- callbacks
class BestModelCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` (atomically) whenever ``monitor`` improves (mode max).

    ``export`` may return another model to save (a float32 twin under mixed precision): its weights
    are copied from the training model first.
    """

    def __init__(
        self, path: Path, monitor: str = VAL_MIOU, initial_best: float = -math.inf, export: Any = None
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.best = initial_best
        self.export = export

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) <= self.best:
            return
        self.best = float(value)
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
        cols = read_history(self.path) if append and self.path.is_file() else {}
        rows = zip(*cols.values(), strict=True)
        self.rows: list[dict[str, Any]] = [dict(zip(cols, vals, strict=True)) for vals in rows]

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


def run_callbacks(
    out: Path,
    *,
    patience: int | None,
    schedule: str,
    lr: float,
    resuming: bool,
    initial_best: float,
    export: Any = None,
) -> list[keras.callbacks.Callback]:
    """The callbacks of a run writing into ``out``: ``backup/`` (the last epoch, kept after the end so
    that a finished run can be extended), the best checkpoint, ``history.csv``, the NaN guard, early
    stopping (when ``patience`` is set), TensorBoard logs and, with ``schedule="plateau"``, the plateau
    rule."""
    cbs: list[keras.callbacks.Callback] = [
        keras.callbacks.BackupAndRestore(str(out / "backup"), delete_checkpoint=False),
        BestModelCheckpoint(out / "model.keras", VAL_MIOU, initial_best, export),
        HistoryCSV(out / "history.csv", append=resuming),
        NaNGuard(),
    ]
    if patience is not None:
        cbs.append(keras.callbacks.EarlyStopping(monitor=VAL_MIOU, mode="max", patience=patience, verbose=1))
    if tensorboard_available():
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(out / "logs"), write_graph=False, profile_batch=0))
    else:
        print("note: the tensorboard package is not installed, so no TensorBoard logs are written")
    if schedule == "plateau":
        cbs.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=0.5,
                patience=PLATEAU_PATIENCE if patience is None else max(1, patience // 3),
                min_lr=lr / 100,
                verbose=1,
            )
        )
    return cbs
