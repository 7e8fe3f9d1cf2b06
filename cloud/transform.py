"""``oic transform``: a batch transform job over a folder of images, one ``.out`` file each.

The images are an S3 prefix, or a local folder uploaded first to a prefix named after the job
(``<prefix>/transform/input/<job name>/``) that then holds exactly the folder's files: the job
transforms what the folder holds, never what an earlier run of the same folder left. Each
image is one request (``application/x-image``, ``SplitType None``, ``BatchStrategy
SingleRecord``), and SageMaker writes the answer to ``OUTPUT/<relative key>.out``: by default the
built-in's JSON Lines, ``{"prediction": [p0, p1, ...]}`` (``--accept application/json``: the bare
list). The model is a SageMaker model (``--model-name``, e.g. made by ``oic deploy``), or one
made here from a completed training job (``--training-job``).

Checked before anything is uploaded or started: every local file is an image the server decodes
and fits ``--max-payload``; every S3 object has an image extension and fits too (one bad file
fails the whole job); the output prefix is outside the input prefix (else the next run would
read the ``.out`` files as images).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from cloud.aws import Aws, check_bucket, check_role, split_s3_uri
from cloud.endpoints import create_model_request, exists, job_model, snake
from cloud.errors import CliError, JobFailed
from cloud.jobs import job_name
from cloud.s3sync import IMAGE, Channel, Upload, sync
from cloud.settings import BUCKET_ENV, check_instance_type, role_from_env
from serve.content_types import JSON, JSONLINES
from train.images import BadImage, image_size
from train.lst import IMAGE_EXTENSIONS

ACCEPTS = (JSONLINES, JSON)
MIB = 1024 * 1024
TERMINAL = ("Completed", "Failed", "Stopped")
LOG_GROUP = "/aws/sagemaker/TransformJobs"


def transform_request(
    name: str,
    model: str,
    input_uri: str,
    output_uri: str,
    resources: tuple[str, int],
    accept: str = JSONLINES,
    max_payload_mb: int = 6,
    max_concurrent: int | None = None,
) -> dict[str, Any]:
    """The exact CreateTransformJob parameters: one request per image file."""
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model,
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": max_payload_mb,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": IMAGE,
            "CompressionType": "None",
            "SplitType": "None",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": accept, "AssembleWith": "None"},
        "TransformResources": {"InstanceType": resources[0], "InstanceCount": resources[1]},
    }
    if max_concurrent:  # else SageMaker asks the container's GET /execution-parameters
        request["MaxConcurrentTransforms"] = max_concurrent
    return request


def local_images(folder: Path, max_payload_mb: int) -> list[Path]:
    """Every file of ``folder`` (hidden ones aside), each an image that fits one request.

    Raises:
        CliError: the folder is missing or empty, or holds files the job would fail on.
    """
    if not folder.is_dir():
        raise CliError(f"{folder} is neither a folder nor an s3:// URI")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    bad = []
    for path in files:
        if path.stat().st_size > max_payload_mb * MIB:
            bad.append(f"{path.relative_to(folder)} (over --max-payload {max_payload_mb} MB)")
            continue
        try:
            image_size(path.read_bytes())
        except BadImage as exc:
            bad.append(f"{path.relative_to(folder)} ({exc})")
    if not files:
        raise CliError(f"{folder} holds no files: put the images to classify in it")
    if bad:
        raise CliError(_refusal(bad, len(files)))
    return files


def _refusal(bad: list[str], total: int) -> str:
    shown = "\n  ".join(bad[:5]) + (f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else "")
    return (
        f"{len(bad)} of {total} input files would fail the transform job (one failed request "
        f"fails it all):\n  {shown}\nMove them out of the input; nothing was uploaded or started."
    )


def check_s3_images(s3: Any, uri: str, max_payload_mb: int) -> int:
    """The number of objects under ``uri``, each with an image extension and small enough."""
    bucket, prefix = split_s3_uri(uri)
    objects = [
        o
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    if not objects:
        raise CliError(f"no objects under {uri}: check the URI (and --region)")
    too_big = [
        f"{o['Key']} (over --max-payload)" for o in objects if o["Size"] > max_payload_mb * MIB
    ]
    not_images = [
        f"{o['Key']} (no image extension)"
        for o in objects
        if not o["Key"].lower().endswith(IMAGE_EXTENSIONS)
    ]
    bad = too_big + not_images
    if bad:
        raise CliError(_refusal(bad, len(objects)))
    return len(objects)


def _bucket(args: argparse.Namespace, aws: Aws) -> str:
    if args.bucket or os.environ.get(BUCKET_ENV):
        return args.bucket or os.environ[BUCKET_ENV]
    account = "<account-id>" if args.dry_run else aws.account_id()
    return f"sagemaker-{aws.session.region_name or '<region>'}-{account}"


def _locations(args: argparse.Namespace, aws: Aws, name: str) -> tuple[str, str, str | None]:
    """Input URI, output URI and the bucket local images go to (None for an S3 input)."""
    source = args.input
    needs_bucket = not source.startswith("s3://") or not args.output
    bucket = _bucket(args, aws) if needs_bucket else None
    if source.startswith("s3://"):
        input_uri = source if source.endswith("/") else source + "/"
    else:
        input_uri = f"s3://{bucket}/{args.prefix}/transform/input/{name}/"
    output_uri = args.output or f"s3://{bucket}/{args.prefix}/transform/output/{name}/"
    if (output_uri.rstrip("/") + "/").startswith(input_uri):
        raise CliError(
            f"the output {output_uri} is inside the input {input_uri}: a later run would read "
            "the .out files as images; pass another --output"
        )
    return input_uri, output_uri, None if source.startswith("s3://") else bucket


def _model(args: argparse.Namespace, aws: Aws, name: str) -> tuple[str, list[tuple[str, dict]]]:
    """The model name, and the CreateModel request when one is made from a training job."""
    if args.model_name:
        if not args.dry_run and not exists(
            aws.client("sagemaker").describe_model, ModelName=args.model_name
        ):
            raise CliError(
                f"no SageMaker model named {args.model_name!r}: `oic deploy` makes one, or "
                "pass --training-job JOB to make it from a training job"
            )
        return args.model_name, []
    if args.dry_run:
        role = args.role or role_from_env() or "arn:aws:iam::<account-id>:role/<--role>"
        image, data = "<image of the job>", f"<model.tar.gz of {args.training_job}>"
    else:
        role = check_role(args.role or role_from_env())
        sm = aws.client("sagemaker")
        image, data = job_model(sm, args.training_job)
        if exists(sm.describe_model, ModelName=name):
            raise CliError(f"a SageMaker model named {name!r} exists: pass another --job-name")
    return name, [("CreateModel", create_model_request(name, image, data, role))]


def command(args: argparse.Namespace, aws: Aws) -> int:
    """Run ``oic transform``."""
    if bool(args.model_name) == bool(args.training_job):
        raise CliError("pass either --model-name MODEL or --training-job JOB")
    instance_type = check_instance_type(args.instance_type)
    name = _job_name(args.job_name)
    local = not args.input.startswith("s3://")
    files = local_images(Path(args.input), args.max_payload) if local else None
    input_uri, output_uri, upload_bucket = _locations(args, aws, name)
    if files is None and not args.dry_run:
        count = check_s3_images(aws.client("s3"), input_uri, args.max_payload)
        print(f"{count} images under {input_uri}")
    model, creates = _model(args, aws, name)
    request = transform_request(
        name,
        model,
        input_uri,
        output_uri,
        (instance_type, args.instance_count),
        args.accept,
        args.max_payload,
        args.max_concurrent_transforms,
    )
    requests = [*creates, ("CreateTransformJob", request)]
    if args.dry_run:
        if files is not None:
            print(f"would upload {len(files)} files to {input_uri}")
        for operation, params in requests:
            print(f"{operation} {json.dumps(params, indent=2)}")
        return 0
    if files is not None:
        _upload(aws, upload_bucket, input_uri, Path(args.input), files, args.max_payload)
    sm = aws.client("sagemaker")
    for operation, params in requests:
        getattr(sm, snake(operation))(**params)
        print(f"{operation}: {params.get('ModelName', name)}")
    if args.no_wait:
        print(f"follow it with: aws sagemaker describe-transform-job --transform-job-name {name}")
        return 0
    wait(sm, name, args.poll)
    _report(aws, output_uri, args.download)
    return 0


def _upload(
    aws: Aws, bucket: str, input_uri: str, folder: Path, files: list[Path], max_payload_mb: int
) -> None:
    """Make ``input_uri`` hold exactly ``files``, and say how many images the job will read."""
    check_bucket(aws.client("s3"), bucket, aws.region)
    prefix = split_s3_uri(input_uri)[1]
    uploads = tuple(Upload(p, prefix + p.relative_to(folder).as_posix()) for p in files)
    channel = Channel("input", prefix, IMAGE, uploads)
    report = sync(aws.client("s3"), bucket, [channel], prune=True)
    print(
        f"uploaded {report.uploaded} images, skipped {report.skipped} already there, "
        f"deleted {report.deleted} not in {folder}"
    )
    count = check_s3_images(aws.client("s3"), input_uri, max_payload_mb)
    if count != len(files):
        raise CliError(
            f"{input_uri} holds {count} objects after uploading {len(files)}: something else "
            "writes there; run again with another --job-name"
        )
    print(f"{count} images under {input_uri}")


def _job_name(given: str | None) -> str:
    return job_name(given or time.strftime("oic-transform-%Y%m%d-%H%M%S", time.gmtime()))


def wait(sm: Any, name: str, poll: float) -> dict[str, Any]:
    """Wait for the transform job to end, printing each status change.

    Raises:
        JobFailed: the job failed or was stopped (with its FailureReason).
    """
    last = None
    while True:
        job = sm.describe_transform_job(TransformJobName=name)
        status = job["TransformJobStatus"]
        if status != last:
            print(f"{name}: {status}")
            last = status
        if status in TERMINAL:
            break
        time.sleep(poll)
    if status != "Completed":
        reason = job.get("FailureReason") or "no reason given"
        raise JobFailed(
            f"transform job {name} {status.lower()}: {reason}\n"
            f"Full logs: CloudWatch log group {LOG_GROUP}, streams {name}/*"
        )
    return job


def _report(aws: Aws, output_uri: str, download: Path | None) -> None:
    """Where the ``.out`` files are; with ``download``, copy them there (same relative paths)."""
    s3 = aws.client("s3")
    bucket, prefix = split_s3_uri(output_uri)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    outs = [
        o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(".out")
    ]
    print(f"results: {output_uri} ({len(outs)} .out files, one per image)")
    if download:
        for key in outs:
            target = download / key[len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
        print(f"downloaded them to {download}")
