"""``oic``: the command line of the cloud path (the argument parser and the dispatch, nothing else).

Each sub-command lives in its own module: ``prepare`` (lists from class folders), ``images``
(``push``), ``jobs`` (``train``; its inputs in ``inputs`` and ``manifests``), ``joblogs``
(``logs``), ``tuning`` (``tune``; ranges in ``tuning_ranges``), ``transform``, ``endpoints``
(``deploy``, ``predict``, ``delete``) and ``local`` (SDK local mode); option groups several
commands share are in ``options``. Errors print one message saying what to do, and exit 2 (fix
something first) or 1 (a job ran and failed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import boto3

from cloud import (
    endpoints,
    images,
    joblogs,
    jobs,
    local,
    options,
    prepare,
    transform,
    tuning,
    tuning_ranges,
)
from cloud.aws import Aws
from cloud.errors import CliError, explain
from cloud.options import data_and_hyperparameters, job_options, positive
from cloud.settings import DEFAULT_PREFIX, DEFAULT_TAG, ENDPOINT_INSTANCE, REPOSITORY
from train.errors import ClientError

EPILOG = """workflow:
  oic prepare data/            # train.lst / validation.lst / classes.json from class folders
  oic push                     # docker build + push to ECR (repository created if missing)
  oic train --data data/ --role arn:aws:iam::ACCOUNT:role/NAME
  oic deploy --job-name JOB --role arn:aws:iam::ACCOUNT:role/NAME
  oic predict --endpoint-name JOB cat.jpg
  oic delete JOB
  oic tune --data data/ --role ...        # hyperparameter tuning, objective validation:accuracy
  oic transform s3://BUCKET/images/ --model-name JOB   # batch transform: one .out per image
  oic local --data data/       # the same training through the SageMaker SDK's local mode
