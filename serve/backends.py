"""Which engine runs the model (``SERVE_BACKEND``), decided once per worker at load time.

``mxnet`` and ``onnxruntime`` are taken as asked (each on this worker's GPU when it can run
it, else on the CPU). ``auto`` (the default) follows a fixed table of the device, not a
benchmark at start-up, so that every start of the same server on the same hardware serves the
same way (docs/serving.md prints it):

==========================================================  ===============================
device of the worker                                         backend
==========================================================  ===============================
no GPU                                                       MXNet on the CPU
GPU MXNet 1.9.1 runs: compute capability 5.0-8.9             MXNet on the GPU
(Maxwell to Ada: T4, V100, A10G, A100, L4, L40S)
GPU of compute capability 9.0 or newer                       ONNX Runtime on the GPU (CUDA)
(Hopper, Blackwell: H100, H200, B200, RTX 50-series)
GPU older than 5.0 (Kepler: K80)                             MXNet on the CPU
==========================================================  ===============================

On the CPU neither engine was clearly faster (``benchmarks/bench_serve_backends.py``, figures in
docs/serving.md), so ``auto`` keeps MXNet, which needs no conversion at load time.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from serve.health import Progress
from serve.predictor import WORKER_INDEX_ENV, MXNetPredictor, Predictor
from serve.settings import Settings
from train import devices

logger = logging.getLogger(__name__)

MXNET = "mxnet"
ONNXRUNTIME = "onnxruntime"
# ONNX Runtime's CUDA 12 builds start at compute capability 5.0 (CUDA 12's own floor).
ONNXRUNTIME_MIN_CAPABILITY = (5, 0)


@dataclass(frozen=True)
class Choice:
    """The engine and device for one worker, and why."""

    backend: str
    gpu: devices.Gpu | None  # None: the CPU
    reason: str


def choose(setting: str, gpu: devices.Gpu | None) -> Choice:
    """Apply ``SERVE_BACKEND`` (``setting``) to the worker's GPU (None: there is none)."""
    if gpu is None:  # MXNet still uses a GPU the driver could not describe (devices.py)
        backend = MXNET if setting == "auto" else setting
        return Choice(backend, None, "no GPU described by the driver")
    if setting == MXNET or (setting == "auto" and gpu.supported):
        reason = "MXNet 1.9.1 runs it" if gpu.supported else "MXNet 1.9.1 cannot: the CPU serves"
        return Choice(MXNET, gpu if gpu.supported else None, f"{gpu}: {reason}")
    if gpu.capability >= ONNXRUNTIME_MIN_CAPABILITY:
        return Choice(ONNXRUNTIME, gpu, f"{gpu}: ONNX Runtime's CUDA provider")
    backend = MXNET if setting == "auto" else ONNXRUNTIME
    return Choice(backend, None, f"{gpu}: too old for both engines, the CPU serves")


def load_predictor(settings: Settings, progress: Progress | None = None) -> Predictor:
    """The model of ``settings.model_dir`` on the engine and device :func:`choose` picks; its
    forward passes are reported to ``progress`` (``/ping``'s stall check)."""
    gpu = devices.serving_gpu(int(os.environ.get(WORKER_INDEX_ENV, "0")))
    choice = choose(settings.backend, gpu)
    logger.info("SERVE_BACKEND=%s: %s (%s)", settings.backend, choice.backend, choice.reason)
    batching = {
        "max_batch": settings.max_batch_size,
        "max_wait_s": settings.batch_wait_ms / 1000,
        "timeout": settings.timeout,
        "progress": progress,
    }
    if choice.backend == ONNXRUNTIME:
        from serve.onnx_predictor import OnnxRuntimePredictor

        return OnnxRuntimePredictor.load(settings.model_dir, gpu=choice.gpu, **batching)
    return MXNetPredictor.load(settings.model_dir, **batching)
