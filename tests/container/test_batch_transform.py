"""Batch transform through the SageMaker SDK v3's local mode, a client this project does not write.

``sagemaker.core.local.LocalSession`` runs the CPU image with ``serve``, asks it for
``GET /execution-parameters``, then posts every image of a folder and writes one ``.out`` file
per image, as SageMaker's batch transform does. The request is exactly the one ``oic transform``
sends (``cloud.transform.transform_request``: ``application/x-image``, ``SplitType None``,
``BatchStrategy SingleRecord``, the SDK's own mapping to ``SAGEMAKER_BATCH_STRATEGY``), with
``file://`` input and output. Each ``.out`` must equal the real-time endpoint's answer for the
same image. Offline: a region, no credentials, telemetry opted out.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import uuid
from pathlib import Path

import cv2
import pytest

from cloud.transform import transform_request
from tests.container.test_sdk_local_mode import NUM_CLASSES, sdk_offline  # noqa: F401 - fixture
from tests.ports import free_port

pytestmark = [pytest.mark.usefixtures("sdk_offline"), pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def model_tarball(trained_model, tmp_path_factory) -> Path:
    """The session's small trained model as the model.tar.gz SageMaker would hand over."""
    base, result = trained_model
    assert result.code == 0, result.log[-4000:]
    tarball = tmp_path_factory.mktemp("transform-model") / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for path in sorted((base / "model").iterdir()):
            tar.add(path, arcname=path.name)
    return tarball


def input_folder(validation: Path, folder: Path) -> list[str]:
    """Two validation images per class, one of them re-encoded as PNG.

    All at the top of the folder: the SDK's local mode reads only a ``file://`` folder's own
    files (``LocalFileDataSource.get_file_list``), where SageMaker reads every object under the
    prefix.
    """
    names = []
    for k in range(NUM_CLASSES):
        first, second = sorted((validation / f"class_{k}").glob("*.jpg"))[:2]
        shutil.copy(first, folder / f"class_{k}.jpg")
        cv2.imwrite(str(folder / f"class_{k}.png"), cv2.imread(str(second)))
        names += [f"class_{k}.jpg", f"class_{k}.png"]
    return names


def _local_model(sm, name: str, image: str, tarball: Path) -> None:
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": image, "ModelDataUrl": f"file://{tarball}", "Environment": {}},
    )


def _endpoint_answers(session, sm, name: str, folder: Path, names: list[str]) -> dict[str, dict]:
    """What the real-time endpoint answers for each image, with the transform's Accept."""
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
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    try:
        answers = {}
        for rel in names:
            reply = session.sagemaker_runtime_client.invoke_endpoint(
                EndpointName=name,
                Body=(folder / rel).read_bytes(),
                ContentType="application/x-image",
                Accept="application/jsonlines",
            )
            answers[rel] = json.loads(reply["Body"].read())
        return answers
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_sdk_local_batch_transform_writes_the_endpoints_answers(
    cpu_image, trained_model, model_tarball, tmp_path
) -> None:
    from sagemaker.core.local import LocalSession

    folder, output = tmp_path / "images", tmp_path / "results"
    folder.mkdir()
    names = input_folder(trained_model[0] / "input" / "data" / "validation", folder)
    session = LocalSession()
    session.config = {"local": {"serving_port": free_port()}}
    sm, name = session.sagemaker_client, f"oic-bt-{uuid.uuid4().hex[:8]}"
    _local_model(sm, name, cpu_image, model_tarball)
    request = transform_request(name, name, f"file://{folder}", f"file://{output}", ("local", 1))
    assert request["BatchStrategy"] == "SingleRecord"
    sm.create_transform_job(**request)  # runs the whole job, then stops the container
    assert sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] == "Completed"

    written = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    assert written == sorted(f"{rel}.out" for rel in names)
    expected = _endpoint_answers(session, sm, name, folder, names)
    for rel in names:
        lines = (output / f"{rel}.out").read_text().splitlines()
        assert len(lines) == 1, f"{rel}.out holds {len(lines)} lines"
        record = json.loads(lines[0])
        assert set(record) == {"prediction"}
        assert len(record["prediction"]) == NUM_CLASSES
        assert sum(record["prediction"]) == pytest.approx(1.0, abs=1e-3)
        assert record["prediction"] == pytest.approx(expected[rel]["prediction"], abs=1e-5)
