"""The training job from validated hyperparameters to a saved model and its reports."""

from __future__ import annotations

import logging
import os
import sys
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon

from train import (
    artifacts,
    checkpoint,
    devices,
    engine,
    model,
    precision,
    pretrained,
    records,
    reports,
)
from train.config import TrainConfig
from train.data import DataSpec, prepare_data, record_iter, stream_iter
from train.distributed import Cluster, parameter_server
from train.errors import ClientError
from train.formats import model_dir as saved_models
from train.formats import mxnet_checkpoint
from train.formats.metadata import InputConvention
from train.metric_lines import epoch_lines, saved_model_line
from train.paths import Paths

logger = logging.getLogger(__name__)

MODEL_CHANNEL = "model"


@dataclass(frozen=True)
class Run:
    """Everything the epoch loop works with, fixed before the first epoch."""

    paths: Paths
    cfg: TrainConfig
    spec: DataSpec
    ctx: list
    net: gluon.HybridBlock
    trainer: gluon.Trainer
    setup: engine.LossSetup
    pos_weight: mx.nd.NDArray | None
    topology: Topology
    stop: threading.Event
    mixed_precision: bool

    @property
    def is_chief(self) -> bool:
        """Only the first host writes the model and the reports."""
        return self.topology.chief


@dataclass(frozen=True)
class Topology:
    """Where this process sits: one host (``kvstore='device'``) or a ps-lite worker."""

    kvstore: object  # "device" or an mx.kv.KVStore of type dist_sync / dist_async
    checkpoint_dir: Path
    num_workers: int = 1
    rank: int = 0  # ps-lite's worker rank (registration order): picks the data shard
    chief: bool = True  # the first host in resourceconfig.json, which SageMaker's model comes from

    @property
    def update_on_servers(self) -> bool:
        """Multi-host: the optimizer runs on the parameter servers, as in MXNet's own
        distributed training (dist_async requires it; for dist_sync, updating on the workers
        instead trained erratically here). Its state is then not checkpointed."""
        return getattr(self.kvstore, "type", "").startswith("dist")

    @property
    def step_scale(self) -> int:
        """dist_sync sums the gradients of every worker: normalise by the global batch."""
        return self.num_workers if getattr(self.kvstore, "type", "") == "dist_sync" else 1

    def updates_per_epoch(self, samples: int, batch_size: int) -> int:
        """Optimizer updates the servers count per epoch (one per global batch in dist_sync,
        one per worker batch in dist_async)."""
        return -(-samples // (batch_size * self.step_scale))


def interactive() -> bool:
    """Progress bars only for a person at a terminal, never in SageMaker's logs."""
    return sys.stderr.isatty() and "TRAINING_JOB_NAME" not in os.environ


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The built-in's step schedule: multiply by the factor at each listed epoch."""
    steps = sum(1 for step in cfg.lr_scheduler_step if step <= epoch)
    return cfg.learning_rate * cfg.lr_scheduler_factor**steps


def make_optimizer(cfg: TrainConfig) -> mx.optimizer.Optimizer:
    """The optimizer with the built-in's hyperparameter meanings (weight_decay for sgd/nag)."""
    common: dict = {
        "learning_rate": cfg.learning_rate,
        "multi_precision": cfg.precision_dtype == "float16",
    }
    if cfg.optimizer == "sgd":
        return mx.optimizer.SGD(momentum=cfg.momentum, wd=cfg.weight_decay, **common)
    if cfg.optimizer == "nag":
        return mx.optimizer.NAG(momentum=cfg.momentum, wd=cfg.weight_decay, **common)
    if cfg.optimizer == "adam":
        return mx.optimizer.Adam(beta1=cfg.beta_1, beta2=cfg.beta_2, epsilon=cfg.eps, **common)
    return mx.optimizer.RMSProp(gamma1=cfg.gamma, epsilon=cfg.eps, **common)


def schedule_on_servers(
    optimizer: mx.optimizer.Optimizer, cfg: TrainConfig, start_epoch: int, updates_per_epoch: int
) -> None:
    """Multi-host: the optimizer is shipped to the parameter servers at the first step, so the
    learning-rate steps travel with it as a scheduler counted in updates from ``start_epoch``."""
    optimizer.set_learning_rate(learning_rate(cfg, start_epoch))
    steps = [
        (e - start_epoch) * updates_per_epoch for e in cfg.lr_scheduler_step if e > start_epoch
    ]
    if steps:
        optimizer.lr_scheduler = mx.lr_scheduler.MultiFactorScheduler(
            step=steps, factor=cfg.lr_scheduler_factor, base_lr=learning_rate(cfg, start_epoch)
        )


def _seed_model_dir(paths: Paths) -> Path | None:
    """The ``model`` channel for incremental training, extracting a model.tar.gz if needed."""
    channel = paths.channel(MODEL_CHANNEL)
    if not channel.is_dir() or not any(channel.iterdir()):
        return None
    tarballs = sorted(channel.glob("*.tar.gz"))
    if not tarballs:
        return channel
    target = paths.scratch_dir() / "seed-model"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarballs[0]) as tar:
        tar.extractall(target, filter="data")
    return target


