"""The Flask app with an injected fake predictor: formats, and one test per error case."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from flask.testing import FlaskClient

from serve import content_types as ct
from serve.app import EXTENSION, create_app
from serve.predictor import ModelInfo
from serve.settings import Settings

LABELS = ("cat", "dog", "bird")
PROBS = np.array([0.2, 0.7, 0.1], dtype=np.float32)


class FakePredictor:
    """Returns PROBS for every image and records the batches it was given."""

    def __init__(self, multi_label: bool = False, fail: Exception | None = None):
        self.info = ModelInfo((3, 32, 32), 36, LABELS, multi_label)
        self.fail = fail
        self.batches: list[np.ndarray] = []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.fail is not None:
            raise self.fail
        self.batches.append(batch)
        return np.tile(PROBS, (len(batch), 1))


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path), **env})


@pytest.fixture
def predictor() -> FakePredictor:
    return FakePredictor()


@pytest.fixture
def client(tmp_path: Path, predictor: FakePredictor) -> FlaskClient:
    return create_app(settings_for(tmp_path), predictor).test_client()


def jpeg(width: int = 40, height: int = 30) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def png(width: int = 40, height: int = 30) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))[1].tobytes()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def post(client: FlaskClient, body: bytes, content_type: str | None = ct.JPEG, **kwargs):
    headers = kwargs.pop("headers", {})
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post("/invocations", data=body, headers=headers, **kwargs)


def assert_json_error(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == ct.JSON
    message = response.get_json()["error"]
    assert message and "Traceback" not in response.get_data(as_text=True)
    return message


# ---- the happy paths -------------------------------------------------------------------------


def test_ping_is_200_with_a_loaded_model(client: FlaskClient) -> None:
    assert client.get("/ping").status_code == 200


@pytest.mark.parametrize("content_type", [ct.X_IMAGE, ct.JPEG, ct.PNG])
def test_one_image_returns_the_builtin_probability_list(client, content_type) -> None:
    body = png() if content_type == ct.PNG else jpeg()
    response = post(client, body, content_type)
    assert response.status_code == 200
    assert response.mimetype == ct.JSON
    assert response.get_json() == pytest.approx(PROBS.tolist())


def test_content_type_parameters_and_case_are_ignored(client) -> None:
    assert post(client, jpeg(), "Image/JPEG; charset=binary").status_code == 200


def test_images_are_preprocessed_to_the_model_shape(client, predictor) -> None:
    post(client, jpeg(100, 60))
    (batch,) = predictor.batches
    assert batch.shape == (1, 3, 32, 32) and batch.dtype == np.float32


def test_npy_single_image_and_batch(client) -> None:
    image = np.zeros((20, 24, 3), np.uint8)
    assert post(client, npy(image), ct.NPY).get_json() == pytest.approx(PROBS.tolist())
    batch = post(client, npy(np.stack([image, image])), ct.NPY).get_json()
    assert np.allclose(batch, [PROBS, PROBS])


def test_json_base64_batch_returns_a_list_of_lists(client) -> None:
    images = [base64.b64encode(jpeg()).decode(), {"b64": base64.b64encode(png()).decode()}]
    response = post(client, json.dumps({"instances": images}).encode(), ct.JSON)
    assert np.allclose(response.get_json(), [PROBS, PROBS])


def test_jsonlines_in_and_out_gives_one_prediction_line_per_image(client) -> None:
    lines = [json.dumps({"b64": base64.b64encode(jpeg()).decode()}) for _ in range(3)]
    response = post(
        client, "\n".join(lines).encode(), ct.JSONLINES, headers={"Accept": ct.JSONLINES}
    )
    assert response.mimetype == ct.JSONLINES
    records = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert len(records) == 3
    assert all(r["prediction"] == pytest.approx(PROBS.tolist()) for r in records)


def test_verbose_accept_lists_top_classes_with_names(client) -> None:
    response = post(client, jpeg(), headers={"Accept": "application/json; verbose=true"})
    record = response.get_json()
    assert record["predicted_label"] == "dog"
    assert [c["label"] for c in record["top_k"]] == ["dog", "cat", "bird"]
    assert record["top_k"][0]["probability"] == pytest.approx(0.7)


def test_top_k_query_parameter_limits_the_classes(client) -> None:
    record = post(client, jpeg(), query_string={"top_k": "2"}).get_json()
    assert [c["label"] for c in record["top_k"]] == ["dog", "cat"]


def test_top_k_custom_attribute_as_sagemaker_passes_it(client) -> None:
    headers = {"X-Amzn-SageMaker-Custom-Attributes": "top_k=1"}
    record = post(client, jpeg(), headers=headers).get_json()
    assert [c["index"] for c in record["top_k"]] == [1]


def test_execution_parameters_for_batch_transform(tmp_path, predictor) -> None:
    env = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "20", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4"}
    client = create_app(settings_for(tmp_path, **env), predictor).test_client()
    assert client.get("/execution-parameters").get_json() == {
        "MaxConcurrentTransforms": 4,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 20,
    }


def test_predictor_is_stored_on_app_extensions(tmp_path, predictor) -> None:
    app = create_app(settings_for(tmp_path), predictor)
    assert app.extensions[EXTENSION].model.get() is predictor


# ---- every error case of the issue, each its own test ----------------------------------------


def test_unsupported_content_type_is_415_listing_supported_types(client) -> None:
    message = assert_json_error(post(client, b"1,2,3", "text/csv"), 415)
    assert "text/csv" in message
    assert all(t in message for t in ct.REQUEST_TYPES)


def test_missing_content_type_is_415(client) -> None:
    assert_json_error(post(client, jpeg(), None), 415)


def test_unsupported_accept_is_406_listing_supported_types(client) -> None:
    message = assert_json_error(post(client, jpeg(), headers={"Accept": "text/csv"}), 406)
    assert ct.JSON in message and ct.JSONLINES in message


def test_empty_body_is_400(client) -> None:
    assert "empty" in assert_json_error(post(client, b""), 400)


def test_non_image_bytes_are_400(client, broken_images) -> None:
    assert_json_error(post(client, broken_images["not_an_image.jpg"]), 400)


def test_truncated_jpeg_is_400(client, broken_images) -> None:
    assert "truncated" in assert_json_error(post(client, broken_images["truncated.jpg"]), 400)


def test_truncated_png_is_400(client, broken_images) -> None:
    assert_json_error(post(client, broken_images["truncated.png"], ct.PNG), 400)


def test_image_bomb_is_413_before_decoding(client, bomb_png, predictor) -> None:
    message = assert_json_error(post(client, bomb_png, ct.PNG), 413)
    assert "too large" in message
    assert predictor.batches == []


def test_extreme_aspect_ratio_that_would_explode_on_resize_is_413(tmp_path, predictor) -> None:
    settings = settings_for(tmp_path, SERVE_MAX_IMAGE_PIXELS="1000000")
    client = create_app(settings, predictor).test_client()
    strip = npy(np.zeros((1, 5000, 3), np.uint8))  # 5000 px; 36 x 180000 once resized
    assert_json_error(post(client, strip, ct.NPY), 413)


def test_body_over_the_limit_is_413(tmp_path, predictor) -> None:
    client = create_app(settings_for(tmp_path, SAGEMAKER_MAX_PAYLOAD_IN_MB="1"), predictor)
    response = post(client.test_client(), b"\xff" * (1024 * 1024 + 1))
    assert "1 MiB" in assert_json_error(response, 413)


def test_invalid_base64_in_json_is_400(client) -> None:
    assert "base64" in assert_json_error(post(client, b'["not base64!"]', ct.JSON), 400)


def test_malformed_json_is_400(client) -> None:
    assert "JSON" in assert_json_error(post(client, b'{"instances": [', ct.JSON), 400)


def test_bad_image_inside_a_batch_names_its_index(client, broken_images) -> None:
    items = [base64.b64encode(jpeg()).decode(), base64.b64encode(b"garbage").decode()]
    assert "image 1" in assert_json_error(post(client, json.dumps(items).encode(), ct.JSON), 400)


def test_npy_of_the_wrong_dtype_is_400(client) -> None:
    assert "uint8" in assert_json_error(post(client, npy(np.zeros((4, 4, 3))), ct.NPY), 400)


def test_npy_pickles_are_refused(client) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_json_error(post(client, buffer.getvalue(), ct.NPY), 400)


def test_invalid_top_k_is_400(client) -> None:
    assert "top_k" in assert_json_error(post(client, jpeg(), query_string={"top_k": "0"}), 400)


def test_unexpected_failure_is_500_json_without_traceback(tmp_path, caplog) -> None:
    predictor = FakePredictor(fail=RuntimeError("secret internals"))
    client = create_app(settings_for(tmp_path), predictor).test_client()
    with caplog.at_level(logging.ERROR):
        message = assert_json_error(post(client, jpeg()), 500)
    assert "secret internals" not in message
    assert "secret internals" in caplog.text  # the traceback is in the log


def test_bad_image_traceback_goes_to_the_log_only(client, broken_images, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        post(client, broken_images["truncated.jpg"])
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)


def test_model_timeout_is_503(tmp_path) -> None:
    client = create_app(settings_for(tmp_path), FakePredictor(fail=TimeoutError())).test_client()
    assert_json_error(post(client, jpeg()), 503)


def test_unknown_path_is_404_json(client) -> None:
    assert_json_error(client.get("/nope"), 404)


def test_wrong_method_is_405_json(client) -> None:
    assert_json_error(client.get("/invocations"), 405)


def test_missing_model_dir_starts_and_pings_503_naming_the_file(tmp_path, caplog) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model-shapes.json").write_text("[]")
    with caplog.at_level(logging.ERROR):
        app = create_app(settings_for(tmp_path))
        app.extensions[EXTENSION].model.wait(5)
        response = app.test_client().get("/ping")
    message = assert_json_error(response, 503)
    missing = "missing: image-classification-symbol.json, image-classification-NNNN.params ("
    assert missing in message and missing in caplog.text
    assert_json_error(post(app.test_client(), jpeg()), 503)


def test_settings_are_read_from_the_environment_when_not_given(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "3")
    app = create_app(predictor=FakePredictor())
    settings = app.extensions[EXTENSION].settings
    assert settings == dataclasses.replace(settings_for(tmp_path), max_payload_mb=3)
    assert app.config["MAX_CONTENT_LENGTH"] == 3 * 1024 * 1024


def test_large_batches_are_predicted_a_micro_batch_at_a_time(tmp_path, predictor) -> None:
    client = create_app(settings_for(tmp_path, SERVE_MAX_BATCH_SIZE="16"), predictor)
    images = np.zeros((40, 8, 8, 3), np.uint8)
    response = post(client.test_client(), npy(images), ct.NPY)
    assert len(response.get_json()) == 40
    assert [len(b) for b in predictor.batches] == [16, 16, 8]
