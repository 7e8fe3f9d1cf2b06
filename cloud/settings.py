"""Defaults of the cloud workflow, instance-type rules and the shared hyperparameters file.

The hyperparameters come from the same ``config/hyperparameters.json`` that ``docker compose``
mounts, validated by the trainer's own parser before anything is uploaded or created.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cloud.errors import CliError
from train import json_input
from train.config import parse_hyperparameters
from train.errors import ClientError

HYPERPARAMETERS_FILE = Path("config/hyperparameters.json")
REPOSITORY = "oic"  # ECR repository name
DEFAULT_TAG = "latest"
DEFAULT_PREFIX = "oic"  # S3 key prefix for data, outputs and checkpoints
TRAIN_INSTANCE = "ml.g5.xlarge"  # A10G: sm_86, which MXNet 1.9.1's CUDA wheels run
ENDPOINT_INSTANCE = "ml.g4dn.xlarge"  # T4: the cheapest GPU endpoint these wheels run
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
ROLE_ENV = ("OIC_ROLE", "SAGEMAKER_ROLE")
BUCKET_ENV = "OIC_BUCKET"

# Instance families the image cannot run on, and why. Maxwell to Ada GPUs train with MXNet
# 1.9.1, Hopper and Blackwell (ml.p5, ml.p5e, ml.p5en, ml.p6) with the PyTorch engine and serve
# with ONNX Runtime (train/engines/__init__.py, serve/backends.py); Kepler runs neither.
UNSUPPORTED_FAMILIES = {
    "ml.p2": "its K80 GPUs (compute capability 3.7) are older than both training engines "
    "support (MXNet 1.9.1: 5.0 to 8.9; PyTorch: 7.0 and newer)",
    "ml.g4ad": "its AMD GPUs are not CUDA devices",
    "ml.trn1": "Trainium is not a CUDA device",
    "ml.trn2": "Trainium is not a CUDA device",
    "ml.inf1": "Inferentia is not a CUDA device",
    "ml.inf2": "Inferentia is not a CUDA device",
}
SUPPORTED_HINT = (
    "ml.g4dn, ml.g5, ml.g6, ml.g6e, ml.p3, ml.p4d (MXNet) or ml.p5, ml.p5e, ml.p5en, ml.p6 "
    "(PyTorch) (e.g. ml.g5.xlarge)"
)


def check_instance_type(instance_type: str) -> str:
    """``instance_type`` if this image can run on it, else a :class:`CliError` saying why."""
    family = instance_type.rsplit(".", 1)[0]
    if not instance_type.startswith("ml.") or family == instance_type:
        raise CliError(f"instance type {instance_type!r} is not of the form ml.FAMILY.SIZE")
    reason = UNSUPPORTED_FAMILIES.get(family)
    if reason:
        raise CliError(f"{instance_type} cannot run this image: {reason}. Use {SUPPORTED_HINT}.")
    return instance_type


def load_hyperparameters(path: Path) -> dict[str, str]:
    """The hyperparameters file as SageMaker's string map, validated by the trainer's parser.

    Raises:
        CliError: the file is missing or not a JSON object, or a key or value is invalid.
    """
    if not path.is_file():
        raise CliError(
            f"hyperparameters file {path} not found: run from the project folder (where "
            "docker-compose.yml is) or pass --hyperparameters FILE"
        )
    try:
        raw = json_input.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CliError(f"{path} must hold a JSON object of name: value pairs")
    values = {str(k): _as_string(v) for k, v in raw.items()}
    try:
        parse_hyperparameters(values)
    except ClientError as exc:
        raise CliError(f"{path}: {exc}. Fix the file; nothing was uploaded or started.") from None
    return values


def _as_string(value: object) -> str:
    """SageMaker sends strings; booleans as ``true``/``false`` like SDK v3."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def role_from_env() -> str | None:
    """The execution role from ``OIC_ROLE`` or ``SAGEMAKER_ROLE``."""
    return next((os.environ[k] for k in ROLE_ENV if os.environ.get(k)), None)
