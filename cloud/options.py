"""Option groups that several ``oic`` commands share (``train`` and ``tune`` start the same
training jobs; ``local`` reads the same data and hyperparameters)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cloud.inputs import INPUT_MODES
from cloud.manifests import LABEL_FORMATS
from cloud.settings import DEFAULT_PREFIX, DEFAULT_TAG, HYPERPARAMETERS_FILE, TRAIN_INSTANCE


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def common() -> argparse.ArgumentParser:
    """``--region``, ``--profile`` and ``--dry-run``, on every command."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--region", help="AWS region (default: AWS_DEFAULT_REGION / ~/.aws)")
    parser.add_argument("--profile", help="AWS profile (default: AWS_PROFILE / default)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the requests it would send, send nothing"
    )
    return parser


def data_and_hyperparameters(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    """``--data`` and ``--hyperparameters``."""
    p.add_argument(
        "--data",
        type=Path,
        required=data_required,
        help="output of `oic prepare`, or a folder of channel folders",
    )
    p.add_argument(
        "--hyperparameters",
        type=Path,
        default=HYPERPARAMETERS_FILE,
        help="JSON file of string hyperparameters, the one compose uses (default: %(default)s)",
    )


def input_options(p: argparse.ArgumentParser) -> None:
    """Input mode and augmented manifests (see :mod:`cloud.inputs`)."""
    group = p.add_argument_group("input mode and augmented manifests")
    group.add_argument(
        "--input-mode",
        choices=sorted(INPUT_MODES),
        default="file",
        help="pipe: stream train/validation .rec files or manifests (default: %(default)s)",
    )
    group.add_argument(
        "--manifest", type=Path, help="augmented manifest (JSON Lines) of the train channel"
    )
    group.add_argument(
        "--validation-manifest", type=Path, help="augmented manifest of the validation channel"
    )
    group.add_argument(
        "--attribute-names",
        metavar="IMAGE,LABEL",
        help="the manifests' image attribute, then label attribute, e.g. source-ref,class",
    )
    group.add_argument(
        "--label-format",
        choices=LABEL_FORMATS,
        help="multi-label manifests: multi-hot [1,0,1] (the default) or class ids [0,2]",
    )


def job_options(p: argparse.ArgumentParser) -> None:
    """Where a training job runs and what it reads: ``train`` and ``tune``."""
    data_and_hyperparameters(p, data_required=False)
    input_options(p)
    p.add_argument("--role", help="SageMaker execution role ARN (default: $OIC_ROLE)")
    p.add_argument("--bucket", help="S3 bucket (default: $OIC_BUCKET or sagemaker-REGION-ACCOUNT)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="S3 key prefix (default: %(default)s)")
    p.add_argument("--dataset", help="data set name under PREFIX/data/ (default: folder name)")
    p.add_argument("--image", help="ECR image URI with tag (default: ACCOUNT's oic:TAG)")
    p.add_argument(
        "--tag", default=DEFAULT_TAG, help="tag of the default image (default: %(default)s)"
    )
    p.add_argument("--instance-type", default=TRAIN_INSTANCE, help="default: %(default)s")
    p.add_argument(
        "--instance-count",
        type=int,
        default=1,
        help="hosts; more than 1 trains on MXNet's parameter server (set kv_store)",
    )
    p.add_argument("--volume-size", type=int, default=50, help="GB per host (default: 50)")
    p.add_argument("--max-runtime", type=int, default=24 * 3600, help="seconds (default: 1 day)")
    p.add_argument("--spot", action="store_true", help="managed spot training, with checkpoints")
    p.add_argument("--max-wait", type=int, help="spot: seconds incl. waiting (default: 2x runtime)")
    p.add_argument(
        "--checkpoint-uri",
        help="S3 URI for checkpoints (default with --spot: OUTPUT/JOB/checkpoints)",
    )
