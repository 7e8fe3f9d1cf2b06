"""Pure pieces of ``cloud``: image URIs, instance rules, prediction formatting, stop conditions."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from cloud.endpoints import _invoke, format_prediction
from cloud.errors import CliError
from cloud.images import parse_image, registry_host
from cloud.jobs import stopping_condition
from cloud.settings import check_instance_type, load_hyperparameters

URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/oic"


def test_parse_image_reads_registry_repository_and_tag() -> None:
    ref = parse_image(f"{URI}:2026-01-01")
    assert (ref.registry, ref.repository, ref.tag) == (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        "team/oic",
        "2026-01-01",
    )
    assert ref.uri == f"{URI}:2026-01-01"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (URI, "has no tag"),
        ("oic:cpu", "not an ECR image URI"),
        ("docker.io/library/python:3.11", "not an ECR image URI"),
    ],
)
def test_parse_image_refuses_what_sagemaker_cannot_pull_by_tag(uri: str, message: str) -> None:
    with pytest.raises(CliError, match=message):
        parse_image(uri)


def test_parse_image_accepts_a_digest() -> None:
    ref = parse_image(f"{URI}@sha256:{'a' * 64}")
    assert ref.image_id == {"imageDigest": f"sha256:{'a' * 64}"}
    assert ref.uri == f"{URI}@sha256:{'a' * 64}"


def test_registry_host_of_china_regions() -> None:
    assert registry_host("1" * 12, "cn-north-1").endswith(".amazonaws.com.cn")


@pytest.mark.parametrize(
    "instance",
    [
        "ml.g5.xlarge",
        "ml.g4dn.12xlarge",
        "ml.p3.2xlarge",
        "ml.g6e.xlarge",
        "ml.p5.48xlarge",  # Hopper: the PyTorch engine trains, ONNX Runtime serves
        "ml.p5e.48xlarge",
        "ml.p6-b200.48xlarge",
    ],
)
def test_instances_an_engine_can_run_on_are_accepted(instance: str) -> None:
    assert check_instance_type(instance) == instance


@pytest.mark.parametrize(
    ("instance", "why"),
    [
        ("ml.p2.xlarge", "K80"),
        ("ml.g4ad.xlarge", "AMD"),
        ("ml.trn1.2xlarge", "Trainium"),
        ("g5.xlarge", "ml.FAMILY.SIZE"),
    ],
)
def test_instances_it_cannot_run_on_are_refused_with_the_reason(instance: str, why: str) -> None:
    with pytest.raises(CliError, match=why):
        check_instance_type(instance)


def test_stopping_condition_for_spot_jobs() -> None:
    assert stopping_condition(False, 600) == {"MaxRuntimeInSeconds": 600}
    assert stopping_condition(True, 600) == {
        "MaxRuntimeInSeconds": 600,
        "MaxWaitTimeInSeconds": 1200,
    }
    with pytest.raises(CliError, match="must be longer"):
        stopping_condition(True, 600, 500)


def test_hyperparameters_become_strings(tmp_path: Path) -> None:
    path = tmp_path / "hp.json"
    path.write_text('{"epochs": 3, "early_stopping": true, "learning_rate": 0.01}')
    assert load_hyperparameters(path) == {
        "epochs": "3",
        "early_stopping": "true",
        "learning_rate": "0.01",
    }


def test_a_missing_hyperparameters_file_says_where_to_run(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="--hyperparameters FILE"):
        load_hyperparameters(tmp_path / "nope.json")


def test_format_prediction_orders_plain_probabilities() -> None:
    lines = format_prediction([0.2, 0.5, 0.3], ["a", "b", "c"], top_k=2)
    assert [line.split() for line in lines] == [["b", "0.5000"], ["c", "0.3000"]]
    assert format_prediction({"prediction": [0.9, 0.1]}, None, 1)[0].split() == ["0", "0.9000"]


class _RefusingRuntime:
    def invoke_endpoint(self, **_: object) -> None:
        error = {"Code": "ModelError", "Message": "Received client error (415): unsupported"}
        raise ClientError({"Error": error}, "InvokeEndpoint")


def test_a_model_error_is_reported_with_the_servers_message(tmp_path: Path) -> None:
    image = tmp_path / "a.gif"
    image.write_bytes(b"GIF89a")
    with pytest.raises(CliError, match=r"refused .*a.gif: Received client error \(415\)"):
        _invoke(_RefusingRuntime(), image, {"EndpointName": "x"})
