"""A training job from validated hyperparameters to a saved model: the engine is chosen here.

The MXNet engine trains in this process. The PyTorch engine trains in a process of its own,
from its own environment (:mod:`train.engines.launch`), on data packed and a network defined by
this process. Either way, this process then writes ``model.onnx`` from the saved model files.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from train import artifacts, devices, engines
from train.config import TrainConfig
from train.insight import page as report_page
from train.paths import Paths

logger = logging.getLogger(__name__)


def train_job(paths: Paths, cfg: TrainConfig, stop: threading.Event) -> None:
    """Choose the engine (logged with the reason), train, and add ``model.onnx``."""
    choice = engines.choose(cfg.training_engine, devices.visible_gpus(), cfg.precision_dtype)
    logger.info("Training engine: %s (%s)", choice.engine, choice.reason)
    if choice.engine == engines.MXNET:
        from train.engines.mxnet.job import train_job as train_on_mxnet

        chief = train_on_mxnet(paths, cfg, stop)
    else:
        from train.engines.launch import train_on_pytorch

        chief = train_on_pytorch(paths, cfg, stop)
    if chief:
        export_onnx(paths.model_dir)
        report = report_page.write(paths.output_data_dir, paths.model_dir, engine=choice.engine)
        if report is not None:  # beside the model too: the server's try-it page links it
            artifacts.atomic_write(
                paths.model_dir / artifacts.REPORT_FILE, lambda tmp: shutil.copyfile(report, tmp)
            )


def export_onnx(model_dir: Path) -> None:
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
