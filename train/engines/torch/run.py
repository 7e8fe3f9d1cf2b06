"""The PyTorch engine's process: ranks, devices, signals, outcome (see ``__main__``)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

from train import artifacts, devices
from train.distributed import Cluster
from train.driver import Job, Topology, run_epochs
from train.engines import bundle as bundles
from train.errors import ClientError, TrainingInterrupted
from train.paths import Paths

logger = logging.getLogger("train")

RANK_ENV = "OIC_TORCH_RANK"  # set on the rank processes this process starts
OUTCOME_FILE = "outcome.json"
LOG_FORMAT = "[%(asctime)s %(levelname)s %(thread)d] %(message)s"
DATE_FORMAT = "%m/%d/%Y %H:%M:%S"


@dataclass(frozen=True)
class Place:
    """Where one rank runs in the job."""

    rank: int
    world: int
    local_rank: int
    local_devices: int
    hosts: int
    host_index: int
    master: str
    port: int
    gpu: bool
    host: str  # this host's name in resourceconfig.json


def _check_driver(torch) -> None:
    """A GPU the driver shows but torch cannot use is almost always a driver too old for the
    CUDA version torch was built with: say so, rather than train on the CPU unnoticed."""
    visible = devices.visible_gpus()
    if not visible or torch.cuda.is_available():
        return
    supported = devices.driver_cuda_version()
    raise ClientError(
        f"the PyTorch engine cannot use {visible[0]}: its torch {torch.__version__} is built "
        f"for CUDA {torch.version.cuda} and needs an NVIDIA driver of release 525 or newer "
        f"(CUDA 12.x minor-version compatibility); this driver supports CUDA "
        f"{supported or 'unknown'}. Update the driver, or use training_engine=mxnet"
    )


def _place(paths: Paths, port: int, local_rank: int) -> Place:
    import torch

    _check_driver(torch)
    cluster = Cluster.from_file(paths.resource_config)
    gpus = torch.cuda.device_count()
    local = gpus or devices.cpu_context_count(os.environ)
    hosts = cluster.num_workers if cluster.is_distributed else 1
    index = cluster.hosts.index(cluster.current_host) if cluster.is_distributed else 0
    master = cluster.hosts[0] if cluster.is_distributed else "127.0.0.1"
    return Place(
        index * local + local_rank,
        hosts * local,
        local_rank,
        local,
        hosts,
        index,
        master,
        port,
        gpus > 0,
        cluster.current_host,
    )


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format=LOG_FORMAT, datefmt=DATE_FORMAT, stream=sys.stdout, force=True
    )


def _write_outcome(directory: Path, kind: str, message: str = "", **extra) -> None:
    artifacts.atomic_write_json(
        directory / OUTCOME_FILE, {"kind": kind, "message": message, **extra}
    )


def main(argv: list[str]) -> int:
    """Run the engine on the bundle folder ``argv[0]``; returns the exit code."""
    _configure_logging()
    directory = Path(argv[0])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rank_env = os.environ.get(RANK_ENV)
    try:
        bundle = bundles.read(directory)
        paths = Paths.from_env()
        place = _place(paths, bundle.cfg.ps_port, int(rank_env or 0))
        if place.local_rank > 0:  # a host logs once, as MXNet's one process per host does
            logging.getLogger().setLevel(logging.WARNING)
        if rank_env is None and place.local_devices > 1:
            return _run_ranks(directory, place, stop)
        chief = _train_rank(paths, bundle, place, stop)
    except ClientError as exc:
        _write_outcome(directory, "client", str(exc))
        return 1
    except TrainingInterrupted as exc:
        _write_outcome(directory, "interrupted", str(exc))
        return 143
    except Exception as exc:  # noqa: BLE001 - the parent reports it as an internal error
        logger.exception("PyTorch engine failed")
        text = f"{type(exc).__name__}: {exc}\n\n" + "".join(traceback.format_exception(exc))
        _write_outcome(directory, "internal", text)
        return 2
    if rank_env is None or int(rank_env) == 0:
        _write_outcome(directory, "success", chief=chief)
    return 0


def _run_ranks(directory: Path, place: Place, stop: threading.Event) -> int:
    """One process per local device; the first failure ends the others."""
    import time

    children = []
    for local_rank in range(place.local_devices):
        env = {**os.environ, RANK_ENV: str(local_rank)}
        children.append(
            subprocess.Popen([sys.executable, "-m", "train.engines.torch", str(directory)], env=env)
        )
    while True:
        codes = [c.poll() for c in children]
        if stop.is_set():
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
        if all(code is not None for code in codes):
            break
        failed = [code for code in codes if code not in (None, 0)]
        if failed:
            time.sleep(5)  # the others may finish on their own (all-reduce errors)
            for child in children:
                if child.poll() is None:
                    child.kill()
        time.sleep(0.2)
    codes = [c.wait() for c in children]
    return next((code for code in codes if code), 0)


def _train_rank(paths: Paths, bundle: bundles.Bundle, place: Place, stop: threading.Event) -> bool:
    """Train as one rank; returns whether this rank kept the model (the chief)."""
    import torch

    from train.engines.torch.engine import TorchEngine

    if place.gpu:
        torch.cuda.set_device(place.local_rank)
        device = torch.device("cuda", place.local_rank)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # MXNet computes float32 in float32
        torch.backends.cudnn.allow_tf32 = False
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, devices.physical_cores() // place.local_devices))
    if place.world > 1:
        torch.distributed.init_process_group(
            "nccl" if place.gpu else "gloo",
            init_method=f"tcp://{place.master}:{place.port}",
            rank=place.rank,
            world_size=place.world,
        )
    if place.local_rank == 0:  # every host says where it trains, as MXNet's workers do
        _log_devices(place, device)
    checkpoints = paths.checkpoint_dir
    if place.hosts > 1:
        checkpoints = checkpoints / place.host
    topology = Topology(
        checkpoints,
        num_workers=place.world,
        rank=place.rank,
        chief=place.rank == 0,
        step_scale=place.hosts,
    )
    job = Job(paths, bundle.cfg, bundle.spec, topology, stop)
    try:
        run_epochs(job, TorchEngine(job, bundle, device, place.local_rank, place.local_devices))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return topology.chief


def _log_devices(place: Place, device) -> None:
    import torch

    if place.hosts > 1:
        logger.info(
            "Distributed training on %d hosts (dist_sync), this is %s",
            place.hosts,
            place.host,
        )
    if place.gpu:
        name = torch.cuda.get_device_name(device)
        logger.info(
            "Training on %d GPU(s) (%s, PyTorch %s)", place.local_devices, name, torch.__version__
        )
    elif place.local_devices > 1:
        logger.info(
            "No GPU visible: training on %d CPU contexts (%s)",
            place.local_devices,
            devices.CPU_CONTEXTS_ENV,
        )
    else:
        logger.info("No GPU visible: training on the CPU (PyTorch %s)", torch.__version__)
