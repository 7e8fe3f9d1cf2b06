"""`docker run IMAGE train` on a mounted SageMaker /opt/ml tree: success, metrics, failures."""

from __future__ import annotations

import json
import re

from tests.container.conftest import SMALL_HYPERPARAMETERS, TIMINGS, train_in_container
from tests.datagen import make_sagemaker_tree

PARAMS = re.compile(r"^image-classification-\d{4}\.params$")


def assert_model_dir(model_dir) -> None:
    """The built-in algorithm's model files, plus classes.json and model.onnx."""
    names = {p.name for p in model_dir.iterdir()}
    assert "model.onnx" in names, names
    assert "image-classification-symbol.json" in names, names
    assert "model-shapes.json" in names, names
    assert "classes.json" in names, names
    assert any(PARAMS.match(n) for n in names), names
    json.loads((model_dir / "model-shapes.json").read_text())


def assert_metric_lines(log: str) -> None:
    assert re.search(r"Epoch\[0\] Train-accuracy=", log), log[-6000:]
    assert re.search(r"Validation-accuracy=", log), log[-6000:]


def failure_text(base) -> str:
    failure = base / "output" / "failure"
    assert failure.is_file(), "no output/failure written"
    text = failure.read_text()
    assert text.strip(), "output/failure is empty"
    return text


def test_train_writes_the_model_and_logs_metrics(trained_model):
    base, result = trained_model
    assert result.code == 0, result.log[-8000:]
    assert_model_dir(base / "model")
    assert_metric_lines(result.log)
    assert not (base / "output" / "failure").exists()


def test_no_argument_means_train(cpu_image, tmp_path):
    """The SageMaker SDK v3's local mode starts the image without any argument."""
    from tests.container.dockerctl import run_container

    base = make_sagemaker_tree(tmp_path / "opt_ml", hyperparameters=SMALL_HYPERPARAMETERS)
    result = run_container(cpu_image, mounts=[(base, "/opt/ml", "rw")], timeout=900)
    assert result.code == 0, result.log[-8000:]
    assert_model_dir(base / "model")


def test_bad_hyperparameter_fails_with_a_readable_failure_file(cpu_image, tmp_path):
    hps = {**SMALL_HYPERPARAMETERS, "num_layers": "7"}
    base = make_sagemaker_tree(tmp_path / "opt_ml", hyperparameters=hps)
    result = train_in_container(cpu_image, base, timeout=300)
    assert result.code != 0, result.log[-4000:]
    text = failure_text(base)
    assert "num_layers" in text[:1024], text[:1024]  # SageMaker shows the first 1,024 chars


def test_missing_train_channel_fails_with_a_readable_failure_file(cpu_image, tmp_path):
    base = make_sagemaker_tree(tmp_path / "opt_ml", hyperparameters=SMALL_HYPERPARAMETERS)
    for channel in ("train", "train_lst"):
        for path in sorted((base / "input" / "data" / channel).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        (base / "input" / "data" / channel).rmdir()
    result = train_in_container(cpu_image, base, timeout=300)
    assert result.code != 0, result.log[-4000:]
    assert "train" in failure_text(base)[:1024]


def test_missing_hyperparameters_file_fails_with_a_readable_failure_file(cpu_image, tmp_path):
    base = make_sagemaker_tree(tmp_path / "opt_ml", hyperparameters=SMALL_HYPERPARAMETERS)
    (base / "input" / "config" / "hyperparameters.json").unlink()
    result = train_in_container(cpu_image, base, timeout=300)
    assert result.code != 0, result.log[-4000:]
    assert "hyperparameters.json" in failure_text(base)[:1024]


def _wait_for_checkpoint(container, checkpoints, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if checkpoints.is_dir() and any(p.is_file() for p in checkpoints.rglob("*")):
            return
        assert container.running(), f"training ended early:\n{container.logs()[-6000:]}"
        time.sleep(1)
    raise AssertionError(f"no checkpoint after {timeout} s:\n{container.logs()[-6000:]}")


def test_docker_stop_saves_a_checkpoint_and_a_restart_resumes(cpu_image, tmp_path):
    from tests.container.dockerctl import Container

    hps = {**SMALL_HYPERPARAMETERS, "epochs": "50"}
    base = make_sagemaker_tree(tmp_path / "opt_ml", hyperparameters=hps)
    mounts = [(base, "/opt/ml", "rw")]
    checkpoints = base / "checkpoints"
    with Container(cpu_image, "train", mounts=mounts) as first:
        _wait_for_checkpoint(first, checkpoints, timeout=600)
        code, seconds = first.stop(grace=120)  # StopTrainingJob's grace period
        log = first.logs()
    TIMINGS["docker stop during training"] = f"{seconds:.1f} s, exit {code}"
    assert code != 137, f"SIGKILLed: SIGTERM was not handled in time\n{log[-6000:]}"
    assert seconds < 110, f"stopping took {seconds:.0f} s"
    assert any(p.is_file() for p in checkpoints.rglob("*")), "no checkpoint left on disk"
    with Container(cpu_image, "train", mounts=mounts) as second:
        second.wait_for_log("Resuming from checkpoint", timeout=300)
        second.stop(grace=120)
