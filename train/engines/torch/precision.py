"""Mixed precision for the torch engine: autocast, and MXNet 1.9.1 AMP's dynamic loss scaling.

``float16`` computes under ``torch.autocast`` with :class:`DynamicLossScaler`; ``bfloat16``
(GPUs that have it) under autocast with no scaling (its range is float32's); weights stay
float32 either way, as under MXNet AMP.

The scaler follows ``mxnet/contrib/amp/loss_scaler.py`` (``LossScaler``) and
``gluon.Trainer._update`` rather than ``torch.amp.GradScaler``, which differs in three ways:

- MXNet caps the scale at 2**24; GradScaler has no cap.
- MXNet applies a decision one step later: ``has_overflow`` first adopts the scale it decided
  at the previous check, then decides the next one, so an overflow at step ``k`` lowers the
  scale from step ``k+2`` on (step ``k+1`` runs at the old scale, and may overflow again).
  GradScaler lowers it from step ``k+1``.
- MXNet unscales inside the update (``rescale_grad = 1/(loss_scale * batch)``); GradScaler
  multiplies the gradients by ``1/scale`` first. The scale is a power of two: no difference.

Shared rules: start at 2**16; a step whose gradients hold an inf or NaN is skipped (weights,
state and update counts untouched) and halves the scale; 2,000 clean steps in a row double it.
The scaler is not part of a checkpoint: ``Trainer.save_states`` pickles the optimizer only, so
a resumed MXNet job starts again at 2**16.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from train.engines.torch.optim import MXNetOptimizer

logger = logging.getLogger(__name__)

INITIAL_SCALE = 2.0**16
MAX_SCALE = 2.0**24
GROWTH_INTERVAL = 2000
_AUTOCAST_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def autocast(precision_dtype: str, device_type: str) -> contextlib.AbstractContextManager:
    """The forward pass's context: autocast to ``precision_dtype``, or nothing for float32."""
    if precision_dtype == "float32":
        return contextlib.nullcontext()
    if precision_dtype not in _AUTOCAST_DTYPES:
        raise ValueError(f"precision_dtype {precision_dtype!r} is not float32, float16 or bfloat16")
    return torch.autocast(device_type, dtype=_AUTOCAST_DTYPES[precision_dtype])


def needs_loss_scaling(precision_dtype: str) -> bool:
    """float16 gradients underflow without scaling; bfloat16 and float32 ones do not."""
    return precision_dtype == "float16"


class DynamicLossScaler:
    """MXNet AMP's loss scaler: multiply the loss by :attr:`scale` before ``backward``, then
    :meth:`step` instead of ``optimizer.step()``."""

    def __init__(self, initial_scale: float = INITIAL_SCALE):
        self._scale = initial_scale
        self._next_scale = initial_scale
        self._unskipped = 0

    @property
    def scale(self) -> float:
        """The factor for the loss of the coming backward pass."""
        return self._scale

    def record(self, overflow: bool) -> None:
        """``LossScaler.has_overflow``'s bookkeeping after a step with or without overflow."""
        self._scale = self._next_scale
        if overflow:
            self._next_scale = self._scale / 2.0
            self._unskipped = 0
            logger.info("AMP: decreasing loss scale to %f", self._next_scale)
        else:
            self._unskipped += 1
        if self._unskipped == GROWTH_INTERVAL:
            self._unskipped = 0
            self._next_scale = min(MAX_SCALE, self._scale * 2.0)
            logger.info("AMP: increasing loss scale to %f", self._next_scale)

    def step(self, optimizer: MXNetOptimizer) -> bool:
        """Update with the gradients unscaled, or skip the update when one overflowed;
        returns whether the update ran."""
        used = self._scale
        grads = [
            p.grad
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        overflow = bool(grads) and not bool(
            torch.stack([torch.isfinite(g).all() for g in grads]).all()
        )
        self.record(overflow)
        if overflow:
            return False
        base = optimizer.rescale_grad
        optimizer.set_rescale_grad(base / used)
        try:
            optimizer.step()
        finally:
            optimizer.set_rescale_grad(base)
        return True
