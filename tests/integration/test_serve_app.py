"""The Flask app with a real tiny model (Flask test client): predictions equal the bare model's
on the shared preprocessing, in every request format; multi-label scores are independent. Every
test runs on both backends (``SERVE_BACKEND``): MXNet, and ONNX Runtime on the model converted at
load time."""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from serve import content_types as ct
from serve.app import EXTENSION, create_app
from serve.onnx_predictor import OnnxRuntimePredictor
from serve.predictor import MXNetPredictor
from serve.settings import Settings
from tests.datagen import make_image
from tests.serve_fixtures import make_model_dir
from train import artifacts
from train.formats.model_dir import load_for_inference, open_model
from train.presets import eval_transform

pytestmark = pytest.mark.integration
NAMES = ["red", "green", "blue"]


def jpeg_of(image_rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def bare_probabilities(model_dir: Path, images_rgb: list[np.ndarray]) -> np.ndarray:
    """What the model says without the server: decode -> eval_transform -> forward."""
    saved = open_model(model_dir)
    block = load_for_inference(saved, mx.cpu())
    shape, resize = saved.files.image_shape, saved.convention.crop_resize
    batch = np.stack([eval_transform(i, image_shape=shape, resize=resize) for i in images_rgb])
    return block(mx.nd.array(batch)).asnumpy()


PREDICTORS = {"mxnet": MXNetPredictor, "onnxruntime": OnnxRuntimePredictor}


def settings_for(base: Path, backend: str) -> Settings:
    return Settings.from_env({"SAGEMAKER_BASE_DIR": str(base), "SERVE_BACKEND": backend})


def app_for(base: Path, backend: str):
    app = create_app(settings_for(base, backend))
    slot = app.extensions[EXTENSION].model
    assert slot.wait(60)
    assert type(slot.get()) is PREDICTORS[backend]
    return app


@pytest.fixture(scope="module", params=sorted(PREDICTORS))
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def model_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("serve_model")
    make_model_dir(base / "model", class_names=NAMES)
    return base


@pytest.fixture(scope="module")
def client(model_base, backend):
    return app_for(model_base, backend).test_client()


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = random.Random(3)
    return [make_image(i % 3, rng, (rng.randint(30, 90), rng.randint(30, 90))) for i in range(6)]


def decoded(jpeg: bytes) -> np.ndarray:
    """The JPEG as the server sees it (decoding is lossy: compare on decoded pixels)."""
    return cv2.cvtColor(
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )


def test_single_jpeg_matches_the_bare_model(client, model_base, images) -> None:
    jpegs = [jpeg_of(i) for i in images]
    expected = bare_probabilities(model_base / "model", [decoded(j) for j in jpegs])
    for jpeg, want in zip(jpegs, expected, strict=True):
        response = client.post("/invocations", data=jpeg, content_type=ct.X_IMAGE)
        assert response.status_code == 200
        assert np.allclose(response.get_json(), want, atol=1e-5)


def test_npy_batch_matches_the_bare_model_row_for_row(client, model_base, images) -> None:
    same_size = [cv2.resize(i, (48, 40)) for i in images]
    buffer = io.BytesIO()
    np.save(buffer, np.stack(same_size))
    response = client.post("/invocations", data=buffer.getvalue(), content_type=ct.NPY)
    assert np.allclose(
        response.get_json(), bare_probabilities(model_base / "model", same_size), atol=1e-5
    )


def test_jsonlines_batch_with_names(client, model_base, images) -> None:
    jpegs = [jpeg_of(i) for i in images]
    body = "\n".join(json.dumps({"b64": base64.b64encode(j).decode()}) for j in jpegs)
    response = client.post(
        "/invocations",
        data=body,
        content_type=ct.JSONLINES,
        headers={"Accept": "application/jsonlines; verbose=true"},
    )
    records = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    expected = bare_probabilities(model_base / "model", [decoded(j) for j in jpegs])
    assert len(records) == len(images)
    for record, want in zip(records, expected, strict=True):
        assert np.allclose(record["prediction"], want, atol=1e-5)
        assert record["predicted_label"] == NAMES[int(np.argmax(want))]
        assert sum(c["probability"] for c in record["top_k"]) == pytest.approx(1.0, abs=1e-4)


def test_multi_label_model_returns_independent_scores(tmp_path, images, backend) -> None:
    make_model_dir(tmp_path / "model", num_classes=4, multi_label=True)
    client = app_for(tmp_path, backend).test_client()
    scores = client.post("/invocations", data=jpeg_of(images[0]), content_type=ct.JPEG).get_json()
    assert len(scores) == 4 and all(0.0 <= s <= 1.0 for s in scores)
    assert sum(scores) != pytest.approx(1.0, abs=1e-3)  # sigmoid per class, not a softmax


def test_grayscale_model_is_served(tmp_path, images, backend) -> None:
    make_model_dir(tmp_path / "model", image_shape=(1, 32, 32))
    client = app_for(tmp_path, backend).test_client()
    response = client.post("/invocations", data=jpeg_of(images[0]), content_type=ct.JPEG)
    assert response.status_code == 200 and len(response.get_json()) == 3


def test_classes_json_that_disagrees_with_the_model_is_a_broken_model(tmp_path, backend) -> None:
    make_model_dir(tmp_path / "model", class_names=["only", "two"], num_classes=3)
    app = create_app(settings_for(tmp_path, backend))
    assert not app.extensions[EXTENSION].model.wait(60)
    response = app.test_client().get("/ping")
    assert response.status_code == 503
    assert "classes.json lists 2 classes but the model outputs 3" in response.get_json()["error"]


def test_corrupt_params_file_is_a_broken_model_not_a_crash(tmp_path, backend) -> None:
    make_model_dir(tmp_path / "model")
    (tmp_path / "model" / artifacts.params_file(1)).write_bytes(b"garbage")
    app = create_app(settings_for(tmp_path, backend))
    assert not app.extensions[EXTENSION].model.wait(60)
    assert app.test_client().get("/ping").status_code == 503
