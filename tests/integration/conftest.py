"""Shared helpers for the integration tier: run real training jobs on generated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datagen import make_sagemaker_tree

REPO = Path(__file__).resolve().parents[2]

# Small enough to train in seconds on two CPU cores, big enough to learn the generated classes.
TINY = {
    "num_layers": "20",
    "image_shape": "3,32,32",
    "resize": "36",
    "epochs": "3",
    "mini_batch_size": "16",
    "learning_rate": "0.01",
}


def run_training(
    base: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m train`` on the tree at ``base``, as the container runs it (with ``env``
    added to the environment)."""
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "train"],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def set_hyperparameters(base: Path, **changes: str) -> None:
    path = base / "input" / "config" / "hyperparameters.json"
    hps = json.loads(path.read_text())
    hps.update(changes)
    path.write_text(json.dumps(hps))


@pytest.fixture
def tiny_tree(tmp_path: Path) -> Path:
    """A four-channel .lst tree with three learnable classes and the TINY hyperparameters."""
    return make_sagemaker_tree(tmp_path / "opt_ml", hyperparameters=TINY)


# The training engines the parity tests run (issue 16): each test that exercises an engine's own
# code path (its loader, ranks, Pipe reader, checkpoints, stop) runs on both.
ENGINES = ("mxnet", "pytorch")


def use_engine(base: Path, engine: str) -> None:
    """Make the job at ``base`` train on ``engine`` (``training_engine``)."""
    set_hyperparameters(base, training_engine=engine)


def assert_engine(log: str, engine: str) -> None:
    """The job logged that it trained on ``engine``, and only that engine's epochs ran."""
    assert f"Training engine: {engine} (training_engine={engine})" in log, log[-3000:]
    assert ("Starting the PyTorch engine" in log) == (engine == "pytorch"), log[-3000:]
