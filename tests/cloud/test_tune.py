"""``oic tune`` against a moto server: the exact CreateHyperParameterTuningJob request, waiting
for the tuning job, and each bad range refused before any request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloud.cli import main
from tests.cloud.conftest import BUCKET, HYPERPARAMETERS, IMAGE, REGION, ROLE
from train.config import parse_hyperparameters
from train.metric_lines import METRIC_DEFINITIONS

# The built-in's tunable ranges, as AWS's "Tune an image classification model" page lists them.
DOCUMENTED_RANGES = {
    "ContinuousParameterRanges": [
        {"Name": "beta_1", "MinValue": "1e-06", "MaxValue": "0.999", "ScalingType": "Auto"},
        {"Name": "beta_2", "MinValue": "1e-06", "MaxValue": "0.999", "ScalingType": "Auto"},
        {"Name": "eps", "MinValue": "1e-08", "MaxValue": "1.0", "ScalingType": "Auto"},
        {"Name": "gamma", "MinValue": "1e-08", "MaxValue": "0.999", "ScalingType": "Auto"},
        {"Name": "learning_rate", "MinValue": "1e-06", "MaxValue": "0.5", "ScalingType": "Auto"},
        {"Name": "momentum", "MinValue": "0", "MaxValue": "0.999", "ScalingType": "Auto"},
        {"Name": "weight_decay", "MinValue": "0", "MaxValue": "0.999", "ScalingType": "Auto"},
    ],
    "IntegerParameterRanges": [
        {"Name": "mini_batch_size", "MinValue": "8", "MaxValue": "512", "ScalingType": "Auto"}
    ],
    "CategoricalParameterRanges": [
        {"Name": "optimizer", "Values": ["sgd", "adam", "rmsprop", "nag"]}
    ],
}


def tune_args(data: Path, hps: Path, *extra: str) -> list[str]:
    base = ["tune", "--data", str(data), "--hyperparameters", str(hps), "--image", IMAGE]
    return [*base, "--role", ROLE, "--bucket", BUCKET, "--poll", "0", *extra]


def test_tune_sends_the_builtins_ranges_and_objective(
    session, recorder, bucket, pushed_image, prepared_data, hyperparameters_file, capsys
) -> None:
    assert main(tune_args(prepared_data, hyperparameters_file, "--job-name", "t-1"), session) == 0
    (request,) = recorder.params("CreateHyperParameterTuningJob")
    config = request["HyperParameterTuningJobConfig"]
    assert request["HyperParameterTuningJobName"] == "t-1"
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "validation:accuracy",
    }
    # The built-in's ranges, the batch size capped at the 12 training images (the trainer
    # refuses a larger batch).
    capped = {"Name": "mini_batch_size", "MinValue": "8", "MaxValue": "12", "ScalingType": "Auto"}
    assert config["ParameterRanges"] == {**DOCUMENTED_RANGES, "IntegerParameterRanges": [capped]}
    assert config["Strategy"] == "Bayesian"
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 10, "MaxParallelTrainingJobs": 2}
    assert config["TrainingJobEarlyStoppingType"] == "Off"
    definition = request["TrainingJobDefinition"]
    tuned = {"learning_rate", "mini_batch_size"}  # the file's values that are tuned
    assert definition["StaticHyperParameters"] == {
        k: v for k, v in HYPERPARAMETERS.items() if k not in tuned
    }
    assert definition["AlgorithmSpecification"] == {
        "TrainingImage": IMAGE,
        "TrainingInputMode": "File",
        "MetricDefinitions": METRIC_DEFINITIONS,
    }
    objective = next(d for d in METRIC_DEFINITIONS if d["Name"] == "validation:accuracy")
    assert objective["Regex"] == r"Epoch\[\d+\] Validation-accuracy=([0-9.eE+-]+)"
    assert definition["RoleArn"] == ROLE
    assert [c["ChannelName"] for c in definition["InputDataConfig"]] == [
        "train",
        "train_lst",
        "validation",
        "validation_lst",
    ]
    assert definition["OutputDataConfig"] == {"S3OutputPath": f"s3://{BUCKET}/oic/output"}
    assert "CheckpointConfig" not in definition
    assert len(recorder.params("PutObject")) == 18  # the data went up first
    out = capsys.readouterr().out
    assert "mini_batch_size: tuned up to 12, the size of the training set" in out
    assert "best training job:" in out


def manifest_tune_args(tmp_path: Path, images: int, *extra: str) -> list[str]:
    """``oic tune`` in Pipe mode on manifests of ``images`` lines (S3 URIs: nothing to make)."""
    lines = [
        json.dumps({"source-ref": f"s3://gt/{i}.jpg", "class": str(i % 3)}) for i in range(images)
    ]
    for name in ("train", "validation"):
        (tmp_path / f"{name}.manifest").write_text("\n".join(lines) + "\n")
    hps = tmp_path / "hps.json"
    values = {**HYPERPARAMETERS, "num_classes": "3", "num_training_samples": str(images)}
    hps.write_text(json.dumps(values))
    return [
        "tune",
        "--manifest",
        str(tmp_path / "train.manifest"),
        "--validation-manifest",
        str(tmp_path / "validation.manifest"),
        "--attribute-names",
        "source-ref,class",
        "--input-mode",
        "pipe",
        "--hyperparameters",
        str(hps),
        "--dry-run",
        *extra,
    ]


def dry_run_request(out: str) -> dict[str, Any]:
    marker = "CreateHyperParameterTuningJob "
    return json.loads(out[out.index(marker) + len(marker) :])


def test_the_default_ranges_are_the_builtins_table(session, recorder, tmp_path, capsys) -> None:
    assert main(manifest_tune_args(tmp_path, 600), session=session) == 0
    request = dry_run_request(capsys.readouterr().out)
    assert request["HyperParameterTuningJobConfig"]["ParameterRanges"] == DOCUMENTED_RANGES
    assert recorder.calls == []


def test_a_batch_range_beyond_the_training_set_is_refused(
    session, recorder, tmp_path, capsys
) -> None:
    args = manifest_tune_args(tmp_path, 40, "--range", "mini_batch_size=8:64")
    assert main(args, session=session) == 2
    assert "training set has 40 images" in capsys.readouterr().err
    assert recorder.calls == []


def test_the_container_accepts_what_the_tuner_sends() -> None:
    """Static values, any tuned value and SageMaker's own ``_tuning_objective_metric``."""
    sent = {**HYPERPARAMETERS, "optimizer": "nag", "momentum": "0.95"}
    sent["_tuning_objective_metric"] = "validation:accuracy"
    cfg = parse_hyperparameters(sent)
    assert cfg.optimizer == "nag" and "_tuning_objective_metric" in cfg.ignored


