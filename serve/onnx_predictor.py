"""The model run by ONNX Runtime: the same interface, preprocessing and micro-batching as
:class:`serve.predictor.MXNetPredictor`.

The model is the directory's ``model.onnx`` when it was made from the newest params file, or
the MXNet files converted at load time (built-in models, models of earlier releases): see
:func:`train.formats.onnx.current_onnx`. On a GPU it runs through ONNX Runtime's CUDA provider
when the installed ONNX Runtime has one, else on the CPU with a warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from serve.health import Progress
from serve.predictor import BatchedPredictor, describe, model_info
from train import artifacts

logger = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def providers_for(gpu: Any, available: list[str]) -> list[Any]:
    """ONNX Runtime's execution providers for ``gpu`` (a ``train.devices.Gpu``, None for the
    CPU): CUDA on that GPU then the CPU, or the CPU alone when this ONNX Runtime has no CUDA
    provider (the CPU image)."""
    if gpu is None:
        return [CPU_PROVIDER]
    if CUDA_PROVIDER not in available:
        logger.warning(
            "%s is visible but this ONNX Runtime has no CUDA provider (providers: %s): serving "
            "on the CPU (onnxruntime-gpu has one).",
            gpu,
            ", ".join(available),
        )
        return [CPU_PROVIDER]
    return [(CUDA_PROVIDER, {"device_id": gpu.index}), CPU_PROVIDER]


def session_options() -> Any:
    """One intra-op thread per ``OMP_NUM_THREADS`` when set (the server sets it per worker,
    the same knob as MXNet's), else ONNX Runtime's default (one per physical core).

    Idle intra-op threads do not spin: they would take the cores from the request threads that
    decode and preprocess (and from other processes). Measured on the shared 2-core machine,
    ResNet-18 at batch 1: 42 ms with spinning, 30 ms without (MXNet: 34 ms).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        options.intra_op_num_threads = int(threads)
    return options


class OnnxRuntimePredictor(BatchedPredictor):
    """A loaded ONNX Runtime session and the batcher that feeds it."""

    def __init__(
        self,
        session: Any,
        info: Any,
        *,
        max_batch: int,
        max_wait_s: float = 0.0,
        timeout: float | None = None,
        progress: Progress | None = None,
    ):
        self._session = session
        self._input = session.get_inputs()[0].name
        super().__init__(
            info, max_batch=max_batch, max_wait_s=max_wait_s, timeout=timeout, progress=progress
        )

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        gpu: Any = None,
        max_batch: int,
        max_wait_s: float = 0.0,
        timeout: float | None = None,
        progress: Progress | None = None,
    ) -> OnnxRuntimePredictor:
        """Load (or convert) the model in ``model_dir`` on ``gpu`` (None: the CPU), and run one
        warm-up forward pass.

        Raises:
            artifacts.MissingModelFiles: naming each missing file.
            train.formats.metadata.BadMetadata: an unusable ``model-metadata.json``.
            train.formats.onnx.ExportError, ValueError, mxnet.base.MXNetError,
            onnxruntime's errors: the files are there but unusable.
        """
        artifacts.locate_model(model_dir)  # before the imports: a missing file fails fast

        import onnxruntime

        from train.formats import model_dir as saved_models
        from train.formats import onnx as onnx_format

        saved = saved_models.open_model(model_dir)
        model = onnx_format.current_onnx(saved)
        providers = providers_for(gpu, onnxruntime.get_available_providers())
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), session_options(), providers=providers
        )
        if providers[0] != CPU_PROVIDER and CUDA_PROVIDER not in session.get_providers():
            logger.warning(
                "ONNX Runtime's CUDA provider did not start on %s (its messages above say why): "
                "serving on the CPU",
                gpu,
            )
        warm_up = session.run(
            None, {onnx_format.INPUT: np.zeros((1, *saved.files.image_shape), np.float32)}
        )
        info = model_info(saved, warm_up[0].shape[-1])
        logger.info(
            "Loaded model %s with ONNX Runtime %s (%s): %s",
            saved.files.params.name,
            onnxruntime.__version__,
            ", ".join(session.get_providers()),
            describe(saved, info),
        )
        return cls(
            session,
            info,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            timeout=timeout,
            progress=progress,
        )

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch.astype(np.float32, copy=False)})[0]
