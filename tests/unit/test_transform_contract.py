"""The batch transform contract without Docker: the SageMaker SDK's own local-mode code (a client
this project does not write) turns the request ``oic transform`` sends into the container's
environment and request bodies; the server must accept both and answer the built-in's JSON Lines.

The full run, through ``docker compose`` and the real image, is
``tests/container/test_batch_transform.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from cloud.transform import transform_request
from serve.app import create_app
from serve.predictor import ModelInfo
from serve.settings import Settings

PROBS = np.array([0.25, 0.6, 0.15], dtype=np.float32)


class FakePredictor:
    info = ModelInfo((3, 32, 32), 36, ("a", "b", "c"), False)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.tile(PROBS, (len(batch), 1))


@pytest.fixture(scope="module")
def sdk_local() -> SimpleNamespace:
    """The SDK's local-mode modules (imported here: the SDK takes seconds to import)."""
    from sagemaker.core.local import data, entities

    return SimpleNamespace(entities=entities, data=data)


def request_kwargs() -> dict:
    request = transform_request("tj", "m", "file:///in", "file:///out", ("local", 1))
    return {k: request[k] for k in ("BatchStrategy", "MaxPayloadInMB")}


def test_the_sdks_container_environment_is_accepted_and_advertised(sdk_local, tmp_path) -> None:
    job = SimpleNamespace(primary_container={"Environment": {}})
    env = sdk_local.entities._LocalTransformJob._get_container_environment(job, **request_kwargs())
    assert env["SAGEMAKER_BATCH_STRATEGY"] == "SINGLE_RECORD"  # the SDK maps SingleRecord
    settings = Settings.from_env({**env, "SAGEMAKER_BASE_DIR": str(tmp_path)})
    client = create_app(settings, FakePredictor()).test_client()
    assert client.get("/execution-parameters").get_json() == {
        "BatchStrategy": "SINGLE_RECORD",  # AWS's documented spelling, as SageMaker expects
        "MaxConcurrentTransforms": 1,
        "MaxPayloadInMB": 6,
    }


def test_each_image_file_is_one_request_answered_with_one_json_line(
    sdk_local, tmp_path: Path
) -> None:
    image = tmp_path / "cat.png"
    cv2.imwrite(str(image), np.full((40, 50, 3), 128, dtype=np.uint8))
    request = transform_request("tj", "m", "file:///in", "file:///out", ("local", 1))
    splitter = sdk_local.data.get_splitter_instance(request["TransformInput"]["SplitType"])
    strategy = sdk_local.data.get_batch_strategy_instance(request["BatchStrategy"], splitter)
    bodies = list(strategy.pad(str(image), request["MaxPayloadInMB"]))
    assert bodies == [image.read_bytes()]  # the whole file, once
    settings = Settings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    client = create_app(settings, FakePredictor()).test_client()
    reply = client.post(
        "/invocations",
        data=bodies[0],
        content_type=request["TransformInput"]["ContentType"],
        headers={"Accept": request["TransformOutput"]["Accept"]},
    )
    assert reply.status_code == 200, reply.get_data(as_text=True)
    lines = reply.get_data(as_text=True).splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["prediction"] == pytest.approx(PROBS.tolist())
