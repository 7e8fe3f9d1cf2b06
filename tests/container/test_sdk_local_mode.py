"""The SageMaker Python SDK v3's local mode, a client this project does not write, drives the image.

``ModelTrainer(training_mode=Mode.LOCAL_CONTAINER)`` trains on generated data exactly as a
training job would (config files, four channels, string hyperparameters, no ``train`` argument),
then ``sagemaker.core.local.LocalSession`` serves the resulting model.tar.gz with ``serve`` on
port 8080 and answers an image request. Offline: a region, no credentials, telemetry opted out
(see the team's sagemaker-sdk reference, section 2.6).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.container.conftest import SMALL_HYPERPARAMETERS
from tests.datagen import make_image, make_sagemaker_tree, write_jpeg
from tests.ports import free_port

NUM_CLASSES = 3
CHANNELS = ("train", "validation", "train_lst", "validation_lst")
pytestmark = pytest.mark.timeout(900)  # a hung container must not hang the suite

TELEMETRY_OPT_OUT = (
    "SchemaVersion: '1.0'\nSageMaker: {PythonSDK: {Modules: {TelemetryOptOut: true}}}\n"
)


@pytest.fixture(scope="module")
def sdk_offline(tmp_path_factory) -> Any:
    """The SDK's offline recipe: any region, no credentials, no IMDS probe, no telemetry."""
    config = tmp_path_factory.mktemp("smcfg") / "config.yaml"
    config.write_text(TELEMETRY_OPT_OUT)
    patch = pytest.MonkeyPatch()
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    patch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    for key in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
    ):
        patch.delenv(key, raising=False)
    yield
    patch.undo()


def generated_channels(root: Path, **kwargs: Any) -> dict[str, Path]:
    """The built-in's four lst-format channels with generated images; name -> folder."""
    base = make_sagemaker_tree(root, num_classes=NUM_CLASSES, **kwargs)
    return {name: base / "input" / "data" / name for name in CHANNELS}


def unique(name: str) -> str:
    """A folder name for ``local_container_root``: compose names the project after it, so two
    test sessions on one Docker engine must not share it."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def compose_down(root: Path) -> None:
    """Remove the SDK's containers even when the test failed or timed out mid-run."""
    compose_file = root / "docker-compose.yaml"
    if compose_file.is_file():
        subprocess.run(
            ["docker", "compose", "-f", str(compose_file), "down", "--timeout", "0"],
            capture_output=True,
            timeout=120,
            check=False,
        )


def train_local(
    image: str,
    channels: dict[str, Path],
    hyperparameters: dict[str, str],
    root: Path,
    instance_count: int = 1,
) -> Path:
    """Train with SDK v3's ModelTrainer in LOCAL_CONTAINER mode; return the artifacts folder."""
    from sagemaker.core.training.configs import Compute, InputData
    from sagemaker.train import ModelTrainer
    from sagemaker.train.model_trainer import Mode

    trainer = ModelTrainer(
        training_image=image,
        training_mode=Mode.LOCAL_CONTAINER,
        compute=Compute(instance_type="local_cpu", instance_count=instance_count),
        hyperparameters=hyperparameters,
        role="arn:aws:iam::111111111111:role/local",
        base_job_name="oic-sdk-test",
        local_container_root=str(root),
    )
    try:
        trainer.train(
            input_data_config=[
                InputData(channel_name=k, data_source=str(v)) for k, v in channels.items()
            ],
            wait=True,
        )
    finally:
        compose_down(root)
    return root


@pytest.fixture(scope="module")
def sdk_trained(cpu_image, sdk_offline, tmp_path_factory) -> Path:
    """A small model trained through ModelTrainer local mode; returns local_container_root."""
    work = tmp_path_factory.mktemp("sdk-local")
    channels = generated_channels(work / "data")
    hps = {**SMALL_HYPERPARAMETERS, "num_classes": str(NUM_CLASSES)}
    return train_local(cpu_image, channels, hps, work / unique("sdk-train"))


