"""A training job on the MXNet engine, in this process: one host, or a ps-lite worker."""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mxnet as mx

from train import devices, precision
from train.config import TrainConfig
from train.data import DataSpec, prepare_data, record_iter, stream_iter
from train.distributed import Cluster, parameter_server
from train.driver import (
    Job,
    Topology,
    class_weights,
    exported_convention,
    interactive,
    run_epochs,
)
from train.engines.mxnet import network, steps
from train.formats import model_dir as saved_models
from train.insight import audit as data_audit
from train.paths import Paths

logger = logging.getLogger(__name__)


class MXNetEngine:
    """Gluon on every visible GPU or the CPU, fed by MXNet's C++ ``ImageRecordIter``."""

    name = "mxnet"

    def __init__(self, job: Job, kvstore: Any = "device"):
        cfg, spec = job.cfg, job.spec
        self.job = job
        self.kvstore = kvstore
        # The optimizer runs on the parameter servers with several hosts, as in MXNet's own
        # distributed training (dist_async requires it; for dist_sync, updating on the workers
        # instead trained erratically here). Its state is then not checkpointed.
        self.on_servers = getattr(kvstore, "type", "").startswith("dist")
        self.ctx = devices.training_contexts(cfg.precision_dtype)
        self.mixed = precision.init(cfg.precision_dtype)
        net = network.build_network(job.paths, cfg, spec.num_classes)
        if self.mixed:
            net = precision.convert_loaded_graphs(net, cfg.image_shape)
        net.collect_params().reset_ctx(self.ctx)
        net.hybridize(static_alloc=True, static_shape=True)
        self.net = net
        self.trainer = network.make_trainer(net, cfg, kvstore, self.on_servers, self.mixed)
        self.setup = steps.make_loss(cfg.multi_label, cfg.top_k)
        weights = class_weights(cfg, spec)
        self.pos_weight = None if weights is None else mx.nd.array(weights)
        self.train_iter, self.val_iter = self._iterators()

    def _iterators(self):
        job, cfg = self.job, self.job.cfg
        threads = cfg.preprocess_threads or os.cpu_count() or 1
        make_train_iter = record_iter if job.spec.train_stream is None else stream_iter
        train_iter = make_train_iter(
            job.spec.train,
            job.spec,
            cfg,
            training=True,
            batch_size=cfg.mini_batch_size,
            threads=threads,
            num_parts=job.topology.num_workers,
            part_index=job.topology.rank,
        )
        val_iter = record_iter(
            job.spec.validation,
            job.spec,
            cfg,
            training=False,
            batch_size=cfg.mini_batch_size,
            threads=threads,
        )
        return train_iter, val_iter

    def start(self, first_epoch: int) -> None:
        if self.on_servers:
            topology = self.job.topology
            per_epoch = -(
                -self.job.spec.train.count // (self.job.cfg.mini_batch_size * topology.step_scale)
            )
            network.schedule_on_servers(
                self.trainer.optimizer, self.job.cfg, first_epoch, per_epoch
            )

    def set_learning_rate(self, lr: float) -> None:
        if not self.on_servers:  # there, the schedule travels with the optimizer (start)
            self.trainer.set_learning_rate(lr)

    def train_epoch(self, epoch: int, progress: Any) -> dict[str, float]:
        return steps.train_one_epoch(
            self.net,
            self.trainer,
            self.train_iter,
            self.ctx,
            self.setup,
            epoch=epoch,
            stop=self.job.stop,
            pos_weight=self.pos_weight,
            progress=progress,
            step_scale=self.job.topology.step_scale,
            mixed_precision=self.mixed,
        )

    def evaluate(self) -> dict[str, Any]:
        return steps.evaluate(
            self.net,
            self.val_iter,
            self.ctx,
            self.setup,
            self.job.spec.validation.count,
            stop=self.job.stop,
        )

    def save_weights(self, path: Path) -> None:
        self.net.save_parameters(str(path))

    def save_optimizer(self, path: Path) -> bool:
        if self.on_servers:
            return False
        self.trainer.save_states(str(path))
        return True

    def load_weights(self, path: Path) -> None:
        self.net.load_parameters(str(path), ctx=self.ctx)

    def load_optimizer(self, path: Path) -> None:
        if not self.on_servers:
            self.trainer.load_states(str(path))

    def load_best(self, path: Path) -> None:
        """Copy the saved values into the existing arrays: ``load_parameters`` would ask a
        multi-host trainer to reset its distributed KVStore, which MXNet refuses."""
        saved = mx.nd.load(str(path))
        params = self.net._collect_params_with_prefix()  # the names save_parameters wrote
        missing = sorted(set(params) - set(saved))
        if missing:
            raise RuntimeError(f"{path} lacks {', '.join(missing[:5])}")
        for name, param in params.items():
            for array in param.list_data():
                saved[name].copyto(array)

    def export(self, model_dir: Path, epoch_number: int) -> Path:
        cfg = self.job.cfg
        return saved_models.export_model(
            self.net,
            model_dir,
            epoch_number,
            multi_label=cfg.multi_label,
            image_shape=cfg.image_shape,
            batch_size=cfg.mini_batch_size,
            input_convention=exported_convention(cfg),
        )


def prepare(
    paths: Paths, cfg: TrainConfig, stop: threading.Event, *, chief: bool = True
) -> DataSpec:
    """Pack (or locate) the data, say how much there is, and (on the chief) audit it."""
    mx.random.seed(cfg.seed)
    workers = cfg.preprocess_threads or os.cpu_count() or 1
    spec = prepare_data(paths, cfg, workers=workers, progress=interactive(), stop=stop)
    logger.info(
        "%d training and %d validation images, %d classes",
        spec.train.count,
        spec.validation.count,
        spec.num_classes,
    )
    if chief:
        data_audit.run(spec, cfg, paths.output_data_dir)  # advice only: never raises
    return spec


@contextmanager
def _workers(paths: Paths, cfg: TrainConfig):
    """This host's place in the job: alone, or a ps-lite worker beside a scheduler/servers.

    With several hosts in ``resourceconfig.json`` the first runs the ps-lite scheduler, each
    runs a server, and this process trains as a worker on its shard of every epoch
    (``kv_store``, default dist_sync). Each host keeps its checkpoints in its own sub-folder,
    so hosts sharing one S3 checkpoint location do not overwrite each other.
    """
    cluster = Cluster.from_file(paths.resource_config)
    if not cluster.is_distributed:
        if cfg.kv_store:
            logger.info("kv_store=%s ignored: a single host trains alone", cfg.kv_store)
        yield Topology(paths.checkpoint_dir), "device"
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
            paths.checkpoint_dir / cluster.current_host,
            kv.num_workers,
            kv.rank,  # ps-lite's worker rank (registration order): picks the data shard
            cluster.is_chief,  # the first host in resourceconfig.json
            kv.num_workers if mode == "dist_sync" else 1,  # dist_sync sums every worker's grads
        )
        yield topology, kv
        del kv  # free the KVStore inside the block: ps-lite leaves with a barrier


def train_job(paths: Paths, cfg: TrainConfig, stop: threading.Event) -> bool:
    """Prepare data and model, run the epochs (resuming if checkpoints exist), save. Returns
    whether this host is the chief, which keeps the model."""
    with _workers(paths, cfg) as place:
        topology, kvstore = place
        spec = prepare(paths, cfg, stop, chief=topology.chief)
        engine = MXNetEngine(Job(paths, cfg, spec, topology, stop), kvstore)
        run_epochs(engine.job, engine)
        del engine, kvstore, place  # the KVStore must go before ps-lite's exit barrier
    return topology.chief
