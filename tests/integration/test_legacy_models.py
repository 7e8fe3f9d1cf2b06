"""Models of this product made before the input-convention record: their graphs expect
ImageNet-normalised pixels, they have hyperparameters.json and no model-metadata.json. They keep
serving as before and seed incremental training as raw-input networks."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from serve import content_types as ct
from serve.app import EXTENSION, create_app
from serve.settings import Settings
from tests.builtin_models import plain_mxnet_predict
from tests.datagen import make_image
from train import artifacts, config, model
from train.formats.metadata import InputConvention
from train.formats.model_dir import export_model, seed_network
from train.model import Classifier
from train.presets import center_crop, resize_shorter_side

pytestmark = pytest.mark.integration
SHAPE, RESIZE = (3, 32, 32), 36
SCALE = 1e-3
# The normalisation earlier releases applied before the graph, written out here on purpose.
MEAN = np.array([123.68, 116.779, 103.939], np.float32)
STD = np.array([58.393, 57.12, 57.375], np.float32)


def legacy_model(model_dir: Path) -> Path:
    """A model as an earlier release wrote it: a graph without the normalisation block,
    hyperparameters.json with ``resize``, no model-metadata.json."""
    mx.random.seed(0)
    cfg = config.parse_hyperparameters({"num_layers": "20", "image_shape": "3,32,32"})
    net = model.from_scratch(cfg, 3)
    legacy = Classifier(net.features, net.head, channels=None)
    legacy(mx.nd.zeros((1, *SHAPE)))
    # Untrained features give huge logits: scale the classifier so probabilities vary.
    legacy.head.weight.set_data(legacy.head.weight.data() * SCALE)
    unused = InputConvention("raw", 3, "stretch")
    export_model(
        legacy, model_dir, 1, multi_label=False, image_shape=SHAPE, batch_size=4,
        input_convention=unused,
    )  # fmt: skip
    (model_dir / artifacts.METADATA_FILE).unlink()
    artifacts.atomic_write_json(
        model_dir / artifacts.HYPERPARAMETERS_FILE, {"num_layers": "20", "resize": str(RESIZE)}
    )
    return model_dir


def old_pipeline(image_rgb: np.ndarray) -> np.ndarray:
    """What an earlier release fed the graph: shorter side, centre crop, mean/std removed."""
    crop = center_crop(resize_shorter_side(image_rgb, RESIZE), SHAPE[1], SHAPE[2])
    return ((crop.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = random.Random(5)
    return [make_image(i % 3, rng, (rng.randint(36, 80), rng.randint(36, 80))) for i in range(6)]


def test_an_earlier_model_is_still_served_on_normalised_pixels(tmp_path, images):
    model_dir = legacy_model(tmp_path / "model")
    app = create_app(Settings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}))
    assert app.extensions[EXTENSION].model.wait(60)
    client = app.test_client()
    pngs = [cv2.imencode(".png", cv2.cvtColor(i, cv2.COLOR_RGB2BGR))[1].tobytes() for i in images]
    got = np.array(
        [client.post("/invocations", data=p, content_type=ct.PNG).get_json() for p in pngs]
    )
    prefix = model_dir / artifacts.MODEL_PREFIX
    expected = plain_mxnet_predict(prefix, 1, np.stack([old_pipeline(i) for i in images]))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    raw = np.stack([old_pipeline(i) * STD[:, None, None] + MEAN[:, None, None] for i in images])
    assert np.abs(plain_mxnet_predict(prefix, 1, raw) - expected).max() > 1e-3  # it matters


def test_an_earlier_model_seeds_a_raw_input_network(tmp_path, images):
    model_dir = legacy_model(tmp_path / "model")
    net = seed_network(model_dir, 3, SHAPE)
    normalised = np.stack([old_pipeline(i) for i in images])
    raw = normalised * STD[:, None, None] + MEAN[:, None, None]
    ours = mx.nd.softmax(net(mx.nd.array(raw))).asnumpy()
    expected = plain_mxnet_predict(model_dir / artifacts.MODEL_PREFIX, 1, normalised)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
