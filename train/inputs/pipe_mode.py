"""Pipe mode's rules and sources, from a job's hyperparameters and channels.

The built-in algorithm's rules for Pipe mode: ``num_training_samples`` and ``num_classes`` are
required, a ``validation`` channel is needed (no split can be carved from a stream), and the
training channel is the streamed one.
"""

from __future__ import annotations

import threading

from train import records
from train.config import TrainConfig
from train.errors import ClientError
from train.inputs import manifest, stream
from train.inputs.channels import Channel
from train.paths import Paths


def source(
    paths: Paths,
    cfg: TrainConfig,
    channel: Channel,
    *,
    lossless: bool,
    stop: threading.Event | None = None,
) -> stream.StreamSource:
    """The stream of ``channel``, its images stored as File mode packs them (``lossless`` for
    validation); ``stop`` (SIGTERM) ends a wait for its FIFO."""
    _, height, width = cfg.image_shape
    return stream.StreamSource(
        channel,
        paths.data_dir,
        paths.scratch_dir() / "pipe",
        manifest.LabelFormat(cfg.multi_label, cfg.num_classes, channel.class_id_labels),
        records.PackSettings(cfg.effective_resize, lossless, (height, width), cfg.max_image_pixels),
        cfg.pipe_wait_timeout,
        cfg.max_bad_image_fraction,
        stop,
    )


def check_settings(
    cfg: TrainConfig, channels: dict[str, Channel], has_validation_dir: bool
) -> tuple[int, int]:
    """The built-in's rules for Pipe mode, checked before any FIFO is opened; returns
    ``num_classes`` and ``num_training_samples``, which Pipe mode requires."""
    problems = []
    if not channels.get("train", Channel("train")).pipe:
        problems.append("the 'validation' channel is in Pipe mode but 'train' is not: stream both")
    if cfg.num_training_samples is None:
        problems.append(
            "num_training_samples is required in Pipe mode: the number of training images in "
            "the stream (a stream cannot be counted in advance; with several hosts it sets "
            "the batches per epoch)"
        )
    if cfg.num_classes is None:
        problems.append("num_classes is required in Pipe mode")
    if "validation" not in channels and not has_validation_dir:
        problems.append(
            "Pipe mode needs a 'validation' channel: a validation split cannot be carved "
            "from a stream"
        )
    if cfg.use_weighted_loss:
        problems.append(
            "use_weighted_loss=1 needs the class frequencies before training, which a stream "
            "does not give: use File mode, or use_weighted_loss=0"
        )
    if problems or cfg.num_classes is None or cfg.num_training_samples is None:
        raise ClientError("; ".join(problems))
    return cfg.num_classes, cfg.num_training_samples
