"""The predictor's pure parts: preprocessing, label names, resize for built-in models."""

from __future__ import annotations

import numpy as np
import pytest

from serve.predictor import ModelInfo, model_labels, preprocess, resized_pixels
from train.images import ImageTooLarge
from train.presets import eval_transform

INFO = ModelInfo((3, 32, 32), 36, ("a", "b"), False)


def test_preprocess_is_the_training_eval_transform() -> None:
    images = [np.random.default_rng(i).integers(0, 255, (50, 70, 3), np.uint8) for i in range(3)]
    batch = preprocess(images, INFO, max_pixels=10**6)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == np.float32
    expected = eval_transform(images[1], image_shape=(3, 32, 32), resize=36)
    assert np.array_equal(batch[1], expected)


def test_preprocess_refuses_a_strip_that_would_explode_and_numbers_it() -> None:
    strip = np.zeros((1, 3000, 3), np.uint8)
    with pytest.raises(ImageTooLarge, match="image 7"):
        preprocess([strip], INFO, max_pixels=10**6, first_index=7)


def test_resized_pixels_follows_the_transform() -> None:
    assert resized_pixels(72, 144, INFO) == 36 * 72
    builtin = ModelInfo((3, 32, 32), None, ("a",), False)  # squeezed to the input size
    assert resized_pixels(1, 5000, builtin) == 32 * 32


def test_labels_default_to_indices() -> None:
    assert model_labels(None, 3) == ("0", "1", "2")


def test_labels_must_match_the_model_outputs() -> None:
    with pytest.raises(ValueError, match="lists 2 classes but the model outputs 3"):
        model_labels(["x", "y"], 3)
