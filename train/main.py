"""Entry point of a training job: ``python -m train`` (and the container's ``train``).

Reads the SageMaker contract (``$SAGEMAKER_BASE_DIR``, default ``/opt/ml``), trains, and exits
0 on success. On failure it writes a short reason then the traceback to ``output/failure``
(SageMaker shows its first 1,024 characters) and exits non-zero: 1 for the user's mistakes,
2 for internal errors, 143 when stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback

from train import artifacts, devices, images
from train.config import SPECS, load_hyperparameters, log_config
from train.errors import ClientError, TrainingInterrupted
from train.paths import Paths

logger = logging.getLogger("train")

LOG_FORMAT = "[%(asctime)s %(levelname)s %(thread)d] %(message)s"
DATE_FORMAT = "%m/%d/%Y %H:%M:%S"
EXIT_CLIENT_ERROR, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED = 1, 2, 143


def build_parser() -> argparse.ArgumentParser:
    """``--help`` that explains the contract; the job itself takes no arguments."""
    table = "\n".join(f"  {name:28s} {spec.help} ({spec.allowed})" for name, spec in SPECS.items())
    return argparse.ArgumentParser(
        prog="python -m train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune a ResNet the way SageMaker's built-in image-classification "
        "algorithm does. Inputs, hyperparameters and outputs follow the SageMaker layout under "
        "$SAGEMAKER_BASE_DIR (default /opt/ml): input/config/hyperparameters.json, "
        "input/data/<channel>/, model/, output/data/, checkpoints/.",
        epilog="hyperparameters (all values are strings in hyperparameters.json):\n" + table,
    )


def configure_logging() -> None:
    """The built-in's log format, so existing log parsers and metric regexes keep working."""
    logging.basicConfig(
        level=logging.INFO, format=LOG_FORMAT, datefmt=DATE_FORMAT, stream=sys.stdout, force=True
    )


def write_failure(paths: Paths, reason: str, exc: BaseException) -> None:
    """Short reason first, then the traceback, as SageMaker's FailureReason shows 1,024 chars."""
    text = reason + "\n\n" + "".join(traceback.format_exception(exc))
    try:
        artifacts.atomic_write_bytes(paths.failure_file, text.encode())
    except OSError:
        logger.exception("could not write %s", paths.failure_file)


def write_partial_report(paths: Paths) -> None:
    """A failed job still leaves the report page of what it had (audit, epochs so far)."""
    try:
        from train.insight import page

        page.write(paths.output_data_dir, paths.model_dir)
    except Exception:  # noqa: BLE001 - the failure file matters more than the page
        logger.warning("could not write the report page", exc_info=True)


def install_stop_handler(stop: threading.Event) -> None:
    """SIGTERM (StopTrainingJob, spot interruption, docker stop) ends the job within seconds:
    between batches of training and validation, or between images while packing. The last
    completed epoch's checkpoint is on disk; a half-packed record file is discarded."""

    def handler(signum, _frame):
        logger.warning("Received signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)


def run(argv: list[str] | None = None) -> int:
    """Run one training job; returns the process exit code."""
    build_parser().parse_args(argv)
    configure_logging()
    paths = Paths.from_env()
    for stale in (paths.failure_file, paths.success_file):  # a local re-run reuses the folder
        stale.unlink(missing_ok=True)
    for folder in (paths.model_dir, paths.checkpoint_dir):
        for stale in artifacts.remove_stale_temporaries(folder):
            logger.info("Removed %s, a temporary file left by an interrupted run", stale)
    stop = threading.Event()
    install_stop_handler(stop)
    devices.configure_cpu_threads()  # before MXNet is imported
    try:
        from train.job import train_job

        cfg = _read_config(paths)
        images.lift_pillow_limit()  # max_image_pixels alone decides
        train_job(paths, cfg, stop)
    except ClientError as exc:
        logger.error("Customer Error: %s", exc)
        write_failure(paths, f"Customer Error: {exc}", exc)
        write_partial_report(paths)
        return EXIT_CLIENT_ERROR
    except TrainingInterrupted as exc:
        logger.warning(
            "Training stopped (%s); a restarted job resumes from %s", exc, paths.checkpoint_dir
        )
        write_failure(paths, f"Training stopped by SIGTERM: {exc}", exc)
        write_partial_report(paths)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every other failure is ours: record and exit
        logger.exception("Internal error")
        write_failure(paths, f"Internal Error: {type(exc).__name__}: {exc}", exc)
        write_partial_report(paths)
        return EXIT_INTERNAL_ERROR
    artifacts.atomic_write_bytes(paths.success_file, b"")
    return 0


def _read_config(paths: Paths):
    if not paths.hyperparameters.is_file():
        raise ClientError(
            f"{paths.hyperparameters} is missing: SageMaker writes it from the job's "
            f"HyperParameters; locally, create it (a JSON object of strings, e.g. "
            f'{{"num_classes": "3", "epochs": "10"}})'
        )
    cfg = load_hyperparameters(paths.hyperparameters.read_text(), str(paths.hyperparameters))
    logger.info(
        "Hyperparameters from %s (%s)",
        paths.hyperparameters,
        os.environ.get("TRAINING_JOB_NAME", "local run"),
    )
    log_config(cfg)
    return cfg
