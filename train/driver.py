"""The framework-neutral half of a training job: the epochs and everything a user sees of them.

The driver owns the learning-rate schedule, early stopping, the checkpoint cadence and
``state.json``, which epochs become model files, the log lines and the reports. An engine
(:mod:`train.engines`: MXNet in-process, PyTorch in its own process) owns the network, the
optimizer and the batches, behind the small :class:`Engine` interface. Nothing here imports a
deep-learning framework, so the PyTorch process runs this same code.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from train import artifacts, checkpoint, records, reports
from train.config import TrainConfig
from train.data import DataSpec
from train.errors import ClientError
from train.formats.metadata import InputConvention
from train.insight import page as report_page
from train.metric_lines import epoch_lines, saved_model_line
from train.paths import Paths

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topology:
    """Where this process sits among the job's workers (one per host, or one per device)."""

    checkpoint_dir: Path
    num_workers: int = 1
    rank: int = 0
    chief: bool = True  # the worker that writes the model and the reports
    step_scale: int = 1  # gradients summed over this many workers: normalise by it


@dataclass(frozen=True)
class Job:
    """What every engine is given: the job's folders, settings, packed data and stop flag."""

    paths: Paths
    cfg: TrainConfig
    spec: DataSpec
    topology: Topology
    stop: threading.Event


class Engine(Protocol):
    """What the driver asks of a training engine. Results are plain Python and numpy values."""

    name: str

    def start(self, first_epoch: int) -> None:
        """Called once, after any resume, before the first epoch runs."""

    def set_learning_rate(self, lr: float) -> None: ...

    def train_epoch(self, epoch: int, progress: Any) -> dict[str, float]:
        """One pass over the training data: accuracy, loss, time, samples_per_sec (top_k)."""

    def evaluate(self) -> dict[str, Any]:
        """Every validation image once: accuracy, loss, ``outputs`` (scores), ``labels``."""

    def save_weights(self, path: Path) -> None: ...

    def save_optimizer(self, path: Path) -> bool:
        """Write the optimizer state; False when it is not held here (parameter servers)."""

    def load_weights(self, path: Path) -> None: ...

    def load_optimizer(self, path: Path) -> None: ...

    def load_best(self, path: Path) -> None:
        """Load weights saved by :meth:`save_weights` to export them as the final model."""

    def export(self, model_dir: Path, epoch_number: int) -> Path:
        """Write the built-in's model files for ``epoch_number``; returns the params path."""


def interactive() -> bool:
    """Progress bars only for a person at a terminal, never in SageMaker's logs."""
    return sys.stderr.isatty() and "TRAINING_JOB_NAME" not in os.environ


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The built-in's step schedule: multiply by the factor at each listed epoch."""
    steps = sum(1 for step in cfg.lr_scheduler_step if step <= epoch)
    return cfg.learning_rate * cfg.lr_scheduler_factor**steps


def fingerprint(cfg: TrainConfig, spec: DataSpec, engine: str) -> dict:
    """What checkpoints must match to be resumed (the engine too: their files differ)."""
    return {
        "num_layers": cfg.num_layers,
        "num_classes": spec.num_classes,
        "image_shape": list(cfg.image_shape),
        "multi_label": cfg.multi_label,
        "engine": engine,
    }


def class_weights(cfg: TrainConfig, spec: DataSpec) -> np.ndarray | None:
    """Per-class positive weights (negatives / positives) for the weighted multi-label loss,
    shape (1, classes)."""
    if not (cfg.multi_label and cfg.use_weighted_loss):
        return None
    labels = records.read_labels(spec.train.rec)
    positives = labels.sum(axis=0)
    return ((len(labels) - positives) / np.maximum(positives, 1)).reshape(1, -1)


def exported_convention(cfg: TrainConfig) -> InputConvention:
    """Every model this product trains: raw pixels (its graph normalises them), and for this
    product's endpoint the geometry of training-time validation (shorter side, centre crop)."""
    return InputConvention("raw", cfg.image_shape[0], "resize_crop", cfg.effective_resize)


def write_model_metadata(job: Job) -> None:
    """``classes.json`` and ``hyperparameters.json`` beside the model files."""
    model_dir = job.paths.model_dir
    artifacts.atomic_write_json(
        model_dir / artifacts.CLASSES_FILE,
        artifacts.classes_document(job.spec.class_names, job.cfg.multi_label),
    )
    hps = job.cfg.to_hyperparameters()
    hps.update(
        num_classes=str(job.spec.num_classes), num_training_samples=str(job.spec.train.count)
    )
    hps.setdefault("resize", str(job.cfg.effective_resize))
    artifacts.atomic_write_json(model_dir / artifacts.HYPERPARAMETERS_FILE, hps)


def export(job: Job, engine: Engine, epoch_number: int, *, keep_others: bool) -> None:
    """Save the model files for 1-based ``epoch_number`` in the built-in's layout."""
    model_dir = job.paths.model_dir
    params = engine.export(model_dir, epoch_number)
    write_model_metadata(job)
    if not keep_others:
        for old in artifacts.params_epochs(model_dir):
            if old != epoch_number:
                (model_dir / artifacts.params_file(old)).unlink(missing_ok=True)
    logger.info('Saved checkpoint to "%s"', params)


