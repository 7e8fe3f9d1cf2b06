"""The job's entry point: exit codes and output/failure (short reason first, then traceback)."""

from __future__ import annotations

import json

import pytest

from train import job, main
from train.errors import ClientError, TrainingInterrupted


def _tree(base, hyperparameters: dict | None = None):
    config = base / "input" / "config"
    config.mkdir(parents=True)
    if hyperparameters is not None:
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return base


@pytest.fixture
def calls(monkeypatch):
    """Replace the training job; records the config it was given."""
    seen = []
    monkeypatch.setattr(job, "train_job", lambda paths, cfg, stop: seen.append(cfg))
    return seen


def _raise(exc):
    def job(paths, cfg, stop):
        raise exc

    return job


def test_success_writes_output_success_and_returns_0(tmp_path, run_job, calls):
    result = run_job(_tree(tmp_path, {"epochs": "2", "sagemaker_program": "x"}))
    assert result.code == 0
    assert (tmp_path / "output" / "success").is_file()
    assert result.failure is None
    assert calls[0].epochs == 2
    assert "---- Parameters ----" in result.log and "epochs: 2" in result.log


def test_client_error_exits_1_with_the_reason_first(tmp_path, run_job, monkeypatch):
    reason = "the 'train' channel is empty; upload images"
    monkeypatch.setattr(job, "train_job", _raise(ClientError(reason)))
    result = run_job(_tree(tmp_path, {}))
    assert result.code == main.EXIT_CLIENT_ERROR == 1
    assert result.failure.splitlines()[0] == f"Customer Error: {reason}"
    assert "Traceback (most recent call last)" in result.failure
    assert result.failure.index("Traceback") > result.failure.index(reason)
    assert not (tmp_path / "output" / "success").exists()
    assert f"Customer Error: {reason}" in result.log


def test_internal_error_exits_2_naming_the_exception(tmp_path, run_job, monkeypatch):
    monkeypatch.setattr(job, "train_job", _raise(RuntimeError("CUDA went away")))
    result = run_job(_tree(tmp_path, {}))
    assert result.code == main.EXIT_INTERNAL_ERROR == 2
    assert result.failure.startswith("Internal Error: RuntimeError: CUDA went away\n")
    assert "raise exc\nRuntimeError: CUDA went away" in result.failure
    assert "Internal error" in result.log


def test_sigterm_stop_exits_143(tmp_path, run_job, monkeypatch):
    monkeypatch.setattr(job, "train_job", _raise(TrainingInterrupted("during epoch 3")))
    result = run_job(_tree(tmp_path, {}))
    assert result.code == 143
    assert result.failure.startswith("Training stopped by SIGTERM: during epoch 3")


def test_missing_hyperparameters_json_is_the_users_error(tmp_path, run_job, calls):
    result = run_job(_tree(tmp_path))
    assert result.code == 1
    first = result.failure.splitlines()[0]
    assert first.startswith("Customer Error: ")
    assert "input/config/hyperparameters.json is missing" in first
    assert calls == []


@pytest.mark.parametrize(
    ("hyperparameters", "fragment"),
    [
        ({"epoch": "3"}, "unknown hyperparameter 'epoch'"),
        ({"learning_rate": "2"}, "learning_rate='2' is invalid: expected a float in [0, 1]"),
    ],
)
def test_bad_hyperparameters_fail_before_the_job_starts(
    tmp_path, run_job, calls, hyperparameters, fragment
):
    result = run_job(_tree(tmp_path, hyperparameters))
    assert result.code == 1
    assert fragment in result.failure[:1024]  # what SageMaker's FailureReason shows
    assert calls == []


def test_invalid_json_is_reported(tmp_path, run_job, calls):
    base = _tree(tmp_path)
    (base / "input" / "config" / "hyperparameters.json").write_text("{'epochs': 3}")
    result = run_job(base)
    assert result.code == 1
    assert "hyperparameters.json is not valid JSON" in result.failure.splitlines()[0]


def test_help_describes_every_hyperparameter(capsys):
    with pytest.raises(SystemExit) as info:
        main.run(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("num_classes", "mini_batch_size", "max_bad_image_fraction", "SAGEMAKER_BASE_DIR"):
        assert name in out


def test_write_failure_puts_the_reason_before_the_traceback(tmp_path):
    from train.paths import Paths

    try:
        raise ValueError("inner detail")
    except ValueError as exc:
        main.write_failure(Paths(tmp_path), "Customer Error: short reason", exc)
    text = (tmp_path / "output" / "failure").read_text()
    assert text.startswith("Customer Error: short reason\n\nTraceback")
    assert text.rstrip().endswith("ValueError: inner detail")


def test_a_rerun_clears_the_previous_runs_outcome(tmp_path, run_job, monkeypatch):
    """Local re-runs reuse the same folder: a success must not leave the last failure behind
    (nor a failure the last success)."""
    base = _tree(tmp_path, {})
    monkeypatch.setattr(job, "train_job", _raise(ClientError("bad data")))
    assert run_job(base).code == 1
    monkeypatch.setattr(job, "train_job", lambda paths, cfg, stop: None)
    result = run_job(base)
    assert result.code == 0
    assert result.failure is None
    monkeypatch.setattr(job, "train_job", _raise(ClientError("bad again")))
    assert run_job(base).code == 1
    assert not (base / "output" / "success").exists()


def test_temporary_files_a_killed_run_left_are_removed_at_start(tmp_path, run_job, calls):
    base = _tree(tmp_path, {})
    stale = [
        base / "model" / ".image-classification-0003.params.k2j4x1.tmp",
        base / "checkpoints" / ".state.json.a8b9c0.tmp",
        base / "checkpoints" / "algo-2" / ".net-0002.params.zz1.tmp",  # a multi-host sub-folder
    ]
    kept = [base / "model" / "image-classification-0002.params", base / "model" / "notes.tmp"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    result = run_job(base)
    assert result.code == 0
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)
    assert f"Removed {stale[0]}" in result.log


def test_the_job_lets_max_image_pixels_alone_limit_image_sizes(tmp_path, run_job, calls):
    from PIL import Image

    base = _tree(tmp_path, {})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 178956970)
        assert run_job(base).code == 0
        assert Image.MAX_IMAGE_PIXELS is None  # Pillow's own cap lifted
