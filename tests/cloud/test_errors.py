"""Errors that say what to do: no credentials, no region, no role, a missing bucket."""

from __future__ import annotations

import pytest

from cloud.cli import main
from tests.cloud.conftest import BUCKET, ROLE
from tests.cloud.test_train import train_args


def args(data, hps, *extra: str) -> list[str]:
    """``oic train`` arguments without role and bucket (each test adds what it needs)."""
    return train_args(data, hps, *extra, role=None, bucket=None)


def test_no_credentials(aws_env, monkeypatch, prepared_data, hyperparameters_file, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code = main(args(prepared_data, hyperparameters_file, "--role", ROLE))
    assert code == 2
    err = capsys.readouterr().err
    assert "no AWS credentials found" in err and "aws configure" in err


def test_no_region(aws_env, monkeypatch, prepared_data, hyperparameters_file, capsys):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    code = main(args(prepared_data, hyperparameters_file, "--role", ROLE, "--bucket", BUCKET))
    assert code == 2
    assert "no AWS region configured. Pass --region" in capsys.readouterr().err


def test_no_role(session, recorder, prepared_data, hyperparameters_file, capsys):
    assert main(args(prepared_data, hyperparameters_file), session=session) == 2
    assert "no SageMaker execution role: pass --role" in capsys.readouterr().err
    assert recorder.calls == []


def test_a_malformed_role(session, recorder, prepared_data, hyperparameters_file, capsys):
    code = main(args(prepared_data, hyperparameters_file, "--role", "MyRole"), session=session)
    assert code == 2
    assert "is not an IAM role ARN" in capsys.readouterr().err


def test_role_from_the_environment(
    session, recorder, monkeypatch, bucket, pushed_image, prepared_data, hyperparameters_file
):
    monkeypatch.setenv("OIC_ROLE", ROLE)
    assert main(args(prepared_data, hyperparameters_file, "--bucket", BUCKET), session) == 0
    assert recorder.params("CreateTrainingJob")[0]["RoleArn"] == ROLE


def test_bucket_missing(session, recorder, prepared_data, hyperparameters_file, capsys):
    code = main(
        args(prepared_data, hyperparameters_file, "--role", ROLE, "--bucket", "no-such-bucket"),
        session=session,
    )
    assert code == 2
    assert "bucket 'no-such-bucket' does not exist: create it with `aws s3 mb" in (
        capsys.readouterr().err
    )
    assert "PutObject" not in recorder.ops()


def test_the_default_bucket_is_the_sdks(
    session, recorder, setup_client, pushed_image, prepared_data, hyperparameters_file
):
    setup_client("s3").create_bucket(Bucket="sagemaker-us-east-1-123456789012")
    assert main(args(prepared_data, hyperparameters_file, "--role", ROLE), session=session) == 0
    (request,) = recorder.params("CreateTrainingJob")
    assert request["OutputDataConfig"] == {
        "S3OutputPath": "s3://sagemaker-us-east-1-123456789012/oic/output"
    }


def test_data_without_lists_or_channels(session, recorder, tmp_path, hyperparameters_file, capsys):
    (tmp_path / "empty").mkdir()
    code = main(args(tmp_path / "empty", hyperparameters_file, "--role", ROLE), session=session)
    assert code == 2
    assert "oic prepare" in capsys.readouterr().err
    assert recorder.calls == []


@pytest.mark.parametrize(
    "command", ["prepare", "push", "train", "logs", "deploy", "predict", "delete", "local"]
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--dry-run" in capsys.readouterr().out