def record_epoch(
    cfg: TrainConfig, state: checkpoint.LoopState, epoch: int, train: dict, val: dict
) -> bool:
    """Log the epoch, update the loop state; returns True when validation improved."""
    for line in epoch_lines(epoch, train, val, cfg.top_k):
        logger.info(line)
    state.history.append(
        {
            "epoch": epoch,
            "learning_rate": learning_rate(cfg, epoch),
            "train_accuracy": train["accuracy"],
            "train_loss": train["loss"],
            "validation_accuracy": val["accuracy"],
            "validation_loss": val["loss"],
            "samples_per_sec": train["samples_per_sec"],
            "time": train["time"],
            **({"train_top_k_accuracy": train["top_k_accuracy"]} if cfg.top_k else {}),
        }
    )
    accuracy = val["accuracy"]
    tolerance = cfg.early_stopping_tolerance
    significant = state.best_accuracy <= 0 or (
        (accuracy - state.best_accuracy) / state.best_accuracy > tolerance
    )
    state.epochs_without_improvement = 0 if significant else state.epochs_without_improvement + 1
    improved = accuracy > state.best_accuracy
    if improved:
        state.best_accuracy, state.best_epoch = accuracy, epoch + 1
    state.epoch = epoch + 1
    return improved


def should_stop_early(cfg: TrainConfig, state: checkpoint.LoopState) -> bool:
    return (
        cfg.early_stopping
        and state.epoch >= cfg.early_stopping_min_epochs
        and state.epochs_without_improvement >= cfg.early_stopping_patience
    )


def _save_epoch_outputs(
    job: Job, engine: Engine, state: checkpoint.LoopState, improved: bool
) -> None:
    cfg = job.cfg
    checkpoint.save(job.topology.checkpoint_dir, state, engine, improved=improved)
    if not job.topology.chief:
        return
    if cfg.checkpoint_frequency is None and improved:
        logger.info("Storing the best model with validation accuracy: %f", state.best_accuracy)
        export(job, engine, state.epoch, keep_others=False)
    elif cfg.checkpoint_frequency and state.epoch % cfg.checkpoint_frequency == 0:
        export(job, engine, state.epoch, keep_others=True)
    reports.write_metrics_csv(job.paths.output_data_dir / reports.METRICS_CSV, state.history)


def run_epochs(job: Job, engine: Engine) -> checkpoint.LoopState:
    """Resume if checkpoints exist, train the remaining epochs, and (on the chief) leave the
    final model and its reports. Returns the loop state."""
    cfg, topology = job.cfg, job.topology
    if cfg.checkpoint_frequency is None:
        logger.info("checkpoint_frequency not set, will store the best model")
    prints = fingerprint(cfg, job.spec, engine.name)
    state = checkpoint.load(topology.checkpoint_dir, prints)
    if state is not None:
        checkpoint.restore(topology.checkpoint_dir, state, engine)
    else:
        state = checkpoint.LoopState(fingerprint=prints)
    engine.start(state.epoch)
    progress = _progress_bar() if interactive() else None
    for epoch in range(state.epoch, cfg.epochs):
        if should_stop_early(cfg, state):
            logger.info("Early stopping: no improvement for %d epochs", cfg.early_stopping_patience)
            break
        engine.set_learning_rate(learning_rate(cfg, epoch))
        bar = progress(job.spec.train.count // topology.num_workers, epoch) if progress else None
        train = engine.train_epoch(epoch, bar)
        if bar is not None:
            bar.close()
        val = engine.evaluate()
        improved = record_epoch(cfg, state, epoch, train, val)
        _save_epoch_outputs(job, engine, state, improved)
    if state.epoch == 0:
        raise ClientError("no epoch was trained")
    if topology.chief:
        finish(job, engine, state)
    return state


def finish(job: Job, engine: Engine, state: checkpoint.LoopState) -> None:
    """Make sure the model dir holds the right model, then write the reports."""
    cfg, model_dir = job.cfg, job.paths.model_dir
    if cfg.checkpoint_frequency is None:
        checkpoint.restore_best(job.topology.checkpoint_dir, engine)
        if state.best_epoch not in artifacts.params_epochs(model_dir):
            export(job, engine, state.best_epoch, keep_others=False)  # resumed on a fresh host
    elif state.epoch not in artifacts.params_epochs(model_dir):
        export(job, engine, state.epoch, keep_others=True)
    out = job.paths.output_data_dir
    result = engine.evaluate()
    reports.write_metrics_csv(out / reports.METRICS_CSV, state.history)
    reports.plot_learning_curves(out / reports.CURVES_PNG, state.history)
    reports.write_validation_reports(
        out, result["outputs"], result["labels"], job.spec.class_names, cfg.multi_label
    )
    report_page.save_validation(out, result["outputs"], result["labels"], job.spec.validation.rec)
    saved = state.best_epoch if cfg.checkpoint_frequency is None else state.epoch
    logger.info(
        "Final model: validation accuracy %f (epoch %d); reports in %s",
        result["accuracy"],
        saved,
        out,
    )
    logger.info(saved_model_line(saved - 1, result["accuracy"]))  # Epoch[N] counts from 0


def _progress_bar():
    from tqdm import tqdm

    def make(total: int, epoch: int):
        return tqdm(total=total, desc=f"epoch {epoch}", unit="img", leave=False)

    return make
