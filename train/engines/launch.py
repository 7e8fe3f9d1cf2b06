"""The MXNet side of a PyTorch-engine job: prepare, define the network, start the engine.

This process (the image's ``/opt/venv``) packs the data and builds the network exactly as an
MXNet job does, exports it into a bundle (:mod:`train.engines.bundle`), then runs
``python -m train.engines.torch BUNDLE`` from the PyTorch environment, which cannot hold MXNet
or GluonCV. SIGTERM is passed on; the engine's outcome comes back as this job's outcome, so
``output/failure`` and the exit code are written once, here, by :mod:`train.main`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path

import mxnet as mx

from train.config import TrainConfig
from train.distributed import Cluster
from train.driver import class_weights, exported_convention
from train.engines import bundle
from train.engines.mxnet import network
from train.engines.mxnet.job import prepare
from train.errors import ClientError, TrainingInterrupted
from train.formats import model_dir as saved_models
from train.paths import Paths

logger = logging.getLogger(__name__)

TORCH_PYTHON_ENV = "OIC_TORCH_PYTHON"
IMAGE_TORCH_PYTHON = Path("/opt/venv-torch/bin/python")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
OUTCOME_FILE = "outcome.json"  # written by the engine process: how it ended
OMP_WAIT_POLICY = "OMP_WAIT_POLICY"


def torch_python() -> Path:
    """The PyTorch environment's interpreter: ``$OIC_TORCH_PYTHON``, the image's, or the
    checkout's ``.venv-torch`` (``make venv``)."""
    candidates = [os.environ.get(TORCH_PYTHON_ENV, ""), IMAGE_TORCH_PYTHON]
    candidates.append(PROJECT_ROOT / ".venv-torch" / "bin" / "python")
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise ClientError(
        "the PyTorch engine's environment is missing: no /opt/venv-torch (the GPU image has it) "
        "nor .venv-torch (make venv builds it); set OIC_TORCH_PYTHON to its python, or "
        "training_engine=mxnet"
    )


def write_bundle(paths: Paths, cfg: TrainConfig, stop: threading.Event, chief: bool) -> Path:
    """Pack the data and export the initial network: what the engine process trains from."""
    spec = prepare(paths, cfg, stop, chief=chief)
    mx.random.seed(cfg.seed)
    net = network.build_network(paths, cfg, spec.num_classes)
    with warnings.catch_warnings():  # "already initialized" for every loaded parameter
        warnings.simplefilter("ignore", UserWarning)
        net.initialize(mx.init.Xavier(), ctx=mx.cpu())  # only what is still uninitialised
    net(mx.nd.zeros((1, *cfg.image_shape)))  # settles deferred shapes (a new head)
    directory = paths.scratch_dir() / "pytorch-engine"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / OUTCOME_FILE).unlink(missing_ok=True)
    saved_models.export_model(
        net,
        directory,
        bundle.INITIAL_EPOCH,
        multi_label=cfg.multi_label,
        image_shape=cfg.image_shape,
        batch_size=cfg.mini_batch_size,
        input_convention=exported_convention(cfg),
    )
    bundle.write_job(directory, cfg, spec, class_weights(cfg, spec))
    return directory


def run_engine(directory: Path, stop: threading.Event, python: Path) -> bool:
    """Run the engine process on a bundle with ``python`` (:func:`torch_python`); returns
    whether this host kept the model.

    Raises:
        ClientError, TrainingInterrupted, RuntimeError: as the engine process ended.
    """
    command = [str(python), "-m", "train.engines.torch", str(directory)]
    env = {**engine_environment(os.environ), "PYTHONPATH": os.pathsep.join(_pythonpath())}
    child = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT)

    def forward_stop() -> None:
        stop.wait()
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    threading.Thread(target=forward_stop, daemon=True, name="forward-sigterm").start()
    try:
        code = child.wait()
    except BaseException:
        child.kill()
        raise
    return _outcome(directory, code)


def engine_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The engine process's environment: the caller's, with OpenMP threads that sleep when idle.

    PyTorch's OpenMP threads spin between parallel regions by default. Beside the loader's
    decoding threads on a busy machine (2 cores here) they spun against them: a TINY epoch took
    7-23 s instead of 0.6-0.9 s (MXNet's: 0.6-1.3 s). A value the user set is kept.
    """
    return {OMP_WAIT_POLICY: "PASSIVE", **environ}


def _pythonpath() -> list[str]:
    """This checkout first, then whatever the caller had."""
    extra = os.environ.get("PYTHONPATH", "")
    return [str(PROJECT_ROOT), *[p for p in extra.split(os.pathsep) if p]]


def _outcome(directory: Path, code: int) -> bool:
    path = directory / OUTCOME_FILE
    try:
        outcome = json.loads(path.read_text())
    except (OSError, ValueError):
        outcome = {"kind": "internal", "message": f"the PyTorch engine exited with code {code}"}
    kind, message = outcome.get("kind"), outcome.get("message", "")
    if kind == "success" and code == 0:
        return bool(outcome.get("chief", True))
    if kind == "client":
        raise ClientError(message)
    if kind == "interrupted":
        raise TrainingInterrupted(message)
    raise RuntimeError(f"PyTorch engine: {message} (exit code {code})")


def train_on_pytorch(paths: Paths, cfg: TrainConfig, stop: threading.Event) -> bool:
    """A job on the PyTorch engine; returns whether this host kept the model."""
    cluster = Cluster.from_file(paths.resource_config)
    if cluster.is_distributed and (cfg.kv_store or "dist_sync") == "dist_async":
        raise ClientError(
            "kv_store=dist_async is MXNet's parameter server, which the PyTorch engine does not "
            "have: use dist_sync (all-reduce between hosts) or training_engine=mxnet"
        )
    if not cluster.is_distributed and cfg.kv_store:  # as the MXNet engine says it
        logger.info("kv_store=%s ignored: a single host trains alone", cfg.kv_store)
    python = torch_python()  # before packing: a missing environment fails in a second
    directory = write_bundle(paths, cfg, stop, cluster.is_chief)
    logger.info("Starting the PyTorch engine (%s)", python)
    return run_engine(directory, stop, python)
