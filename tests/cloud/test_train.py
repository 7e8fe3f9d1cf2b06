"""``oic train`` against a moto server: the exact upload and CreateTrainingJob requests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cloud.cli import main
from tests.cloud.conftest import BUCKET, HYPERPARAMETERS, IMAGE, REGION, ROLE
from train.metric_lines import METRIC_DEFINITIONS

PREFIX = "oic/data/pets"
CHANNEL_TYPES = {
    "train": "application/x-image",
    "train_lst": "application/x-image",
    "validation": "application/x-image",
    "validation_lst": "application/x-image",
}


def train_args(
    data: Path, hps: Path, *extra: str, role: str | None = ROLE, bucket: str | None = BUCKET
) -> list[str]:
    """``oic train`` arguments; ``role=None`` / ``bucket=None`` leave those options out."""
    args = ["train", "--data", str(data), "--hyperparameters", str(hps), "--image", IMAGE]
    args += ["--role", role] if role else []
    args += ["--bucket", bucket] if bucket else []
    return [*args, "--poll", "0", *extra]


def expected_request(name: str, **overrides: Any) -> dict[str, Any]:
    request = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "RoleArn": ROLE,
        "HyperParameters": HYPERPARAMETERS,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/{PREFIX}/{channel}/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": content_type,
                "CompressionType": "None",
                "InputMode": "File",
            }
            for channel, content_type in CHANNEL_TYPES.items()
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/oic/output"},
        "ResourceConfig": {
            "InstanceType": "ml.g5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 50,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "EnableManagedSpotTraining": False,
    }
    request.update(overrides)
    return request


def test_train_uploads_four_channels_and_sends_the_exact_request(
    session,
    recorder,
    bucket,
    pushed_image,
    prepared_data,
    hyperparameters_file,
    setup_client,
    capsys,
) -> None:
    args = train_args(prepared_data, hyperparameters_file, "--job-name", "job-1")
    assert main(args, session=session) == 0
    assert recorder.params("CreateTrainingJob") == [expected_request("job-1")]
    # The metric regexes read the trainer's own log lines.
    regexes = {
        d["Name"]: d["Regex"]
        for d in recorder.params("CreateTrainingJob")[0]["AlgorithmSpecification"][
            "MetricDefinitions"
        ]
    }
    assert regexes["validation:accuracy"] == r"Epoch\[\d+\] Validation-accuracy=([0-9.eE+-]+)"
    keys = {o["Key"] for o in setup_client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
    train_lst = (prepared_data / "train.lst").read_text().splitlines()
    val_lst = (prepared_data / "validation.lst").read_text().splitlines()
    assert keys == (
        {f"{PREFIX}/train/{line.split(chr(9))[2]}" for line in train_lst}
        | {f"{PREFIX}/validation/{line.split(chr(9))[2]}" for line in val_lst}
        | {
            f"{PREFIX}/train_lst/train.lst",
            f"{PREFIX}/train_lst/classes.json",
            f"{PREFIX}/validation_lst/validation.lst",
        }
    )
    puts = recorder.params("PutObject")
    assert len(puts) == len(keys)
    assert all(p["Metadata"]["sha256"] and p["ContentType"] for p in puts)
    assert {p["ContentType"] for p in puts if p["Key"].endswith(".jpg")} == {"image/jpeg"}
    out = capsys.readouterr().out
    assert f"model: s3://{BUCKET}/oic/output/job-1/output/model.tar.gz" in out
    assert "uploaded 18 files" in out


def test_second_upload_skips_files_with_the_same_size_and_checksum(
    session,
    recorder,
    bucket,
    pushed_image,
    prepared_data,
    hyperparameters_file,
    capsys,
) -> None:
    assert main(train_args(prepared_data, hyperparameters_file, "--job-name", "a"), session) == 0
    first = len(recorder.params("PutObject"))
    assert main(train_args(prepared_data, hyperparameters_file, "--job-name", "b"), session) == 0
    assert len(recorder.params("PutObject")) == first  # nothing re-sent
    assert "skipped 18 already there" in capsys.readouterr().out
    # Same size, different bytes: only that file goes up again.
    names = prepared_data / "classes.json"
    text = names.read_text()
    names.write_text(text.replace("class_0", "klass_0"))
    assert len(names.read_text()) == len(text)
    assert main(train_args(prepared_data, hyperparameters_file, "--job-name", "c"), session) == 0
    assert [p["Key"] for p in recorder.params("PutObject")[first:]] == [
        f"{PREFIX}/train_lst/classes.json"
    ]


def test_spot_training_sets_max_wait_and_checkpoints(
    session,
    recorder,
    bucket,
    pushed_image,
    prepared_data,
    hyperparameters_file,
) -> None:
    args = train_args(
        prepared_data,
        hyperparameters_file,
        "--job-name",
        "spot-1",
        "--spot",
        "--max-runtime",
        "3600",
        "--instance-count",
        "2",
        "--instance-type",
        "ml.g4dn.xlarge",
    )
    assert main(args, session=session) == 0
    (request,) = recorder.params("CreateTrainingJob")
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3600,
        "MaxWaitTimeInSeconds": 7200,
    }
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/oic/output/spot-1/checkpoints",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.g4dn.xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 50,
    }


def test_spot_max_wait_must_exceed_the_runtime(
    session,
    recorder,
    prepared_data,
    hyperparameters_file,
    capsys,
) -> None:
    args = train_args(
        prepared_data, hyperparameters_file, "--spot", "--max-runtime", "3600", "--max-wait", "3600"
    )
    assert main(args, session=session) == 2
    assert "must be longer than --max-runtime" in capsys.readouterr().err
    assert recorder.calls == []


def test_logs_are_streamed_while_waiting(
    session,
    bucket,
    pushed_image,
    prepared_data,
    hyperparameters_file,
    setup_client,
    capsys,
) -> None:
    logs = setup_client("logs")
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="job-logs/algo-1-1700000000"
    )
    now = int(time.time() * 1000)
    lines = ["Epoch[0] Train-accuracy=0.500000", "Epoch[0] Validation-accuracy=0.625000"]
    logs.put_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamName="job-logs/algo-1-1700000000",
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)],
    )
    args = train_args(prepared_data, hyperparameters_file, "--job-name", "job-logs")
    assert main(args, session=session) == 0
    out = capsys.readouterr().out
    assert out.index(lines[0]) < out.index(lines[1]) < out.index("model: s3://")


def _fail_job(name: str, reason: str) -> None:
    from moto.sagemaker.models import sagemaker_backends

    job = sagemaker_backends["123456789012"][REGION].training_jobs[name]
    job.training_job_status = "Failed"
    job.secondary_status = "Failed"
    job.failure_reason = reason


def test_a_failed_job_prints_its_reason_and_exits_non_zero(
    session,
    recorder,
    bucket,
    pushed_image,
    prepared_data,
    hyperparameters_file,
    capsys,
) -> None:
    reason = "ClientError: Invalid hyperparameters: hyperparameter resize='20' is invalid"

    def fail_on_describe(params: dict[str, Any], **_: Any) -> None:
        _fail_job(params["TrainingJobName"], reason)

    session.events.register(
        "before-parameter-build.sagemaker.DescribeTrainingJob", fail_on_describe
    )
    args = train_args(prepared_data, hyperparameters_file, "--job-name", "job-fails")
    assert main(args, session=session) == 1
    err = capsys.readouterr().err
    assert f"training job job-fails failed: {reason}" in err
    assert "/aws/sagemaker/TrainingJobs" in err


def test_unknown_hyperparameter_is_caught_before_any_request(
    session,
    recorder,
    bucket,
    pushed_image,
    prepared_data,
    tmp_path,
    capsys,
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**HYPERPARAMETERS, "learning_rat": "0.1"}))
    assert main(train_args(prepared_data, bad), session=session) == 2
    err = capsys.readouterr().err
    assert "unknown hyperparameter 'learning_rat'" in err and "nothing was uploaded" in err
    assert recorder.calls == []


def test_missing_image_tag_in_ecr_stops_before_upload(
    session,
    recorder,
    bucket,
    pushed_image,
    prepared_data,
    hyperparameters_file,
    capsys,
) -> None:
    missing = IMAGE.replace(":v1", ":v2")
    args = train_args(prepared_data, hyperparameters_file)
    args[args.index(IMAGE)] = missing
    assert main(args, session=session) == 2
    err = capsys.readouterr().err
    assert f"image {missing} is not in ECR" in err and "oic push --tag v2" in err
    assert "PutObject" not in recorder.ops() and "CreateTrainingJob" not in recorder.ops()


def test_an_image_uri_without_a_tag_is_refused(
    session,
    recorder,
    prepared_data,
    hyperparameters_file,
    capsys,
) -> None:
    args = train_args(prepared_data, hyperparameters_file)
    args[args.index(IMAGE)] = IMAGE.rsplit(":", 1)[0]
    assert main(args, session=session) == 2
    assert "has no tag" in capsys.readouterr().err
    assert "CreateTrainingJob" not in recorder.ops()


def test_the_default_image_is_this_accounts_oic_repository(
    session,
    recorder,
    bucket,
    pushed_image,
    prepared_data,
    hyperparameters_file,
) -> None:
    args = train_args(prepared_data, hyperparameters_file, "--tag", "v1", "--job-name", "d")
    del args[args.index("--image") : args.index("--image") + 2]
    assert main(args, session=session) == 0
    (request,) = recorder.params("CreateTrainingJob")
    assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE


@pytest.mark.parametrize("instance", ["ml.p2.xlarge"])
def test_gpus_no_engine_can_run_are_refused(
    session,
    recorder,
    prepared_data,
    hyperparameters_file,
    capsys,
    instance,
) -> None:
    args = train_args(prepared_data, hyperparameters_file, "--instance-type", instance)
    assert main(args, session=session) == 2
    assert f"{instance} cannot run this image" in capsys.readouterr().err
    assert recorder.calls == []


def test_dry_run_prints_the_request_and_sends_nothing(
    session,
    recorder,
    prepared_data,
    hyperparameters_file,
    capsys,
) -> None:
    args = train_args(prepared_data, hyperparameters_file, "--job-name", "dry", "--dry-run")
    assert main(args, session=session) == 0
    out = capsys.readouterr().out
    request = json.loads(out[out.index("CreateTrainingJob ") + len("CreateTrainingJob ") :])
    assert request == expected_request("dry")
    assert recorder.calls == []
