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


def save(directory: Path, state: LoopState, net, trainer, *, improved: bool) -> None:
    """Write the state of a completed epoch; remove the previous epoch's files."""
    epoch = state.epoch
    artifacts.atomic_write(directory / _net_file(epoch), lambda p: net.save_parameters(str(p)))
    if trainer is not None:  # None: the optimizer lives on the parameter servers (dist_async)
        artifacts.atomic_write(
            directory / _trainer_file(epoch), lambda p: trainer.save_states(str(p))
        )
    if improved:
        artifacts.atomic_write(directory / BEST_FILE, lambda p: net.save_parameters(str(p)))
    artifacts.atomic_write_json(directory / STATE_FILE, asdict(state))
    for old in directory.glob("*-*.*"):
        if old.name not in (_net_file(epoch), _trainer_file(epoch)) and old.name.startswith(
            ("net-", "trainer-")
        ):
            old.unlink(missing_ok=True)


def load(directory: Path, fingerprint: dict[str, Any]) -> LoopState | None:
    """The saved loop state, or None when there is nothing to resume.

    Raises:
        ClientError: when the checkpoints belong to a different model.
    """
    path = directory / STATE_FILE
    if not path.is_file():
        return None
    state = LoopState(**json.loads(path.read_text()))
    if state.fingerprint != fingerprint:
        raise ClientError(
            f"{directory} holds checkpoints of a different model ({state.fingerprint}, now "
            f"{fingerprint}); empty the checkpoint folder or use a new checkpoint location"
        )
    return state


def restore(directory: Path, state: LoopState, net, trainer, ctx: list) -> None:
    """Load the network and optimizer state saved for ``state.epoch``."""
    net.load_parameters(str(directory / _net_file(state.epoch)), ctx=ctx)
    if trainer is not None:
        trainer.load_states(str(directory / _trainer_file(state.epoch)))
    logger.info(
        "Resuming from checkpoint: %d epoch(s) done, best validation accuracy %.6f",
        state.epoch,
        state.best_accuracy,
    )


def restore_best(directory: Path, net) -> None:
    """Load the best-validation weights saved so far (to export the final model).

    The values are copied into the existing arrays: ``load_parameters`` would ask a
    multi-host trainer to reset its distributed KVStore, which MXNet refuses.
    """
    import mxnet as mx

    saved = mx.nd.load(str(directory / BEST_FILE))
    params = net._collect_params_with_prefix()  # the names save_parameters wrote
    missing = sorted(set(params) - set(saved))
    if missing:
        raise RuntimeError(f"{directory / BEST_FILE} lacks {', '.join(missing[:5])}")
    for name, param in params.items():
        for array in param.list_data():
            saved[name].copyto(array)
