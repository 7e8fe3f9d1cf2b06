"""The network, optimizer and trainer of the MXNet engine. The network built here is also the
definition the PyTorch engine executes (``train.engines.torch.graph``), exported as symbol JSON."""

from __future__ import annotations

import tarfile
from pathlib import Path

import mxnet as mx
from mxnet import gluon

from train import model, precision, pretrained
from train.config import TrainConfig
from train.driver import learning_rate
from train.formats import model_dir as saved_models
from train.formats import mxnet_checkpoint
from train.paths import Paths

MODEL_CHANNEL = "model"


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


def make_trainer(
    net: gluon.HybridBlock, cfg: TrainConfig, kvstore, update_on_kvstore: bool, mixed: bool
) -> gluon.Trainer:
    """The Trainer over ``net``'s parameters, with AMP's loss scaler when ``mixed``."""
    trainer = gluon.Trainer(
        net.collect_params(),
        make_optimizer(cfg),
        kvstore=kvstore,
        update_on_kvstore=precision.update_on_kvstore(mixed, update_on_kvstore),
    )
    if mixed:
        precision.init_trainer(trainer)
    return trainer


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


def seed_model_dir(paths: Paths) -> Path | None:
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
    seed = seed_model_dir(paths)
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