def test_model_trainer_local_mode_trains_the_model(sdk_trained: Path) -> None:
    model = sdk_trained / "artifacts" / "model"
    names = {p.name for p in model.iterdir()}
    assert {"image-classification-symbol.json", "model-shapes.json", "classes.json"} <= names
    assert any(n.startswith("image-classification-") and n.endswith(".params") for n in names)
    assert (sdk_trained / "compressed_artifacts" / "model.tar.gz").is_file()
    classes = json.loads((model / "classes.json").read_text())["classes"]
    assert classes == [f"class_{k}" for k in range(NUM_CLASSES)]


def test_local_session_endpoint_serves_the_model(sdk_trained: Path, cpu_image, tmp_path) -> None:
    import random

    from sagemaker.core.local import LocalSession

    session = LocalSession()
    session.config = {"local": {"serving_port": free_port()}}
    sm, name = session.sagemaker_client, f"oic-{uuid.uuid4().hex[:8]}"
    tarball = sdk_trained / "compressed_artifacts" / "model.tar.gz"
    sm.create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": cpu_image,
            "ModelDataUrl": f"file://{tarball}",
            "Environment": {},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "local",
            }
        ],
    )
    try:
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)  # waits for /ping 200
        image = tmp_path / "class_1.jpg"
        write_jpeg(image, make_image(1, random.Random(5)))
        runtime = session.sagemaker_runtime_client
        plain = runtime.invoke_endpoint(
            EndpointName=name,
            Body=image.read_bytes(),
            ContentType="application/x-image",
            Accept="application/json",
        )
        probabilities = json.loads(plain["Body"].read())
        assert len(probabilities) == NUM_CLASSES
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-3)
        verbose = runtime.invoke_endpoint(
            EndpointName=name,
            Body=image.read_bytes(),
            ContentType="application/x-image",
            Accept="application/json",
            CustomAttributes="top_k=2",
        )
        record = json.loads(verbose["Body"].read())
        assert [c["label"] for c in record["top_k"]][0] in {f"class_{k}" for k in range(3)}
        assert record["prediction"] == pytest.approx(probabilities, abs=1e-5)
    finally:
        sm.delete_endpoint(EndpointName=name)


def oic_local_args(data: Path, image: str, root: Path) -> list[str]:
    """``oic local`` arguments, with the small hyperparameters written beside ``root``."""
    hps = root.parent / "hyperparameters.json"
    hps.write_text(json.dumps(SMALL_HYPERPARAMETERS))
    return [
        "local",
        "--data",
        str(data),
        "--hyperparameters",
        str(hps),
        "--image",
        image,
        "--root",
        str(root),
    ]


def test_oic_local_runs_the_same_training_through_the_sdk(
    cpu_image, sdk_offline, tmp_path, capsys
) -> None:
    """``oic local`` on the output of ``oic prepare`` (class folders + lists)."""
    from cloud.cli import main
    from tests.datagen import make_class_folders

    data = tmp_path / "pets"
    make_class_folders(data, num_classes=NUM_CLASSES, per_class=12, size_range=(40, 56))
    assert main(["prepare", str(data)]) == 0
    root = tmp_path / unique("oic-local")
    assert main(oic_local_args(data, cpu_image, root)) == 0, capsys.readouterr().err
    assert (
        f"model.tar.gz: {root / 'compressed_artifacts' / 'model.tar.gz'}" in capsys.readouterr().out
    )
    classes = json.loads((root / "artifacts" / "model" / "classes.json").read_text())["classes"]
    assert classes == [f"class_{k}" for k in range(NUM_CLASSES)]


def test_oic_local_refuses_a_missing_image_tag(docker_engine, sdk_offline, tmp_path, capsys):
    from cloud.cli import main

    channels = generated_channels(tmp_path / "data", train_per_class=4, val_per_class=2)
    args = oic_local_args(channels["train"].parent, "oic:no-such-tag", tmp_path / unique("x"))
    assert main(args) == 2
    assert "image 'oic:no-such-tag' is not in the local Docker engine" in capsys.readouterr().err