def build_network(paths: Paths, cfg: TrainConfig, num_classes: int) -> gluon.HybridBlock:
    """From a seed model (incremental), from a symbolic checkpoint or ImageNet weights in the
    ``pretrained`` channel, or from scratch. Whichever: the network takes raw pixels."""
    seed = _seed_model_dir(paths)
    if seed is not None:
        return saved_models.seed_network(seed, num_classes, cfg.image_shape)
    if cfg.use_pretrained_model:
        found = mxnet_checkpoint.find(paths.channel(pretrained.PRETRAINED_CHANNEL))
        if found is not None:
            return mxnet_checkpoint.from_checkpoint(
                *found, num_classes, cfg.image_shape, cfg.num_layers
            )
        weights = pretrained.locate_weights(
            cfg.num_layers,
            paths.channel(pretrained.PRETRAINED_CHANNEL),
            pretrained.model_zoo_dir(),
            cfg.pretrained_weights,
        )
        return model.from_imagenet(cfg, num_classes, weights.path, weights.variant)
    return model.from_scratch(cfg, num_classes)


def _pos_weight(cfg: TrainConfig, spec: DataSpec) -> mx.nd.NDArray | None:
    """Per-class positive weights (negatives / positives) for the weighted multi-label loss."""
    if not (cfg.multi_label and cfg.use_weighted_loss):
        return None
    labels = records.read_labels(spec.train.rec)
    positives = labels.sum(axis=0)
    weights = (len(labels) - positives) / np.maximum(positives, 1)
    return mx.nd.array(weights.reshape(1, -1))


def _fingerprint(cfg: TrainConfig, spec: DataSpec) -> dict:
    return {
        "num_layers": cfg.num_layers,
        "num_classes": spec.num_classes,
        "image_shape": list(cfg.image_shape),
        "multi_label": cfg.multi_label,
    }