Every command takes --dry-run (print the requests, send nothing) and --help."""


def _add_prepare(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "prepare",
        parents=[common],
        help="make train/validation .lst files",
        description=prepare.__doc__,
    )
    p.add_argument("data", type=Path, help="folder with one sub-folder of images per class")
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="share of each class held out (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default: %(default)s)")
    p.add_argument(
        "--min-per-class",
        type=int,
        default=2,
        help="fail when a class has fewer images (at least 2; default: %(default)s)",
    )
    p.set_defaults(run=lambda a, _aws: prepare.command(a))


def _add_push(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "push",
        parents=[common],
        help="build the image and push it to ECR",
        description=images.__doc__,
    )
    p.add_argument("--repository", default=REPOSITORY, help="ECR repository (default: %(default)s)")
    p.add_argument("--tag", default=DEFAULT_TAG, help="image tag (default: %(default)s)")
    p.add_argument("--dockerfile", default="Dockerfile.gpu", help="default: %(default)s")
    p.add_argument("--context", default=".", help="docker build context (default: %(default)s)")
    p.add_argument(
        "--build-arg",
        action="append",
        metavar="NAME=VALUE",
        help="passed to docker build (repeatable)",
    )
    p.add_argument("--no-build", action="store_true", help="push an image already built")
    p.set_defaults(run=images.command)


def _add_train(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "train",
        parents=[common],
        help="upload data and run a training job",
        description=jobs.__doc__,
    )
    job_options(p)
    p.add_argument("--job-name", help="default: oic-YYYYmmdd-HHMMSS")
    p.add_argument("--no-wait", action="store_true", help="start the job and return")
    p.add_argument("--poll", type=float, default=15.0, help=argparse.SUPPRESS)
    p.set_defaults(run=jobs.command)


def _add_tune(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tune",
        parents=[common],
        help="hyperparameter tuning job (objective validation:accuracy)",
        description=tuning.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    job_options(p)
    p.add_argument("--job-name", help="tuning job, at most 32 characters (default: oic-tune-…)")
    p.add_argument(
        "--tune",
        metavar="NAME,NAME",
        help=f"built-in ranges to tune (default: all of {', '.join(tuning_ranges.BUILTIN_RANGES)})",
    )
    p.add_argument(
        "--range",
        action="append",
        metavar="NAME=MIN:MAX[:SCALING]|NAME=A,B",
        help="change or add a range, e.g. learning_rate=0.001:0.1:log (repeatable)",
    )
    p.add_argument("--strategy", choices=tuning.STRATEGIES, default="Bayesian")
    p.add_argument("--max-jobs", type=positive, default=10, help="training jobs (default: 10)")
    p.add_argument("--max-parallel-jobs", type=positive, default=2, help="at once (default: 2)")
    p.add_argument("--early-stopping", action="store_true", help="let SageMaker stop poor jobs")
    p.add_argument("--no-wait", action="store_true", help="start the tuning job and return")
    p.add_argument("--poll", type=float, default=60.0, help=argparse.SUPPRESS)
    p.set_defaults(run=tuning.command)


def _add_transform(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "transform",
        parents=[common],
        help="batch transform: classify a folder of images, one .out file each",
        description=transform.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="s3://BUCKET/PREFIX/ of images, or a local folder")
    p.add_argument("--model-name", help="a SageMaker model (e.g. the name `oic deploy` used)")
    p.add_argument("--training-job", help="or: make the model from this Completed training job")
    p.add_argument("--role", help="for --training-job: execution role ARN (default: $OIC_ROLE)")
    p.add_argument(
        "--output", help="S3 URI of the .out files (default: PREFIX/transform/output/JOB/)"
    )
    p.add_argument(
        "--bucket", help="for a local folder or the default output (default: $OIC_BUCKET)"
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="S3 key prefix (default: %(default)s)")
    p.add_argument("--job-name", help="default: oic-transform-YYYYmmdd-HHMMSS")
    p.add_argument("--instance-type", default=ENDPOINT_INSTANCE, help="default: %(default)s")
    p.add_argument("--instance-count", type=positive, default=1, help="default: 1")
    p.add_argument("--accept", choices=transform.ACCEPTS, default=transform.ACCEPTS[0])
    p.add_argument(
        "--max-payload", type=positive, default=6, help="MB per image (default: %(default)s)"
    )
    p.add_argument(
        "--max-concurrent-transforms",
        type=positive,
        help="requests at once per instance (default: the container's /execution-parameters)",
    )
    p.add_argument("--download", type=Path, metavar="DIR", help="copy the .out files here")
    p.add_argument("--no-wait", action="store_true", help="start the job and return")
    p.add_argument("--poll", type=float, default=30.0, help=argparse.SUPPRESS)
    p.set_defaults(run=transform.command)


def _add_logs(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("logs", parents=[common], help="follow a training job to its end")
    p.add_argument("job_name")
    p.add_argument("--poll", type=float, default=15.0, help=argparse.SUPPRESS)
    p.set_defaults(run=joblogs.logs_command)


def _add_deploy(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "deploy",
        parents=[common],
        help="endpoint from a training job's model",
        description=endpoints.__doc__,
    )
    p.add_argument("--job-name", required=True, help="a Completed training job")
    p.add_argument("--endpoint-name", help="default: the job name")
    p.add_argument("--role", help="SageMaker execution role ARN (default: $OIC_ROLE)")
    p.add_argument("--image", help="serving image (default: the job's training image)")
    p.add_argument("--instance-type", default=ENDPOINT_INSTANCE, help="default: %(default)s")
    p.add_argument("--instance-count", type=positive, default=1, help="default: 1")
    p.add_argument("--no-wait", action="store_true", help="do not wait for InService")
    p.add_argument("--poll", type=float, default=30.0, help=argparse.SUPPRESS)
    p.set_defaults(run=endpoints.deploy)


def _add_predict(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("predict", parents=[common], help="classify image files on an endpoint")
    p.add_argument("files", type=Path, nargs="+", metavar="FILE")
    p.add_argument("--endpoint-name", required=True)
    p.add_argument("--top-k", type=positive, default=3, help="classes to print (default: 3)")
    p.add_argument(
        "--classes",
        type=Path,
        help="classes.json/.txt, for endpoints that return only probabilities",
    )
    p.set_defaults(run=endpoints.predict)


def _add_delete(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("delete", parents=[common], help="delete an endpoint, its config, model")
    p.add_argument("endpoint_name")
    p.add_argument("--keep-model", action="store_true", help="keep the SageMaker model")
    p.set_defaults(run=endpoints.delete)


def _add_local(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "local",
        parents=[common],
        help="train through the SDK's local mode",
        description=local.__doc__,
    )
    data_and_hyperparameters(p)
    p.add_argument("--image", help="local image tag (default: oic:cpu, or oic:gpu with --gpu)")
    p.add_argument("--gpu", action="store_true", help="instance_type local_gpu")
    p.add_argument("--instance-count", type=positive, default=1, help="containers (default: 1)")
    p.add_argument("--job-name", help="default: oic-local-YYYYmmdd-HHMMSS")
    p.add_argument("--root", type=Path, help="working folder (default: output/local/JOB)")
    p.set_defaults(run=lambda a, _aws: local.command(a))


def build_parser() -> argparse.ArgumentParser:
    """The ``oic`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="oic",
        description="Train and serve the image classifier on SageMaker (BYOC) from one CLI.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = options.common()
    for add in (
        _add_prepare,
        _add_push,
        _add_train,
        _add_logs,
        _add_tune,
        _add_transform,
        _add_deploy,
        _add_predict,
        _add_delete,
        _add_local,
    ):
        add(sub, common)
    return parser


def main(argv: list[str] | None = None, session: boto3.Session | None = None) -> int:
    """Run ``oic``; ``session`` lets tests hand in a boto3 session (e.g. for an emulator)."""
    args = build_parser().parse_args(argv)
    try:
        aws = Aws(session) if session else Aws.from_args(args.profile, args.region)
        return args.run(args, aws)
    except (CliError, ClientError) as exc:  # ClientError: the trainer's checks of the input
        print(f"oic {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except Exception as exc:
        known = explain(exc)
        if known is None:
            raise
        print(f"oic {args.command}: error: {known}", file=sys.stderr)
        return known.exit_code


if __name__ == "__main__":
    sys.exit(main())
