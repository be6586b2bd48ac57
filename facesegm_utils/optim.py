"""The optimizer: Adam whose pretrained encoder learns more slowly, or not at all for the first steps.

Scaling an encoder's *gradients* would change nothing under Adam (its update divides the gradient by
its own running magnitude), so a slower encoder needs a per-variable *learning rate*.
:class:`EncoderAdam` is Adam with two groups of variables: those whose path starts with one of
``encoder_prefixes`` take ``learning_rate * encoder_lr_scale``, and none of them moves while
``iterations < frozen_steps`` (a frozen encoder for the first epochs, without recompiling the model).
Everything else takes the full learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras


@keras.saving.register_keras_serializable(package="facesegm")
class EncoderAdam(keras.optimizers.Adam):
    """Adam with a scaled (``encoder_lr_scale``) and optionally frozen (``frozen_steps``) encoder group."""

    def __init__(
        self,
        learning_rate: Any = 1e-3,
        encoder_prefixes: Sequence[str] = (),
        encoder_lr_scale: float = 1.0,
        frozen_steps: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not encoder_lr_scale >= 0:
            raise ValueError(f"encoder_lr_scale must be >= 0, got {encoder_lr_scale}")
        if int(frozen_steps) < 0:
            raise ValueError(f"frozen_steps must be >= 0, got {frozen_steps}")
        self.encoder_prefixes = tuple(str(p) for p in encoder_prefixes)
        self.encoder_lr_scale = float(encoder_lr_scale)
        self.frozen_steps = int(frozen_steps)

    def in_encoder(self, variable: Any) -> bool:
        """Whether the Keras ``variable`` belongs to the encoder group (by its path)."""
        return any(variable.path.startswith(p) for p in self.encoder_prefixes)

    def build(self, variables: Any) -> None:
        super().build(variables)
        # update_step may receive the backend's variable (no path): remember the group by index
        self._encoder_index = {self._get_variable_index(v) for v in variables if self.in_encoder(v)}

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        slow = self._get_variable_index(variable) in self._encoder_index
        if slow and (self.encoder_lr_scale != 1.0 or self.frozen_steps):
            lr = keras.ops.cast(learning_rate, variable.dtype) * self.encoder_lr_scale
            if self.frozen_steps:
                lr = keras.ops.where(self.iterations < self.frozen_steps, keras.ops.zeros_like(lr), lr)
            learning_rate = lr
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "encoder_prefixes": list(self.encoder_prefixes),
                "encoder_lr_scale": self.encoder_lr_scale,
                "frozen_steps": self.frozen_steps,
            }
        )
        return config


def encoder_prefixes(model: keras.Model) -> tuple[str, ...]:
    """Path prefixes of the variables of ``model``'s pretrained encoder (the ``encoder_*`` sub-model)."""
    prefixes: set[str] = set()
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name.startswith("encoder_"):
            prefixes.update(v.path.rsplit("/", 1)[0] + "/" for v in layer.weights)
    return tuple(sorted(prefixes))


def make_optimizer(
    model: keras.Model, learning_rate: Any, encoder_lr_scale: float = 1.0, frozen_steps: int = 0
) -> keras.optimizers.Optimizer:
    """Plain Adam for a model without a pretrained encoder, else :class:`EncoderAdam` over its encoder."""
    prefixes = encoder_prefixes(model)
    if not prefixes or (encoder_lr_scale == 1.0 and frozen_steps == 0):
        return keras.optimizers.Adam(learning_rate)
    return EncoderAdam(learning_rate, prefixes, encoder_lr_scale, frozen_steps)


def cosine_schedule(
    lr: float,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: int = 0,
    resumes: Sequence[tuple[int, int]] = (),
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warmup from ``lr / 100`` to ``lr`` over ``warmup_epochs``, then cosine decay to ``lr / 100``
    at ``epochs``.

    ``resumes`` lists, in order, each ``(epoch, new_epochs)`` where a resumed or extended run changed its
    length: from that epoch on the rate follows a new cosine segment that starts at the rate reached
    there and ends at ``lr / 100`` at ``new_epochs``, so the learning rate never jumps (extending a
    finished run therefore continues at ``lr / 100``). Before the last resume's epoch, steps a resumed
    run never takes again, the rate is held at the rate there.
    """
    total = max(1, int(epochs) * int(steps_per_epoch))
    warmup = min(int(warmup_epochs) * int(steps_per_epoch), total - 1)
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=0.01)
    if warmup > 0:
        schedule = keras.optimizers.schedules.CosineDecay(
            lr / 100, decay_steps=total - warmup, alpha=0.01, warmup_target=lr, warmup_steps=warmup
        )
    for epoch, new_epochs in resumes:
        start = int(epoch) * int(steps_per_epoch)
        rate = float(keras.ops.convert_to_numpy(schedule(start)))
        # a "warmup" from the rate to itself holds it until ``start``; the cosine segment follows
        schedule = keras.optimizers.schedules.CosineDecay(
            rate,
            decay_steps=max(1, (int(new_epochs) - int(epoch)) * int(steps_per_epoch)),
            alpha=min(1.0, lr / 100 / rate),
            warmup_target=rate,
            warmup_steps=start,
        )
    return schedule
