"""Training on several devices, exercised on the CPU with two contexts (``OIC_CPU_CONTEXTS``):
batch splitting, the 'device' KVStore, optimizer state in checkpoints, validation on every
device. The same global batch on one context must learn as well."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.datagen import make_sagemaker_tree
from tests.integration.conftest import (
    ENGINES,
    TINY,
    assert_engine,
    run_training,
    set_hyperparameters,
)
from train import checkpoint, devices, reports

pytestmark = pytest.mark.integration

TWO = {devices.CPU_CONTEXTS_ENV: "2"}


def _validation_accuracies(log: str) -> list[float]:
    return [float(v) for v in re.findall(r"Epoch\[\d+\] Validation-accuracy=([0-9.]+)", log)]


@pytest.mark.parametrize("engine", ENGINES)  # PyTorch: two gloo rank processes
def test_two_contexts_learn_like_one_resume_and_validate_every_image_once(
    tmp_path: Path, engine: str
):
    hps = {**TINY, "training_engine": engine}
    one = make_sagemaker_tree(tmp_path / "one", hyperparameters=hps)
    two = make_sagemaker_tree(tmp_path / "two", hyperparameters=hps)
    single = run_training(one)
    assert single.returncode == 0, single.stdout[-3000:]
    double = run_training(two, env=TWO)
    assert double.returncode == 0, double.stdout[-3000:]
    assert_engine(double.stdout, engine)
    assert "No GPU visible: training on 2 CPU contexts (OIC_CPU_CONTEXTS)" in double.stdout
    best_one = max(_validation_accuracies(single.stdout))
    best_two = max(_validation_accuracies(double.stdout))
    print(f"best validation accuracy: one context {best_one:.3f}, two contexts {best_two:.3f}")
    assert best_two >= 0.8 and abs(best_two - best_one) <= 0.2  # chance is 1/3
    report = json.loads((two / "output" / "data" / reports.CLASS_REPORT_JSON).read_text())
    assert [r["support"] for r in report] == [8, 8, 8]  # each validation image scored once
    assert list((two / "checkpoints").glob("trainer-0003.states"))

    set_hyperparameters(two, epochs="4")
    resumed = run_training(two, env=TWO)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "Resuming from checkpoint: 3 epoch(s) done" in resumed.stdout
    assert re.findall(r"Epoch\[(\d+)\] Train-accuracy=", resumed.stdout) == ["3"]
    state = json.loads((two / "checkpoints" / checkpoint.STATE_FILE).read_text())
    assert state["epoch"] == 4
