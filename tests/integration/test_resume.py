"""Checkpoints and resume: a stopped job continues where it stopped, never redoing more than
the interrupted epoch, with the same optimizer state and learning-rate schedule."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (
    ENGINES,
    REPO,
    assert_engine,
    run_training,
    set_hyperparameters,
    use_engine,
)
from train import checkpoint, devices, reports

pytestmark = pytest.mark.integration


def _epochs_logged(log: str) -> list[int]:
    return [int(e) for e in re.findall(r"Epoch\[(\d+)\] Train-accuracy=", log)]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_longer_rerun_resumes_after_the_last_completed_epoch(tiny_tree: Path, engine: str):
    use_engine(tiny_tree, engine)
    set_hyperparameters(tiny_tree, epochs="2", lr_scheduler_step="3", lr_scheduler_factor="0.5")
    first = run_training(tiny_tree)
    assert first.returncode == 0, first.stdout[-3000:]
    set_hyperparameters(tiny_tree, epochs="4")
    second = run_training(tiny_tree)
    assert second.returncode == 0, second.stdout[-3000:]
    assert_engine(second.stdout, engine)
    assert "Resuming from checkpoint: 2 epoch(s) done" in second.stdout
    assert _epochs_logged(second.stdout) == [2, 3]
    rows = list(csv.DictReader((tiny_tree / "output" / "data" / reports.METRICS_CSV).open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    rates = [float(r["learning_rate"]) for r in rows]
    assert rates == pytest.approx([0.01, 0.01, 0.01, 0.005])


# The PyTorch engine's stop runs with two rank processes: every rank must stop at the same batch.
@pytest.mark.parametrize(("engine", "contexts"), [("mxnet", "1"), ("pytorch", "2")])
def test_sigterm_stops_cleanly_and_the_restart_resumes(tiny_tree: Path, engine: str, contexts):
    use_engine(tiny_tree, engine)
    set_hyperparameters(tiny_tree, epochs="30")
    ranks = {devices.CPU_CONTEXTS_ENV: contexts}
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(tiny_tree), "PYTHONUNBUFFERED": "1", **ranks}
    proc = subprocess.Popen(
        [sys.executable, "-m", "train"],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    log = []
    deadline = time.time() + 300
    assert proc.stdout is not None
    for line in proc.stdout:
        log.append(line)
        if "Epoch[1] Validation-accuracy=" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    log_text = "".join(log) + rest
    assert proc.returncode == 143, log_text[-3000:]
    assert "Received signal 15" in log_text
    state = json.loads((tiny_tree / "checkpoints" / checkpoint.STATE_FILE).read_text())
    assert state["epoch"] >= 2
    failure = (tiny_tree / "output" / "failure").read_text()
    assert failure.startswith("Training stopped by SIGTERM")
    done = state["epoch"]

    set_hyperparameters(tiny_tree, epochs=str(done + 1))
    resumed = run_training(tiny_tree, env=ranks)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"Resuming from checkpoint: {done} epoch(s) done" in resumed.stdout
    assert _epochs_logged(resumed.stdout) == [done]