def _setup(paths: Paths, cfg: TrainConfig, topology: Topology, stop: threading.Event) -> Run:
    mx.random.seed(cfg.seed)
    ctx = devices.training_contexts(cfg.precision_dtype)
    workers = cfg.preprocess_threads or os.cpu_count() or 1
    spec = prepare_data(paths, cfg, workers=workers, progress=interactive(), stop=stop)
    logger.info(
        "%d training and %d validation images, %d classes",
        spec.train.count,
        spec.validation.count,
        spec.num_classes,
    )
    mixed = precision.init(cfg.precision_dtype)
    net = build_network(paths, cfg, spec.num_classes)
    if mixed:
        net = precision.convert_loaded_graphs(net, cfg.image_shape)
    net.collect_params().reset_ctx(ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = make_trainer(net, cfg, topology, mixed)
    setup = engine.make_loss(cfg.multi_label, cfg.top_k)
    pos_weight = _pos_weight(cfg, spec)
    return Run(paths, cfg, spec, ctx, net, trainer, setup, pos_weight, topology, stop, mixed)


def make_trainer(
    net: gluon.HybridBlock, cfg: TrainConfig, topology: Topology, mixed: bool
) -> gluon.Trainer:
    """The Trainer over ``net``'s parameters, with AMP's loss scaler when ``mixed``."""
    trainer = gluon.Trainer(
        net.collect_params(),
        make_optimizer(cfg),
        kvstore=topology.kvstore,
        update_on_kvstore=precision.update_on_kvstore(mixed, topology.update_on_servers),
    )
    if mixed:
        precision.init_trainer(trainer)
    return trainer


def _iterators(run: Run):
    threads = run.cfg.preprocess_threads or os.cpu_count() or 1
    make_train_iter = record_iter if run.spec.train_stream is None else stream_iter
    train_iter = make_train_iter(
        run.spec.train,
        run.spec,
        run.cfg,
        training=True,
        batch_size=run.cfg.mini_batch_size,
        threads=threads,
        num_parts=run.topology.num_workers,
        part_index=run.topology.rank,
    )
    val_iter = record_iter(
        run.spec.validation,
        run.spec,
        run.cfg,
        training=False,
        batch_size=run.cfg.mini_batch_size,
        threads=threads,
    )
    return train_iter, val_iter


def _write_model_metadata(run: Run) -> None:
    model_dir = run.paths.model_dir
    artifacts.atomic_write_json(
        model_dir / artifacts.CLASSES_FILE,
        artifacts.classes_document(run.spec.class_names, run.cfg.multi_label),
    )
    hps = run.cfg.to_hyperparameters()
    hps.update(
        num_classes=str(run.spec.num_classes), num_training_samples=str(run.spec.train.count)
    )
    hps.setdefault("resize", str(run.cfg.effective_resize))
    artifacts.atomic_write_json(model_dir / artifacts.HYPERPARAMETERS_FILE, hps)


def exported_convention(cfg: TrainConfig) -> InputConvention:
    """Every model this product trains: raw pixels (its graph normalises them), and for this
    product's endpoint the geometry of training-time validation (shorter side, centre crop)."""
    return InputConvention("raw", cfg.image_shape[0], "resize_crop", cfg.effective_resize)


def _export(run: Run, epoch_number: int, *, keep_others: bool) -> None:
    """Save the model files for 1-based ``epoch_number`` in the built-in's layout."""
    model_dir = run.paths.model_dir
    params = saved_models.export_model(
        run.net,
        model_dir,
        epoch_number,
        multi_label=run.cfg.multi_label,
        image_shape=run.cfg.image_shape,
        batch_size=run.cfg.mini_batch_size,
        input_convention=exported_convention(run.cfg),
    )
    _write_model_metadata(run)
    if not keep_others:
        for old in artifacts.params_epochs(model_dir):
            if old != epoch_number:
                (model_dir / artifacts.params_file(old)).unlink(missing_ok=True)
    logger.info('Saved checkpoint to "%s"', params)


def _record_epoch(
    run: Run, state: checkpoint.LoopState, epoch: int, train: dict, val: dict
) -> bool:
    """Log the epoch, update the loop state; returns True when validation improved."""
    for line in epoch_lines(epoch, train, val, run.cfg.top_k):
        logger.info(line)
    state.history.append(
        {
            "epoch": epoch,
            "learning_rate": learning_rate(run.cfg, epoch),
            "train_accuracy": train["accuracy"],
            "train_loss": train["loss"],
            "validation_accuracy": val["accuracy"],
            "validation_loss": val["loss"],
            "samples_per_sec": train["samples_per_sec"],
            "time": train["time"],
            **({"train_top_k_accuracy": train["top_k_accuracy"]} if run.cfg.top_k else {}),
        }
    )
    accuracy = val["accuracy"]
    tolerance = run.cfg.early_stopping_tolerance
    significant = state.best_accuracy <= 0 or (
        (accuracy - state.best_accuracy) / state.best_accuracy > tolerance
    )
    state.epochs_without_improvement = 0 if significant else state.epochs_without_improvement + 1
    improved = accuracy > state.best_accuracy
    if improved:
        state.best_accuracy, state.best_epoch = accuracy, epoch + 1
    state.epoch = epoch + 1
    return improved


def _should_stop_early(cfg: TrainConfig, state: checkpoint.LoopState) -> bool:
    return (
        cfg.early_stopping
        and state.epoch >= cfg.early_stopping_min_epochs
        and state.epochs_without_improvement >= cfg.early_stopping_patience
    )


def _save_epoch_outputs(run: Run, state: checkpoint.LoopState, improved: bool) -> None:
    cfg = run.cfg
    trainer = None if run.topology.update_on_servers else run.trainer
    checkpoint.save(run.topology.checkpoint_dir, state, run.net, trainer, improved=improved)
    if not run.is_chief:
        return
    if cfg.checkpoint_frequency is None and improved:
        logger.info("Storing the best model with validation accuracy: %f", state.best_accuracy)
        _export(run, state.epoch, keep_others=False)
    elif cfg.checkpoint_frequency and state.epoch % cfg.checkpoint_frequency == 0:
        _export(run, state.epoch, keep_others=True)
    reports.write_metrics_csv(run.paths.output_data_dir / reports.METRICS_CSV, state.history)


def _export_onnx(model_dir: Path) -> None:
    """Write ``model.onnx`` for the final model. The MXNet files are the model: a failure
    here is logged and the job still succeeds (even when ``onnx`` itself cannot be imported,
    hence the import in here)."""
    (model_dir / artifacts.ONNX_FILE).unlink(missing_ok=True)  # never a stale one
    try:
        from train.formats import onnx as onnx_format

        path = onnx_format.write(model_dir)
    except Exception as exc:  # whatever breaks, the MXNet model stays
        logger.warning(
            "Could not write %s (the MXNet model files are complete; convert later with "
            "python -m train.formats.onnx): %s: %s",
            artifacts.ONNX_FILE,
            type(exc).__name__,
            exc,
            exc_info=True,
        )
        return
    logger.info('Saved the final model for ONNX Runtime to "%s"', path)


def _finish(run: Run, state: checkpoint.LoopState, val_iter) -> None:
    """Make sure the model dir holds the right model, then write the reports."""
    cfg, model_dir = run.cfg, run.paths.model_dir
    if cfg.checkpoint_frequency is None:
        checkpoint.restore_best(run.topology.checkpoint_dir, run.net)
        if state.best_epoch not in artifacts.params_epochs(model_dir):
            _export(run, state.best_epoch, keep_others=False)  # resumed on a fresh host
    elif state.epoch not in artifacts.params_epochs(model_dir):
        _export(run, state.epoch, keep_others=True)
    _export_onnx(model_dir)
    out = run.paths.output_data_dir
    result = _evaluate(run, val_iter)
    reports.write_metrics_csv(out / reports.METRICS_CSV, state.history)
    reports.plot_learning_curves(out / reports.CURVES_PNG, state.history)
    reports.write_validation_reports(
        out, result["outputs"], result["labels"], run.spec.class_names, cfg.multi_label
    )
    logger.info(
        "Final model: validation accuracy %f (epoch %d); reports in %s",
        result["accuracy"],
        state.best_epoch if cfg.checkpoint_frequency is None else state.epoch,
        out,
    )
    saved = state.best_epoch if cfg.checkpoint_frequency is None else state.epoch
    logger.info(saved_model_line(saved - 1, result["accuracy"]))  # Epoch[N] counts from 0


def train_job(paths: Paths, cfg: TrainConfig, stop: threading.Event) -> None:
    """Run the job on this host, or as one worker of a multi-host parameter server.

    With several hosts in ``resourceconfig.json`` the first runs the ps-lite scheduler, each
    runs a server, and this process trains as a worker on its shard of every epoch
    (``kv_store``, default dist_sync). Each host keeps its checkpoints in its own sub-folder,
    so hosts sharing one S3 checkpoint location do not overwrite each other.
    """
    cluster = Cluster.from_file(paths.resource_config)
    if not cluster.is_distributed:
        if cfg.kv_store:
            logger.info("kv_store=%s ignored: a single host trains alone", cfg.kv_store)
        _train(paths, cfg, stop, Topology("device", paths.checkpoint_dir))
        return
    precision.check_multi_host(cfg.precision_dtype)
    mode = cfg.kv_store or "dist_sync"
    logger.info(
        "Distributed training on %d hosts (%s), this is %s",
        cluster.num_workers,
        mode,
        cluster.current_host,
    )
    with parameter_server(cluster, cfg.ps_port):
        kv = mx.kv.create(mode)
        topology = Topology(
            kv,
            paths.checkpoint_dir / cluster.current_host,
            kv.num_workers,
            kv.rank,
            cluster.is_chief,
        )
        _train(paths, cfg, stop, topology)
        del topology, kv  # free the KVStore inside the block: ps-lite leaves with a barrier


def _train(paths: Paths, cfg: TrainConfig, stop: threading.Event, topology: Topology) -> None:
    """Prepare data and model, run the epochs (resuming if checkpoints exist), save."""
    if cfg.checkpoint_frequency is None:
        logger.info("checkpoint_frequency not set, will store the best model")
    run = _setup(paths, cfg, topology, stop)
    train_iter, val_iter = _iterators(run)
    fingerprint = _fingerprint(cfg, run.spec)
    state = checkpoint.load(topology.checkpoint_dir, fingerprint)
    if state is not None:
        trainer = None if topology.update_on_servers else run.trainer
        checkpoint.restore(topology.checkpoint_dir, state, run.net, trainer, run.ctx)
    else:
        state = checkpoint.LoopState(fingerprint=fingerprint)
    if topology.update_on_servers:
        per_epoch = topology.updates_per_epoch(run.spec.train.count, cfg.mini_batch_size)
        schedule_on_servers(run.trainer.optimizer, cfg, state.epoch, per_epoch)
    progress = _progress_bar() if interactive() else None
    for epoch in range(state.epoch, cfg.epochs):
        if _should_stop_early(cfg, state):
            logger.info("Early stopping: no improvement for %d epochs", cfg.early_stopping_patience)
            break
        if not topology.update_on_servers:
            run.trainer.set_learning_rate(learning_rate(cfg, epoch))
        bar = progress(run.spec.train.count // topology.num_workers, epoch) if progress else None
        train = engine.train_one_epoch(
            run.net,
            run.trainer,
            train_iter,
            run.ctx,
            run.setup,
            epoch=epoch,
            stop=stop,
            pos_weight=run.pos_weight,
            progress=bar,
            step_scale=topology.step_scale,
            mixed_precision=run.mixed_precision,
        )
        if bar is not None:
            bar.close()
        val = _evaluate(run, val_iter)
        improved = _record_epoch(run, state, epoch, train, val)
        _save_epoch_outputs(run, state, improved)
    if state.epoch == 0:
        raise ClientError("no epoch was trained")
    if run.is_chief:
        _finish(run, state, val_iter)


def _evaluate(run: Run, val_iter) -> dict:
    return engine.evaluate(
        run.net, val_iter, run.ctx, run.setup, run.spec.validation.count, stop=run.stop
    )


def _progress_bar():
    from tqdm import tqdm

    def make(total: int, epoch: int):
        return tqdm(total=total, desc=f"epoch {epoch}", unit="img", leave=False)

    return make
