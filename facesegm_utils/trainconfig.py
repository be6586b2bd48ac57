"""The configuration of a training run: :class:`TrainConfig`, its option choices and checks.

``TrainConfig`` holds every option of ``facesegm train`` (its defaults are the course's recommended
recipe) and :class:`TrainPlan` what they resolve to on a dataset and a number of replicas;
:func:`add_arguments` turns it into the command line's options and :func:`command_line` turns a
configuration back into the command that reproduces it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from facesegm_utils.fileio import FacesegmError

# No TensorFlow here: the choices that belong to the model and the loss are imported where they are
# checked, so that a configuration can be built, read and written without loading TensorFlow.
CLASS_WEIGHT_METHODS: tuple[str, ...] = ("none", "median_frequency", "inverse_sqrt")
SCHEDULES: tuple[str, ...] = ("plateau", "cosine", "constant")
PRECISIONS: tuple[str, ...] = ("auto", "on", "off")
STRATEGIES: tuple[str, ...] = ("auto", "default", "mirrored", "multiworker")
#: how ``lr`` follows the global batch: ``linear`` multiplies it by the number of replicas
SCALE_LR: tuple[str, ...] = ("linear", "none")
#: where ``pipeline.make_dataset`` keeps the encoded records between epochs (``none``: reread the files)
CACHE_MODES: tuple[str, ...] = ("memory", "none")
#: options that may differ when a run is started again into its folder (everything else must match)
RESUME_MAY_CHANGE: tuple[str, ...] = ("epochs", "patience", "cache", "out", "extra")


@dataclass
class TrainConfig:
    """Every option of a training run. ``image_size=None`` takes the prepared dataset's size."""

    data: str
    out: str
    image_size: int | None = None
    epochs: int = 30
    batch_size: int = 8
    loss: str = "ce+dice"
    class_weights: str = "median_frequency"
    base_filters: int = 32
    depth: int = 4
    dropout: float = 0.0
    upsampling: str = "transpose"
    encoder: str | None = "efficientnet_lite0"
    encoder_weights: str | None = "imagenet"
    decoder_filters: int | None = 16
    encoder_lr_scale: float = 0.333
    freeze_encoder_epochs: int = 0
    warmup_epochs: int = 1
    lr: float = 3e-3
    schedule: str = "cosine"
    mixed_precision: str = "auto"
    strategy: str = "auto"
    scale_lr: str = "linear"
    seed: int = 0
    patience: int | None = None
    max_steps_per_epoch: int | None = None
    augment: bool = True
    cache: str = "memory"
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
        from facesegm_utils.losses import LOSS_NAMES
        from facesegm_utils.model import ENCODER_WEIGHTS, ENCODERS, UPSAMPLING_MODES

        choices = {
            "loss": (self.loss, LOSS_NAMES),
            "class_weights": (self.class_weights, CLASS_WEIGHT_METHODS),
            "schedule": (self.schedule, SCHEDULES),
            "mixed_precision": (self.mixed_precision, PRECISIONS),
            "strategy": (self.strategy, STRATEGIES),
            "scale_lr": (self.scale_lr, SCALE_LR),
            "upsampling": (self.upsampling, UPSAMPLING_MODES),
            "cache": (self.cache, CACHE_MODES),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.encoder is not None and self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)} or None; got {self.encoder!r}")
        if self.encoder_weights not in (None, *ENCODER_WEIGHTS):
            raise ValueError(
                f"encoder_weights must be one of {ENCODER_WEIGHTS} or None; got {self.encoder_weights!r}"
            )
        if self.encoder is None and self.encoder_weights is not None:
            raise ValueError(f"encoder_weights={self.encoder_weights!r} needs an encoder (encoder is None)")
        if self.decoder_filters is not None and int(self.decoder_filters) < 1:
            raise ValueError(
                f"decoder_filters must be a positive integer or None; got {self.decoder_filters}"
            )
        if not (0 <= self.encoder_lr_scale <= 1):
            raise ValueError(f"encoder_lr_scale must be in [0, 1]; got {self.encoder_lr_scale}")
        if int(self.warmup_epochs) < 0:
            raise ValueError(f"warmup_epochs must be >= 0; got {self.warmup_epochs}")
        if int(self.freeze_encoder_epochs) < 0:
            raise ValueError(f"freeze_encoder_epochs must be >= 0; got {self.freeze_encoder_epochs}")
        if self.patience is not None and int(self.patience) < 1:
            raise ValueError(f"patience must be a positive integer or None; got {self.patience}")
        for name in ("epochs", "batch_size", "base_filters", "depth"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number; got {self.lr}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1 or None; got {self.max_steps_per_epoch}")
        if self.image_size is not None:
            check_image_size(int(self.image_size), self.depth, self.encoder)

    def unet_options(self, image_size: int) -> dict[str, Any]:
        """The keyword arguments of :func:`facesegm_utils.model.build_unet` for this run."""
        names = (
            "base_filters",
            "depth",
            "dropout",
            "upsampling",
            "encoder",
            "encoder_weights",
            "decoder_filters",
        )
        return {"image_size": image_size, **{n: getattr(self, n) for n in names}}

    def plan(self, n_train: int | None, replicas: int) -> TrainPlan:
        """The batches and the learning rate of this run over ``replicas`` for ``n_train`` training images."""
        global_batch = self.batch_size * replicas
        steps_per_epoch = math.ceil(n_train / global_batch) if n_train else None
        if n_train and replicas > 1:  # every replica gets equal full batches: the last partial one is dropped
            if n_train < global_batch:
                raise FacesegmError(
                    f"{n_train} training images cannot fill one global batch of {global_batch}"
                )
            steps_per_epoch = n_train // global_batch
        if self.max_steps_per_epoch is not None:
            steps_per_epoch = min(steps_per_epoch or self.max_steps_per_epoch, self.max_steps_per_epoch)
        lr = self.lr * replicas if self.scale_lr == "linear" else self.lr
        return TrainPlan(replicas, global_batch, steps_per_epoch, lr)


@dataclass(frozen=True)
class TrainPlan:
    """What a :class:`TrainConfig` resolves to on a dataset and a number of replicas."""

    replicas: int
    #: ``batch_size * replicas``: the images of one optimizer step
    global_batch: int
    #: None when the training count is unknown (a full pass over the data)
    steps_per_epoch: int | None
    #: the peak learning rate after ``--scale-lr``
    lr: float


def check_image_size(image_size: int, depth: int, encoder: str | None = None) -> None:
    """Raise ``ValueError`` if ``image_size`` is not divisible by the U-Net's total stride."""
    from facesegm_utils.model import ENCODER_DEPTH

    factor = 2 ** (ENCODER_DEPTH if encoder else depth)
    if image_size < 1 or image_size % factor:
        raise ValueError(
            f"image size {image_size} is not divisible by 2**{ENCODER_DEPTH if encoder else depth} = {factor}, "
            f"which a U-Net of depth {ENCODER_DEPTH if encoder else depth} needs; choose a multiple of {factor}"
        )


def command_line(cfg: TrainConfig) -> str:
    """The ``facesegm train`` command that reproduces ``cfg``."""
    parts = ["facesegm train", f"--data {cfg.data}", f"--out {cfg.out}"]
    for f in dataclasses.fields(cfg):
        if f.name in ("data", "out", "extra"):
            continue
        value = getattr(cfg, f.name)
        if value == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if value is None:
            parts.append(f"{flag} none")
            continue
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{f.name.replace('_', '-')}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def _none_or_str(text: str) -> str | None:
    return None if text.strip().lower() in ("none", "") else text


def _none_or_int(text: str) -> int | None:
    return None if text.strip().lower() in ("none", "") else int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facesegm train``."""
    from facesegm_utils.losses import LOSS_NAMES
    from facesegm_utils.model import ENCODER_WEIGHTS, ENCODERS, UPSAMPLING_MODES

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
    parser.add_argument(
        "--encoder",
        type=_none_or_str,
        choices=(*ENCODERS, None),
        default=d.encoder,
        help=f"pretrained encoder, or none for the plain U-Net (default {d.encoder})",
    )
    parser.add_argument(
        "--encoder-weights",
        type=_none_or_str,
        choices=(*ENCODER_WEIGHTS, None),
        default=d.encoder_weights,
        help=f"imagenet or none (random); efficientnet_lite0's install with the package, the Keras "
        f"Applications encoders' download once (default {d.encoder_weights})",
    )
    parser.add_argument(
        "--decoder-filters",
        type=_none_or_int,
        default=d.decoder_filters,
        help="width d of a pretrained encoder's decoder: 8d, 4d, 3d, 2d, d filters at strides 16..1 "
        "(default: 16, 8, 4, 2, 1 x --base-filters)",
    )
    parser.add_argument(
        "--encoder-lr-scale",
        type=float,
        default=d.encoder_lr_scale,
        help="the pretrained encoder's learning rate as a fraction of --lr",
    )
    parser.add_argument(
        "--warmup-epochs",
        type=int,
        default=d.warmup_epochs,
        help="with --schedule cosine: epochs of linear learning-rate warmup first",
    )
    parser.add_argument(
        "--freeze-encoder-epochs",
        type=int,
        default=d.freeze_encoder_epochs,
        help="keep the pretrained encoder's weights fixed for this many first epochs",
    )
    _add_fit_arguments(parser, d)


def _add_fit_arguments(parser: argparse.ArgumentParser, d: TrainConfig) -> None:
    """The optimisation, distribution and input options of ``facesegm train`` (defaults from ``d``)."""
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    parser.add_argument("--mixed-precision", choices=PRECISIONS, default=d.mixed_precision)
    parser.add_argument("--strategy", choices=STRATEGIES, default=d.strategy)
    parser.add_argument(
        "--scale-lr",
        choices=SCALE_LR,
        default=d.scale_lr,
        help="linear (default): --lr is for one replica's batch and is multiplied by the number of "
        "replicas, as the global batch is; none: --lr as given",
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--patience",
        type=_none_or_int,
        default=d.patience,
        help="stop after this many epochs without a better validation mIoU (default none: the schedule runs to "
        "its end; the best epoch is kept either way)",
    )
    parser.add_argument("--max-steps-per-epoch", type=int, default=None)
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument(
        "--cache",
        choices=CACHE_MODES,
        default=d.cache,
        help="keep the encoded prepared files in memory (default; falls back to none above a quarter "
        "of the RAM) or reread them every epoch (none: memory flat with the dataset's size)",
    )
