"""Resumable training state in ``checkpoints/`` (synced to S3 by SageMaker).

After every completed epoch the network, the optimizer state and the loop state (epoch, best
accuracy, history, early-stopping counter) are written; ``state.json`` is renamed into place
last, so it only ever points at complete files. A restarted job resumes from it with the same
optimizer state and learning-rate schedule and redoes at most the interrupted epoch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from train import artifacts
from train.errors import ClientError

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"


@dataclass
class LoopState:
    """What the training loop needs to continue where it stopped."""

    epoch: int = 0  # completed epochs
    best_accuracy: float = -1.0
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)


def _net_file(epoch: int) -> str:
    return f"net-{epoch:04d}.params"


def _trainer_file(epoch: int) -> str:
    return f"trainer-{epoch:04d}.states"


BEST_FILE = "best.params"


def save(directory: Path, state: LoopState, engine, *, improved: bool) -> None:
    """Write the state of a completed epoch; remove the previous epoch's files. ``engine``
    writes its own weights and optimizer state (:class:`train.driver.Engine`)."""
    epoch = state.epoch
    artifacts.atomic_write(directory / _net_file(epoch), engine.save_weights)
    artifacts.atomic_write(directory / _trainer_file(epoch), engine.save_optimizer)
    if improved:
        artifacts.atomic_write(directory / BEST_FILE, engine.save_weights)
    artifacts.atomic_write_json(directory / STATE_FILE, asdict(state))
    for old in directory.glob("*-*.*"):
        if old.name not in (_net_file(epoch), _trainer_file(epoch)) and old.name.startswith(
            ("net-", "trainer-")
        ):
            old.unlink(missing_ok=True)


def load(directory: Path, fingerprint: dict[str, Any]) -> LoopState | None:
    """The saved loop state, or None when there is nothing to resume.

    Raises:
        ClientError: when the checkpoints belong to a different model, or were written by the
            other training engine (their weight and optimizer files are not interchangeable).
    """
    path = directory / STATE_FILE
    if not path.is_file():
        return None
    state = LoopState(**json.loads(path.read_text()))
    saved = {"engine": "mxnet", **state.fingerprint}  # checkpoints from before the engines
    engine, saved_engine = fingerprint.get("engine"), saved["engine"]
    if engine is not None and saved_engine != engine:
        raise ClientError(
            f"{directory} holds checkpoints of the {saved_engine} training engine and this job "
            f"runs the {engine} engine, which cannot resume them: set training_engine="
            f"{saved_engine} to resume, or empty the checkpoint folder (or use a new checkpoint "
            f"location) to start over"
        )
    if saved != {"engine": saved_engine, **fingerprint}:
        raise ClientError(
            f"{directory} holds checkpoints of a different model ({state.fingerprint}, now "
            f"{fingerprint}); empty the checkpoint folder or use a new checkpoint location"
        )
    state.fingerprint = dict(fingerprint)
    return state


def restore(directory: Path, state: LoopState, engine) -> None:
    """Load the network and optimizer state saved for ``state.epoch``."""
    engine.load_weights(directory / _net_file(state.epoch))
    trainer_file = directory / _trainer_file(state.epoch)
    if trainer_file.is_file() and trainer_file.stat().st_size:  # empty: on the servers
        engine.load_optimizer(trainer_file)
    logger.info(
        "Resuming from checkpoint: %d epoch(s) done, best validation accuracy %.6f",
        state.epoch,
        state.best_accuracy,
    )


def restore_best(directory: Path, engine) -> None:
    """Load the best-validation weights saved so far (to export the final model)."""
    engine.load_best(directory / BEST_FILE)
