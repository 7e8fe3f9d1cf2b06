"""``oic local``: the same training job through the SageMaker SDK v3's local mode.

``ModelTrainer(training_mode=Mode.LOCAL_CONTAINER)`` writes the ``/opt/ml`` config files and a
compose file, and runs the image on this machine with ``docker compose`` (one container per
``--instance-count``, named ``algo-1``, ``algo-2``, ... on one Docker network), so the cloud
path (channels, string hyperparameters, resourceconfig.json, several hosts) is exercised
without AWS. Needs Docker with Compose v2 or later, and neither credentials nor a region.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cloud.errors import CliError, JobFailed
from cloud.prepare import TRAIN_LST, VALIDATION_LST
from cloud.s3sync import CHANNELS
from cloud.settings import load_hyperparameters
from train.artifacts import CLASSES_FILE

if TYPE_CHECKING:
    from sagemaker.train import ModelTrainer

PLACEHOLDER_ROLE = "arn:aws:iam::111111111111:role/local-mode-needs-no-role"


def local_channels(data: Path, staging: Path) -> dict[str, Path]:
    """Channel name to local folder: channel folders as they are, or the ``prepare`` layout.

    For the ``prepare`` layout the lists are copied into their own small folders (a channel is a
    folder), and both image channels are the data folder itself: the lists pick the images.
    """
    if (data / TRAIN_LST).is_file() and (data / VALIDATION_LST).is_file():
        channels = {"train": data, "validation": data}
        for name, lst in (("train_lst", TRAIN_LST), ("validation_lst", VALIDATION_LST)):
            folder = staging / name
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(data / lst, folder / lst)
            if name == "train_lst" and (data / CLASSES_FILE).is_file():
                shutil.copy2(data / CLASSES_FILE, folder / CLASSES_FILE)
            channels[name] = folder
        return channels
    channels = {name: data / name for name in CHANNELS if (data / name).is_dir()}
    if "train" not in channels:
        raise CliError(
            f"{data} has neither train.lst/validation.lst nor a train/ channel folder: run "
            f"`oic prepare {data}` or lay it out as channels (train/, validation/, ...)"
        )
    return channels


def check_local_image(image: str) -> None:
    """Fail clearly when the image tag is not in the local Docker engine."""
    try:
        found = subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise CliError("docker is not installed or not on PATH: local mode needs Docker") from None
    if found.returncode != 0:
        raise CliError(
            f"image {image!r} is not in the local Docker engine: build it first (`docker compose "
            f"build`, or `docker compose --profile cpu build` for oic:cpu), or pass --image"
        )


def make_trainer(
    image: str,
    hyperparameters: dict[str, str],
    instance_type: str,
    count: int,
    root: Path,
    name: str,
) -> ModelTrainer:
    """The SDK v3 ``ModelTrainer`` for a local run (imported here: the SDK is slow to import)."""
    from sagemaker.core.training.configs import Compute
    from sagemaker.train import ModelTrainer
    from sagemaker.train.model_trainer import Mode

    return ModelTrainer(
        training_image=image,
        training_mode=Mode.LOCAL_CONTAINER,
        compute=Compute(instance_type=instance_type, instance_count=count),
        hyperparameters=hyperparameters,
        role=PLACEHOLDER_ROLE,
        base_job_name=name,
        local_container_root=str(root),
    )


def command(args: argparse.Namespace) -> int:
    """Run ``oic local``."""
    hyperparameters = load_hyperparameters(args.hyperparameters)
    name = args.job_name or time.strftime("oic-local-%Y%m%d-%H%M%S", time.gmtime())
    root = (args.root or Path("output/local") / name).resolve()
    instance_type = "local_gpu" if args.gpu else "local_cpu"
    if args.gpu and args.instance_count > 1:
        raise CliError("the SDK's local mode runs several hosts on the CPU only: drop --gpu")
    image = args.image or ("oic:gpu" if args.gpu else "oic:cpu")
    channels = local_channels(args.data.resolve(), root / "channels")
    if args.dry_run:
        print(
            f"ModelTrainer(training_image={image!r}, training_mode=LOCAL_CONTAINER, "
            f"compute=Compute(instance_type={instance_type!r}, instance_count="
            f"{args.instance_count}), hyperparameters={hyperparameters}, "
            f"local_container_root={str(root)!r})"
        )
        print("train(input_data_config=" + str({k: str(v) for k, v in channels.items()}) + ")")
        return 0
    check_local_image(image)
    from sagemaker.core.training.configs import InputData

    trainer = make_trainer(image, hyperparameters, instance_type, args.instance_count, root, name)
    inputs = [InputData(channel_name=k, data_source=str(v)) for k, v in channels.items()]
    try:
        trainer.train(input_data_config=inputs, wait=True)
    except RuntimeError as exc:  # the SDK raises this when docker compose exits non-zero
        raise JobFailed(f"local training failed: {exc}. The container's log is above.") from None
    print(
        f"model: {root / 'artifacts' / 'model'}\n"
        f"model.tar.gz: {root / 'compressed_artifacts' / 'model.tar.gz'}"
    )
    return 0