def test_chosen_and_overridden_ranges(
    session, recorder, bucket, pushed_image, prepared_data, hyperparameters_file
) -> None:
    extra = [
        "--tune",
        "learning_rate,optimizer",
        "--range",
        "learning_rate=0.0001:0.1:log",
        "--range",
        "optimizer=sgd,nag",
        "--range",
        "num_layers=18,34",
        "--range",
        "epochs=2:6",
        "--strategy",
        "Random",
        "--max-jobs",
        "4",
        "--max-parallel-jobs",
        "4",
        "--early-stopping",
    ]
    assert main(tune_args(prepared_data, hyperparameters_file, *extra), session) == 0
    (request,) = recorder.params("CreateHyperParameterTuningJob")
    config = request["HyperParameterTuningJobConfig"]
    assert config["ParameterRanges"] == {
        "ContinuousParameterRanges": [
            {
                "Name": "learning_rate",
                "MinValue": "0.0001",
                "MaxValue": "0.1",
                "ScalingType": "Logarithmic",
            }
        ],
        "IntegerParameterRanges": [
            {"Name": "epochs", "MinValue": "2", "MaxValue": "6", "ScalingType": "Auto"}
        ],
        "CategoricalParameterRanges": [
            {"Name": "optimizer", "Values": ["sgd", "nag"]},
            {"Name": "num_layers", "Values": ["18", "34"]},
        ],
    }
    assert config["Strategy"] == "Random"
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 4}
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert "mini_batch_size" in static and not {"epochs", "num_layers", "learning_rate"} & set(
        static
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--range", "learning_rate=0.5:0.1"], "MIN must be below MAX"),
        (["--range", "learning_rate=0:0.1:log"], "logarithmic scaling needs MIN > 0"),
        (["--range", "learning_rat=0.1:0.5"], "expected NAME=MIN:MAX[:SCALING]"),
        (["--range", "mini_batch_size=8.5:64"], "mini_batch_size is tuned over whole numbers"),
        (["--range", "optimizer=sgd,adamw"], "holds 'adamw', which the trainer refuses"),
        (["--range", "num_layers=18,19"], "holds '19', which the trainer refuses"),
        (["--tune", "learning_rate,epochs"], "--tune epochs: no built-in range"),
        (["--max-jobs", "2", "--max-parallel-jobs", "3"], "must not exceed --max-jobs"),
        (["--spot"], "does not take --spot"),
        (["--job-name", "a-tuning-job-name-longer-than-32c"], "must be 1-32 letters"),
        (["--strategy", "Hyperband", "--early-stopping"], "drop --early-stopping"),
    ],
)
def test_bad_tuning_options_fail_before_any_request(
    session, recorder, prepared_data, hyperparameters_file, capsys, extra, message
) -> None:
    assert main(tune_args(prepared_data, hyperparameters_file, *extra), session) == 2
    assert message in capsys.readouterr().err
    assert recorder.calls == []


