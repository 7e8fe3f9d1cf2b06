"""The PyTorch engine: the MXNet graph executed by :class:`graph.SymbolNet`, MXNet's optimizer
formulas, the product's record batches, one process per device (``torch.distributed``).

Gradients: each rank back-propagates the *sum* of its samples' losses and the optimizer scales
by ``1 / host batch`` (MXNet's ``Trainer.step(batch_size)``), times the ranks that DDP's
all-reduce averages over, so a step equals the MXNet engine's for the same global batch.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from train import artifacts
from train.driver import Job
from train.engines.bundle import Bundle
from train.engines.torch import augment, losses, optim, precision, tally
from train.engines.torch.data import RecordLoader, shard_opener
from train.engines.torch.gpu import GpuBatches
from train.engines.torch.graph import SymbolNet
from train.errors import ClientError, TrainingInterrupted
from train.formats import params_io
from train.inputs import pipe_mode
from train.inputs.channels import read_channels
from train.inputs.shards import PipeBatches
from train.metric_lines import batch_speed_line
from train.scoring import Scores

logger = logging.getLogger(__name__)

LOG_EVERY_BATCHES = 50
GPU_DECODE_ENV = "OIC_GPU_DECODE"
MODEL_FILES = (artifacts.SYMBOL_FILE, artifacts.SHAPES_FILE, artifacts.METADATA_FILE)


class TorchEngine:
    """One rank of the PyTorch engine (the only one on a single device)."""

    name = "pytorch"

    def __init__(
        self, job: Job, bundle: Bundle, device: torch.device, local_rank: int, local_devices: int
    ):
        cfg = job.cfg
        self.job, self.bundle, self.device = job, bundle, device
        self.multi_label, self.top_k = cfg.multi_label, cfg.top_k
        torch.manual_seed(cfg.seed)
        self.net = SymbolNet.from_files(bundle.symbol, bundle.params).to(device)
        if device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        self.model: torch.nn.Module = self.net
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.world = world
        # Each host's mini_batch_size is split across its devices as MXNet splits it.
        self.rank_batch = losses.device_slices(cfg.mini_batch_size, local_devices)[local_rank]
        scale = losses.rescale_grad(cfg.mini_batch_size, job.topology.step_scale, world)
        self.optimizer = optim.make_optimizer(cfg, self.net.parameters(), rescale_grad=scale)
        self.precision = cfg.precision_dtype
        self.scaler = (
            precision.DynamicLossScaler() if precision.needs_loss_scaling(self.precision) else None
        )
        self.pos_weight = (
            None if bundle.pos_weight is None else torch.as_tensor(bundle.pos_weight).to(device)
        )
        workers = cfg.preprocess_threads or max(1, (os.cpu_count() or 1) // local_devices)
        spec = job.spec
        settings = augment.AugmentSettings.for_training(
            cfg.augmentation_type, cfg.image_shape, spec.iter_resize
        )
        self.train_loader: RecordLoader | None = None
        self.pipe: PipeBatches | None = None
        if bundle.streamed:  # Pipe mode: no packed training set, the FIFOs
            self.pipe = self._pipe(settings, workers, local_devices)
        else:
            self.train_loader = RecordLoader(
                spec.train.rec,
                spec.train.idx if spec.train.idx.is_file() else None,
                settings,
                batch_size=self.rank_batch,
                label_width=spec.label_width,
                training=True,
                seed=cfg.seed,
                num_parts=job.topology.num_workers,
                part_index=job.topology.rank,
                workers=workers,
            )
        # OIC_GPU_DECODE=1: training JPEGs decoded (nvJPEG) and augmented on the GPU. Off by
        # default: nvJPEG's chroma upsampling differs from libjpeg's (on an H200, 75% of
        # values off by more than one level on colour JPEGs), so the network would train on
        # other pixels than validation and the endpoint see; the CPU path is MXNet's, exactly.
        self.gpu_batches = (
            GpuBatches(self.train_loader, device)
            if self.train_loader is not None
            and device.type == "cuda"
            and os.environ.get(GPU_DECODE_ENV) == "1"
            else None
        )
        self.val_loader = RecordLoader(
            spec.validation.rec,
            spec.validation.idx if spec.validation.idx.is_file() else None,
            augment.AugmentSettings.for_evaluation(cfg.image_shape, spec.iter_resize),
            batch_size=cfg.mini_batch_size,
            label_width=spec.label_width,
            training=False,
            workers=workers,
        )
        self._epoch = 0

    def _pipe(
        self, settings: augment.AugmentSettings, workers: int, local_devices: int
    ) -> PipeBatches:
        """Pipe mode: this process reads one FIFO per epoch in shards, as the MXNet engine."""
        job, cfg = self.job, self.job.cfg
        if local_devices > 1:
            raise ClientError(
                "a Pipe-mode train channel feeds one process per host, and the PyTorch engine "
                f"trains with one process per GPU ({local_devices} here): use File or FastFile "
                "mode for the train channel, or training_engine=mxnet"
            )
        channel = read_channels(job.paths.input_data_config)["train"]
        source = pipe_mode.source(job.paths, cfg, channel, lossless=False, stop=job.stop)
        open_shard = shard_opener(
            settings, batch_size=self.rank_batch, label_width=job.spec.label_width, workers=workers
        )
        return PipeBatches(
            source,
            open_shard,
            batch_size=self.rank_batch,
            shuffle_buffer=cfg.pipe_shuffle_buffer,
            expected=job.spec.train.count,
            seed=cfg.seed,
            workers=workers,
            part=(job.topology.rank, job.topology.num_workers),
        )

    def _train_batches(self, epoch: int):
        if self.train_loader is not None:
            return (self.gpu_batches or self.train_loader).epoch(epoch)
        self.pipe.reset()
        return iter(self.pipe)

    # -- the driver's interface ------------------------------------------------------------
    def start(self, first_epoch: int) -> None:
        self._epoch = first_epoch

    def set_learning_rate(self, lr: float) -> None:
        self.optimizer.set_learning_rate(lr)

    def _inputs(self, data: torch.Tensor) -> torch.Tensor:
        x = data.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x.float()

    def train_epoch(self, epoch: int, progress: Any) -> dict[str, float]:
        self._epoch = epoch
        self.model.train()
        scores = Scores(self)
        # The batch results stay on the device until a log line needs them: copying them to
        # the host after every step would make the CPU wait for each step to finish.
        pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        flush_every = 1 if progress is not None else LOG_EVERY_BATCHES
        start = tick = time.time()
        stop = self.job.stop
        for i, batch in enumerate(self._train_batches(epoch)):
            if self._stopping(stop):
                raise TrainingInterrupted(f"stop requested during epoch {epoch}")
            x = self._inputs(batch.data)
            y = batch.label.to(self.device, non_blocking=True)
            with precision.autocast(self.precision, self.device.type):
                out = self.model(x)
            per_sample = losses.per_sample_losses(out, y, self.multi_label, self.pos_weight)
            loss = per_sample.sum()
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                (loss * self.scaler.scale).backward()
                self.scaler.step(self.optimizer)
            else:
                loss.backward()
                self.optimizer.step()
            pending.append((y.detach(), out.detach().float(), per_sample.detach()))
            if len(pending) >= flush_every:
                tally.flush(scores, pending)
            if progress is not None:
                progress.update(x.shape[0])
                progress.set_postfix(loss=f"{scores.loss:.3f}", acc=f"{scores.accuracy:.3f}")
            if (i + 1) % LOG_EVERY_BATCHES == 0:
                tally.flush(scores, pending)
                speed = LOG_EVERY_BATCHES * self.job.cfg.mini_batch_size / (time.time() - tick)
                logger.info(batch_speed_line(epoch, i + 1, speed, scores.accuracy))
                tick = time.time()
        tally.flush(scores, pending)
        elapsed = time.time() - start
        tally.sum_over_ranks(scores, self.device)
        result = scores.epoch_result(elapsed)
        result["samples_per_sec"] /= self.job.topology.step_scale  # one host's, as MXNet's
        return result

    def _stopping(self, stop) -> bool:
        """SIGTERM on any rank stops every rank at the same batch."""
        flag = stop.is_set()
        if self.world == 1:
            return flag
        signal = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(signal)
        return bool(signal.item() > 0)

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Every validation image once, on every rank (as every MXNet worker does)."""
        self.net.eval()
        scores = Scores(self)
        outputs, labels = [], []
        remaining = self.job.spec.validation.count
        for batch in self.val_loader.epoch(0):
            if self.job.stop.is_set():
                raise TrainingInterrupted("stop requested during validation")
            keep = min(batch.data.shape[0] - batch.pad, remaining)
            if keep <= 0:
                break
            x = self._inputs(batch.data[:keep])
            with precision.autocast(self.precision, self.device.type):
                out = self.net(x).float()
            y = batch.label[:keep].to(self.device)
            per_sample = losses.per_sample_losses(out, y, self.multi_label)
            out_np, y_np = out.cpu().numpy(), y.cpu().numpy()
            scores.update(y_np, out_np, per_sample.cpu().numpy())
            outputs.append(out_np)
            labels.append(y_np)
            remaining -= keep
        return {
            "accuracy": scores.accuracy,
            "loss": scores.loss,
            "outputs": np.concatenate(outputs),
            "labels": np.concatenate(labels),
        }

    def save_weights(self, path: Path) -> None:
        params_io.save(path, self.net.mxnet_params())

    def save_optimizer(self, path: Path) -> bool:
        state = {"optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            state["loss_scaler"] = vars(self.scaler)
        torch.save(state, path)
        return True

    def load_weights(self, path: Path) -> None:
        self.net.load_mxnet_params(params_io.load(path))

    def load_optimizer(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "loss_scaler" in state:
            vars(self.scaler).update(state["loss_scaler"])

    def load_best(self, path: Path) -> None:
        self.load_weights(path)

    def export(self, model_dir: Path, epoch_number: int) -> Path:
        """The bundle's graph, shapes and metadata (the MXNet side wrote them) and this
        engine's parameters as float32, under the names MXNet gave them."""
        model_dir.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            source = self.bundle.directory / name
            artifacts.atomic_write(model_dir / name, lambda tmp, s=source: shutil.copyfile(s, tmp))
        params = {k: v.astype(np.float32) for k, v in self.net.mxnet_params().items()}
        path = model_dir / artifacts.params_file(epoch_number)
        artifacts.atomic_write(path, lambda tmp: params_io.save(tmp, params))
        return path
