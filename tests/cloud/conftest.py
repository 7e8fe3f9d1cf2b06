"""Fixtures for the cloud tests: a moto server on loopback, and a boto3 session that records
every request and refuses any that would leave this machine. No test touches AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tests.datagen import make_class_folders
from tests.ports import free_port

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
ROLE = f"arn:aws:iam::{ACCOUNT}:role/oic-test"
BUCKET = "oic-test-bucket"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/oic:v1"
HYPERPARAMETERS = {
    "num_layers": "18",
    "epochs": "2",
    "mini_batch_size": "8",
    "learning_rate": "0.01",
    "image_shape": "3,32,32",
    "resize": "36",
    "use_pretrained_model": "0",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cloud/" in str(item.fspath):
            item.add_marker(pytest.mark.cloud)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server in this process (so tests can reach its backends), on a loopback port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@dataclass
class Recorder:
    """Every API call made through the session: (service, operation, parameters)."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.service_model.service_name, model.name, dict(params)))

    def ops(self, service: str | None = None) -> list[str]:
        return [op for svc, op, _ in self.calls if service in (None, svc)]

    def params(self, operation: str) -> list[dict[str, Any]]:
        return [p for _, op, p in self.calls if op == operation]


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Environment for boto3: the emulator's endpoint, dummy credentials, no AWS config files."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "OIC_ROLE", "OIC_BUCKET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    requests.post(f"{moto_url}/moto-api/reset", timeout=10)
    return moto_url


def _loopback_only(request: Any, **_: Any) -> None:
    if not request.url.startswith("http://127.0.0.1:"):
        raise AssertionError(f"a request tried to leave this machine: {request.url}")


@pytest.fixture
def session(aws_env: str) -> boto3.Session:
    """The session handed to ``cloud.cli.main``; see :func:`recorder`."""
    sess = boto3.Session(region_name=REGION)
    sess.events.register("before-send", _loopback_only)
    return sess


@pytest.fixture
def recorder(session: boto3.Session) -> Recorder:
    """Records every call made through ``session`` from now on."""
    rec = Recorder()
    session.events.register("before-parameter-build", rec)
    return rec


@pytest.fixture
def setup_client(aws_env: str) -> Any:
    """Clients for setting the emulator up (not recorded)."""
    sess = boto3.Session(region_name=REGION)
    sess.events.register("before-send", _loopback_only)
    return sess.client


@pytest.fixture
def bucket(setup_client: Any) -> str:
    setup_client("s3").create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
def pushed_image(setup_client: Any) -> str:
    """``oic:v1`` in the emulator's ECR."""
    ecr = setup_client("ecr")
    ecr.create_repository(repositoryName="oic")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1,
            "digest": "sha256:" + "0" * 64,
        },
        "layers": [],
    }
    ecr.put_image(repositoryName="oic", imageManifest=json.dumps(manifest), imageTag="v1")
    return IMAGE


@pytest.fixture
def trained_job(setup_client: Any) -> str:
    """A Completed training job in the emulator."""
    setup_client("sagemaker").create_training_job(
        TrainingJobName="job-1",
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/oic/output"},
        ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    return "job-1"


@pytest.fixture
def hyperparameters_file(tmp_path: Path) -> Path:
    path = tmp_path / "hyperparameters.json"
    path.write_text(json.dumps(HYPERPARAMETERS))
    return path


@pytest.fixture
def prepared_data(tmp_path: Path) -> Path:
    """Three class folders of 5 images each, plus the lists of ``oic prepare``."""
    from cloud.prepare import prepare

    data = tmp_path / "pets"
    make_class_folders(data, num_classes=3, per_class=5, size_range=(36, 44))
    prepare(data, fraction=0.2, seed=0, min_per_class=2)
    return data