def _tuning_job(name: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends["123456789012"][REGION].hyper_parameter_tuning_jobs[name]


def test_waiting_prints_progress_and_the_best_job(
    session, bucket, pushed_image, prepared_data, hyperparameters_file, capsys
) -> None:
    states = iter(["InProgress", "InProgress", "Completed"])

    def progress(params: dict[str, Any], **_: Any) -> None:
        job = _tuning_job(params["HyperParameterTuningJobName"])
        job.hyper_parameter_tuning_job_status = next(states)
        done = job.hyper_parameter_tuning_job_status == "Completed"
        job.training_job_status_counters = {
            "Completed": 4 if done else 1,
            "InProgress": 0 if done else 2,
        }
        job.best_training_job = {
            "TrainingJobName": "t-2-003-abcdef12",
            "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/t-2-003",
            "CreationTime": 0,
            "TrainingJobStatus": "Completed",
            "TunedHyperParameters": {"learning_rate": "0.02", "optimizer": "nag"},
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "MetricName": "validation:accuracy",
                "Value": 0.875,
            },
        }

    session.events.register(
        "before-parameter-build.sagemaker.DescribeHyperParameterTuningJob", progress
    )
    assert main(tune_args(prepared_data, hyperparameters_file, "--job-name", "t-2"), session) == 0
    out = capsys.readouterr().out
    assert "t-2: InProgress - training jobs: 1 completed, 2 inprogress" in out
    assert "t-2: Completed - training jobs: 4 completed" in out
    assert "best training job: t-2-003-abcdef12 (validation:accuracy = 0.875)" in out
    assert "tuned: learning_rate=0.02, optimizer=nag" in out
    assert "next: oic deploy --job-name t-2-003-abcdef12" in out


def test_a_failed_tuning_job_exits_1_with_its_reason(
    session, bucket, pushed_image, prepared_data, hyperparameters_file, capsys
) -> None:
    def fail(params: dict[str, Any], **_: Any) -> None:
        job = _tuning_job(params["HyperParameterTuningJobName"])
        job.hyper_parameter_tuning_job_status = "Failed"
        job.failure_reason = "All training jobs failed"

    session.events.register(
        "before-parameter-build.sagemaker.DescribeHyperParameterTuningJob", fail
    )
    assert main(tune_args(prepared_data, hyperparameters_file, "--job-name", "t-3"), session) == 1
    assert "tuning job t-3 failed: All training jobs failed" in capsys.readouterr().err


def test_tune_in_pipe_mode_from_manifests(session, recorder, tmp_path, capsys) -> None:
    assert main(manifest_tune_args(tmp_path, 6, "--tune", "learning_rate"), session=session) == 0
    definition = dry_run_request(capsys.readouterr().out)["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["TrainingInputMode"] == "Pipe"
    assert {c["RecordWrapperType"] for c in definition["InputDataConfig"]} == {"RecordIO"}
    assert definition["StaticHyperParameters"]["num_training_samples"] == "6"
    assert recorder.calls == []
