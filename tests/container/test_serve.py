"""`docker run IMAGE serve`: /ping, /invocations with a JPEG, clean stop, and an empty model."""

from __future__ import annotations

import io
import json
import random

from tests.container.conftest import TIMINGS
from tests.container.dockerctl import Container, http, wait_for_ping
from tests.datagen import make_image

STARTUP = 240  # SageMaker fails an endpoint whose /ping is not 200 within 4 minutes
GRACE = 30  # SageMaker endpoints: SIGTERM, then SIGKILL 30 s later


def jpeg_bytes(label: int = 0) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(make_image(label, random.Random(7), (48, 40))).save(buffer, format="JPEG")
    return buffer.getvalue()


def assert_probabilities(body: bytes, num_classes: int) -> None:
    probabilities = json.loads(body)
    assert isinstance(probabilities, list), probabilities
    assert len(probabilities) == num_classes, probabilities
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in probabilities), probabilities
    assert abs(sum(probabilities) - 1.0) < 1e-3, probabilities


def serve_and_predict(image: str, model_dir, *, num_classes: int, extra=()) -> None:
    """Start `serve` on ``model_dir``; /ping, one prediction, then a clean `docker stop`."""
    with Container(
        image, "serve", mounts=[(model_dir, "/opt/ml/model", "ro")], publish=8080, extra=extra
    ) as server:
        wait_for_ping(server.url("/ping"), timeout=STARTUP, alive=server)
        response = http(
            server.url("/invocations"),
            data=jpeg_bytes(),
            headers={"Content-Type": "application/x-image", "Accept": "application/json"},
        )
        assert response.status == 200, (response.status, response.body[:2000], server.logs())
        assert_probabilities(response.body, num_classes)
        code, seconds = server.stop(grace=GRACE)
        log = server.logs()
    TIMINGS[f"docker stop of serve ({image})"] = f"{seconds:.1f} s, exit {code}"
    assert code != 137, f"SIGKILLed after {seconds:.0f} s: SIGTERM did not stop it\n{log[-4000:]}"
    assert code in (0, 143), (code, log[-4000:])
    assert seconds < GRACE, f"stopping took {seconds:.0f} s"


def test_serve_answers_ping_and_predicts_then_stops_cleanly(cpu_image, trained_model):
    base, result = trained_model
    assert result.code == 0, result.log[-6000:]
    serve_and_predict(cpu_image, base / "model", num_classes=3)


def test_serve_with_an_empty_model_dir_stays_up_and_pings_503(cpu_image, tmp_path):
    empty = tmp_path / "model"
    empty.mkdir()
    with Container(
        cpu_image, "serve", mounts=[(empty, "/opt/ml/model", "ro")], publish=8080
    ) as server:
        response = wait_for_ping(
            server.url("/ping"),
            timeout=STARTUP,
            expect=503,
            mentions="image-classification-symbol.json",
            alive=server,
        )
        assert response.content_type == "application/json", response
        assert server.running()
        log = server.logs()
    assert "image-classification-symbol.json" in log, log[-4000:]


def test_train_and_serve_as_a_non_root_user(cpu_image, tmp_path):
    """compose's OIC_UID/OIC_GID: the whole pipeline works as an ordinary user (uid 1000)."""
    import os

    from tests.container.conftest import SMALL_HYPERPARAMETERS, train_in_container
    from tests.datagen import make_sagemaker_tree

    base = make_sagemaker_tree(tmp_path / "opt_ml", hyperparameters=SMALL_HYPERPARAMETERS)
    for path in [base, *base.rglob("*")]:
        os.chmod(path, 0o777 if path.is_dir() else 0o666)  # as if the user owned the folders
    as_user = ("--user", "1000:1000")
    result = train_in_container(cpu_image, base, extra=as_user)
    assert result.code == 0, result.log[-8000:]
    assert all(p.stat().st_uid == 1000 for p in (base / "model").iterdir())
    serve_and_predict(cpu_image, base / "model", num_classes=3, extra=as_user)


def test_a_builtin_algorithm_model_is_served_as_plain_mxnet_answers(cpu_image, builtin_model):
    """A model with the built-in's structure and files (``tests.builtin_models``, no product
    code), served by the image: the same answers as plain MXNet on stretched raw pixels."""
    import numpy as np

    from tests.builtin_models import SMALL

    model = builtin_model(SMALL)
    files = [path for path, _ in model.data.validation][::10]
    expected = model.predict(model.validation_pixels()[::10])
    with Container(
        cpu_image, "serve", mounts=[(model.model_dir, "/opt/ml/model", "ro")], publish=8080
    ) as server:
        wait_for_ping(server.url("/ping"), timeout=STARTUP, alive=server)
        answers = []
        for path in files:
            response = http(
                server.url("/invocations"),
                data=path.read_bytes(),
                headers={"Content-Type": "application/x-image"},
            )
            assert response.status == 200, (response.status, response.body[:2000])
            answers.append(json.loads(response.body))
    got = np.array(answers)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.99
    assert np.abs(got - expected).max() <= 1e-3
