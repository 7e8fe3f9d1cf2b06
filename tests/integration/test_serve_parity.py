"""The endpoint reproduces the validation accuracy that training reported.

SageMaker users report that the built-in algorithm's endpoint scores lower than its training log
on the same validation images (sagemaker-python-sdk issues 698 and 3229). Here a real training
job runs (``python -m train``), the real server stack serves its model, every validation image
goes through HTTP as the raw file a user would send, and the endpoint's accuracy must equal the
``Validation-accuracy`` the log printed for the epoch whose parameters were saved: with MXNet, and
with ONNX Runtime running the job's ``model.onnx``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import requests

from serve import content_types as ct
from tests.datagen import make_sagemaker_tree
from tests.integration.conftest import ENGINES, assert_engine, run_training
from tests.serve_fixtures import ServerProcess
from train import artifacts, reports

pytestmark = pytest.mark.integration

HYPERPARAMETERS = {
    "num_layers": "20",
    "image_shape": "3,32,32",
    "resize": "36",
    "epochs": "3",
    "mini_batch_size": "16",
    "learning_rate": "0.05",
}
VALIDATION_LINE = re.compile(r"Epoch\[(\d+)\] Validation-accuracy=([0-9.]+)")


def validation_items(base: Path) -> list[tuple[Path, int]]:
    """(image file, label) for every line of the validation .lst."""
    data = base / "input" / "data"
    items = []
    for line in (data / "validation_lst" / "validation.lst").read_text().splitlines():
        _, label, relpath = line.split("\t")
        items.append((data / "validation" / relpath, int(float(label))))
    return items


def logged_accuracy(log: str, saved_epoch: int) -> float:
    """The Validation-accuracy printed for the saved epoch (logs count from 0, files from 1)."""
    by_epoch = {int(n): float(acc) for n, acc in VALIDATION_LINE.findall(log)}
    assert by_epoch, f"no Validation-accuracy lines in the training log:\n{log[-3000:]}"
    return by_epoch[saved_epoch - 1]


@pytest.fixture(scope="module", params=ENGINES)
def trained(request, tmp_path_factory) -> tuple[Path, str]:
    """One training job per engine for both backends: its SageMaker tree and its log."""
    engine = request.param
    base = make_sagemaker_tree(
        tmp_path_factory.mktemp(f"parity-{engine}") / "opt_ml",
        hyperparameters={**HYPERPARAMETERS, "training_engine": engine},
    )
    job = run_training(base)
    log = job.stdout + job.stderr
    assert job.returncode == 0, log[-3000:]
    assert_engine(log, engine)
    return base, log


@pytest.mark.parametrize("backend", ["mxnet", "onnxruntime"])
def test_endpoint_accuracy_equals_the_training_validation_accuracy(trained, tmp_path, backend):
    base, log = trained
    (saved_epoch,) = artifacts.params_epochs(base / "model")
    expected = logged_accuracy(log, saved_epoch)

    items = validation_items(base)
    env = {"SERVE_BACKEND": backend}
    with ServerProcess(base, tmp_path / "server.log", env) as server, requests.Session() as http:
        server.wait_ready(timeout=120)
        assert f"SERVE_BACKEND={backend}: {backend} (" in server.log()
        if backend == "onnxruntime":  # the job's own file, not a conversion at load time
            assert f"Using {base / 'model' / artifacts.ONNX_FILE}" in server.log()
        predicted = []
        for path, _ in items:
            response = http.post(
                f"{server.url}/invocations",
                data=path.read_bytes(),
                headers={"Content-Type": ct.X_IMAGE},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            predicted.append(int(np.argmax(response.json())))
    labels = np.array([label for _, label in items])
    correct = int((np.array(predicted) == labels).sum())
    endpoint_accuracy = correct / len(items)
    # The log prints 6 decimals; equal counts give equal accuracies.
    assert round(endpoint_accuracy, 6) == expected, (
        f"endpoint {correct}/{len(items)} = {endpoint_accuracy:f}, training log {expected:f} "
        f"(epoch {saved_epoch})"
    )

    # Class by class too: the trainer's validation report of the final model, recomputed from
    # the endpoint's answers with the trainer's own report code.
    classes = json.loads((base / "model" / artifacts.CLASSES_FILE).read_text())["classes"]
    matrix = reports.confusion_matrix(labels, np.array(predicted), len(classes))
    trained = json.loads((base / "output" / "data" / reports.CLASS_REPORT_JSON).read_text())
    assert reports.per_class_report(matrix, classes) == trained
