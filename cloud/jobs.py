"""``oic train``: upload the inputs and send the CreateTrainingJob request (then follow the job).

The request is built by one pure function, :func:`training_job_request`, so that ``--dry-run``
prints exactly what is sent and the tests assert it. It goes out through boto3; SDK v3's
``ModelTrainer`` builds the same request (``cloud.local`` uses it for local mode).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from cloud.aws import Aws, check_bucket, check_role
from cloud.errors import CliError
from cloud.images import check_image_exists, parse_image, registry_host, resolve_image
from cloud.inputs import (
    FILE,
    PIPE,
    channel_config,
    check_streamed_prefixes,
    dataset_name,
    plan_inputs,
    with_bucket,
)
from cloud.joblogs import follow
from cloud.s3sync import Channel, sync
from cloud.settings import (
    BUCKET_ENV,
    CHECKPOINT_LOCAL_PATH,
    REPOSITORY,
    check_instance_type,
    load_hyperparameters,
    role_from_env,
)
from train.metric_lines import METRIC_DEFINITIONS


def stopping_condition(spot: bool, max_runtime: int, max_wait: int | None = None) -> dict[str, int]:
    """The StoppingCondition; spot jobs wait ``max_wait`` s in all (default twice the runtime)."""
    condition = {"MaxRuntimeInSeconds": max_runtime}
    if spot:
        wait_time = max_wait or 2 * max_runtime
        if wait_time <= max_runtime:
            raise CliError(
                f"--max-wait ({wait_time} s) must be longer than --max-runtime "
                f"({max_runtime} s): it covers waiting for spot capacity plus the run"
            )
        condition["MaxWaitTimeInSeconds"] = wait_time
    return condition


@dataclass(frozen=True)
class JobSpec:
    """Everything that goes into one CreateTrainingJob request."""

    name: str
    image: str
    role: str
    bucket: str
    channels: tuple[Channel, ...]
    hyperparameters: dict[str, str]
    output_path: str
    instance_type: str
    instance_count: int = 1
    volume_gb: int = 50
    stopping: dict[str, int] = field(default_factory=lambda: stopping_condition(False, 86400))
    spot: bool = False
    checkpoint_uri: str | None = None


def training_input_mode(channels: tuple[Channel, ...]) -> str:
    """``Pipe`` when a channel streams (the per-channel modes win), else ``File``."""
    return PIPE if any(c.input_mode == PIPE for c in channels) else FILE


def training_job_request(spec: JobSpec) -> dict[str, Any]:
    """The exact CreateTrainingJob parameters for ``spec``."""
    request: dict[str, Any] = {
        "TrainingJobName": spec.name,
        "AlgorithmSpecification": {
            "TrainingImage": spec.image,
            "TrainingInputMode": training_input_mode(spec.channels),
            "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
        },
        "RoleArn": spec.role,
        "HyperParameters": dict(spec.hyperparameters),
        "InputDataConfig": [channel_config(c, spec.bucket) for c in spec.channels],
        "OutputDataConfig": {"S3OutputPath": spec.output_path},
        "ResourceConfig": {
            "InstanceType": spec.instance_type,
            "InstanceCount": spec.instance_count,
            "VolumeSizeInGB": spec.volume_gb,
        },
        "StoppingCondition": dict(spec.stopping),
        "EnableManagedSpotTraining": spec.spot,
    }
    if spec.spot or spec.checkpoint_uri:
        uri = spec.checkpoint_uri or f"{spec.output_path.rstrip('/')}/{spec.name}/checkpoints"
        request["CheckpointConfig"] = {"S3Uri": uri, "LocalPath": CHECKPOINT_LOCAL_PATH}
    return request


def job_name(given: str | None) -> str:
    """``--job-name`` or ``oic-YYYYmmdd-HHMMSS`` (UTC)."""
    name = given or time.strftime("oic-%Y%m%d-%H%M%S", time.gmtime())
    if len(name) > 63 or not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name):
        raise CliError(f"job name {name!r} must be 1-63 letters, digits and hyphens")
    return name


def _placeholders(aws: Aws, args: argparse.Namespace) -> tuple[str, str, str]:
    """Role, bucket and image for ``--dry-run``, which sends nothing (so knows no account)."""
    region = aws.session.region_name or "<region>"
    role = args.role or role_from_env() or "arn:aws:iam::<account-id>:role/<--role>"
    bucket = args.bucket or os.environ.get(BUCKET_ENV) or f"sagemaker-{region}-<account-id>"
    image = (
        parse_image(args.image).uri
        if args.image
        else f"{registry_host('<account-id>', region)}/{REPOSITORY}:{args.tag}"
    )
    return role, bucket, image


def _resolve(aws: Aws, args: argparse.Namespace) -> tuple[str, str, str]:
    """Role, bucket and image, each checked against AWS with a clear error."""
    role = check_role(args.role or role_from_env())
    if args.image:
        parse_image(args.image)  # a malformed URI or a missing tag fails before any request
    bucket = (
        args.bucket or os.environ.get(BUCKET_ENV) or f"sagemaker-{aws.region}-{aws.account_id()}"
    )
    check_bucket(aws.client("s3"), bucket, aws.region)
    ref = resolve_image(aws, args.image, args.tag)
    check_image_exists(aws.client("ecr"), ref)
    return role, bucket, ref.uri


def plan_job(args: argparse.Namespace, aws: Aws, name: str) -> JobSpec:
    """Everything a training job needs, checked locally and (unless ``--dry-run``) against AWS,
    before anything is uploaded. ``oic tune`` builds its training job definition from it too."""
    hyperparameters = load_hyperparameters(args.hyperparameters)
    instance_type = check_instance_type(args.instance_type)
    stopping = stopping_condition(args.spot, args.max_runtime, args.max_wait)
    channels = plan_inputs(args, hyperparameters, f"{args.prefix}/data/{dataset_name(args)}")
    role, bucket, image = (_placeholders if args.dry_run else _resolve)(aws, args)
    return JobSpec(
        name=name,
        image=image,
        role=role,
        bucket=bucket,
        channels=with_bucket(tuple(channels), bucket),
        hyperparameters=hyperparameters,
        output_path=f"s3://{bucket}/{args.prefix}/output",
        instance_type=instance_type,
        instance_count=args.instance_count,
        volume_gb=args.volume_size,
        stopping=stopping,
        spot=args.spot,
        checkpoint_uri=args.checkpoint_uri,
    )


def upload(aws: Aws, spec: JobSpec, dry_run: bool) -> None:
    """Upload the job's channels, skipping files already there (``--dry-run``: say what)."""
    if dry_run:
        for channel in spec.channels:
            print(
                f"would upload {len(channel.uploads)} files to s3://{spec.bucket}/{channel.prefix}"
            )
        return
    check_streamed_prefixes(aws.client("s3"), spec.bucket, spec.channels)
    print(f"uploading {len(spec.channels)} channels to s3://{spec.bucket}/")
    report = sync(aws.client("s3"), spec.bucket, list(spec.channels))
    print(
        f"uploaded {report.uploaded} files ({report.uploaded_bytes / 1e6:.1f} MB), "
        f"skipped {report.skipped} already there"
    )


def command(args: argparse.Namespace, aws: Aws) -> int:
    """Run ``oic train``: validate locally, upload, create the job, wait and stream its logs."""
    spec = plan_job(args, aws, job_name(args.job_name))
    request = training_job_request(spec)
    upload(aws, spec, args.dry_run)
    if args.dry_run:
        print("CreateTrainingJob " + json.dumps(request, indent=2))
        return 0
    aws.client("sagemaker").create_training_job(**request)
    mode = request["AlgorithmSpecification"]["TrainingInputMode"]
    print(
        f"started training job {spec.name} ({spec.instance_count} x {spec.instance_type}, "
        f"{mode} mode)"
    )
    if args.no_wait:
        print(f"follow it with: oic logs {spec.name}   (or the SageMaker console)")
        return 0
    follow(aws, spec.name, args.poll)
    print(f"next: oic deploy --job-name {spec.name}")
    return 0
