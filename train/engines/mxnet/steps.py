"""One epoch of training and one pass of evaluation, each returning plain numbers.

Batches come from MXNet's C++ iterator; each is split across the devices, the forward and
backward passes run asynchronously, and the loop only synchronises for the metrics once per
batch. A stop request (SIGTERM) is honoured between batches, in training and in evaluation.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from train import precision
from train.errors import TrainingInterrupted
from train.metric_lines import batch_speed_line
from train.scoring import Scores

logger = logging.getLogger(__name__)

LOG_EVERY_BATCHES = 50


@dataclass(frozen=True)
class LossSetup:
    """The loss and how predictions are scored: softmax/top-k or per-class sigmoid."""

    loss: gluon.loss.Loss
    multi_label: bool
    top_k: int | None


def make_loss(multi_label: bool, top_k: int | None) -> LossSetup:
    """Softmax cross-entropy, or sigmoid BCE (optionally class-weighted) for multi-label."""
    if not multi_label:
        return LossSetup(gluon.loss.SoftmaxCrossEntropyLoss(), False, top_k)
    return LossSetup(gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False), True, None)


def _split(data, label, ctx: list) -> tuple[list, list]:
    """Slices of a batch, one per device (fewer when the batch has fewer samples than there
    are devices: a slice is never empty)."""
    devices = ctx[: max(1, min(len(ctx), data.shape[0]))]
    return (
        gluon.utils.split_and_load(data, devices, even_split=False),
        gluon.utils.split_and_load(label, devices, even_split=False),
    )


def _unpadded(batch, remaining: int) -> tuple[mx.nd.NDArray, mx.nd.NDArray]:
    """The real samples of a batch. ``ImageRecordIter(round_batch=False)`` reports ``pad=0``
    on its last, padded batch (MXNet 1.9.1), so the known sample count decides."""
    data, label = batch.data[0], batch.label[0]
    keep = min(data.shape[0] - (batch.pad or 0), remaining)
    return data[:keep], label[:keep]


def train_one_epoch(
    net,
    trainer: gluon.Trainer,
    data_iter,
    ctx: list,
    setup: LossSetup,
    *,
    epoch: int,
    stop: threading.Event,
    pos_weight=None,
    progress=None,
    step_scale: int = 1,
    mixed_precision: bool = False,
) -> dict[str, float]:
    """Train for one pass over ``data_iter``; returns accuracy, loss, samples/sec, time.

    With ``mixed_precision`` the backward pass runs on AMP's scaled loss (see
    :mod:`train.precision`); ``trainer`` must then have been through ``amp.init_trainer``.
    """
    data_iter.reset()
    scores = Scores(setup)
    start = tick = time.time()
    for i, batch in enumerate(data_iter):
        if stop.is_set():
            raise TrainingInterrupted(f"stop requested during epoch {epoch}")
        datas, labels = _split(batch.data[0], batch.label[0], ctx)
        with autograd.record():
            outputs = [net(x) for x in datas]
            losses = [_loss(setup, o, y, pos_weight) for o, y in zip(outputs, labels, strict=True)]
            precision.backward(losses, trainer, mixed_precision)
        trainer.step(batch.data[0].shape[0] * step_scale)
        for y, o, loss in zip(labels, outputs, losses, strict=True):
            scores.update(y.asnumpy(), o.astype("float32").asnumpy(), loss.asnumpy())
        if progress is not None:
            progress.update(batch.data[0].shape[0])
            progress.set_postfix(loss=f"{scores.loss:.3f}", acc=f"{scores.accuracy:.3f}")
        if (i + 1) % LOG_EVERY_BATCHES == 0:
            speed = LOG_EVERY_BATCHES * batch.data[0].shape[0] / (time.time() - tick)
            logger.info(batch_speed_line(epoch, i + 1, speed, scores.accuracy))
            tick = time.time()
    return scores.epoch_result(time.time() - start)


def _loss(setup: LossSetup, output, label, pos_weight):
    if setup.multi_label and pos_weight is not None:
        return setup.loss(output, label, None, pos_weight.as_in_context(output.context))
    return setup.loss(output, label)


def evaluate(
    net,
    data_iter,
    ctx: list,
    setup: LossSetup,
    num_samples: int,
    *,
    stop: threading.Event | None = None,
) -> dict:
    """Score the ``num_samples`` images of ``data_iter`` (padding removed), each batch split
    across the devices; returns accuracy, loss and the raw outputs (logits) with their labels,
    in the iterator's order.

    Raises:
        TrainingInterrupted: ``stop`` was set.
    """
    data_iter.reset()
    scores = Scores(setup)
    all_outputs, all_labels = [], []
    for batch in data_iter:
        if stop is not None and stop.is_set():
            raise TrainingInterrupted("stop requested during validation")
        data, label = _unpadded(batch, num_samples - scores.count)
        if data.shape[0] == 0:
            break
        datas, labels = _split(data, label, ctx)
        outputs = [net(x).astype("float32") for x in datas]
        for y, output in zip(labels, outputs, strict=True):
            out_np, label_np = output.asnumpy(), y.asnumpy()
            scores.update(label_np, out_np, setup.loss(output, y).asnumpy())
            all_outputs.append(out_np)
            all_labels.append(label_np)
    return {
        "accuracy": scores.accuracy,
        "loss": scores.loss,
        "outputs": np.concatenate(all_outputs),
        "labels": np.concatenate(all_labels),
    }
