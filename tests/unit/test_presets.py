"""Evaluation preprocessing: shapes, dtype, normalisation, and validation == serving."""

from __future__ import annotations

import random

import cv2
import mxnet  # noqa: F401 - imported at collection: its 1.3 s import is no test's run time
import numpy as np
import pytest

from tests.datagen import make_image
from train import lst, presets, records
from train.config import TrainConfig
from train.data import DataSpec, record_iter


@pytest.mark.parametrize(
    ("size", "image_shape", "resize"),
    [
        ((300, 200), (3, 224, 224), 256),
        ((50, 90), (3, 32, 32), 36),
        ((33, 33), (3, 32, 48), None),
        ((640, 480), (1, 28, 28), 32),
        ((40, 40), (3, 40, 40), None),
    ],
)
def test_eval_transform_gives_chw_float32_of_the_model_shape(size, image_shape, resize):
    image = make_image(1, random.Random(0), size)
    out = presets.eval_transform(image, image_shape=image_shape, resize=resize)
    assert out.shape == image_shape
    assert out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]


def test_eval_transform_gives_raw_pixels():
    """No mean/std step: the network normalises its input itself."""
    image = make_image(2, random.Random(0), (40, 40))
    out = presets.eval_transform(image, image_shape=(3, 40, 40), resize=None)
    assert np.array_equal(out, image.transpose(2, 0, 1).astype(np.float32))
    gray = presets.eval_transform(image, image_shape=(1, 40, 40), resize=None)
    assert np.array_equal(gray[0], cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32))


def test_resize_shorter_side_keeps_aspect_ratio():
    image = np.zeros((100, 300, 3), np.uint8)
    assert presets.resize_shorter_side(image, 50).shape == (50, 150, 3)
    assert presets.resize_shorter_side(image, 200).shape == (200, 600, 3)
    assert presets.resize_shorter_side(image, 100) is image


def test_center_crop_uses_imagerecorditers_offsets():
    image = np.arange(7 * 9).reshape(7, 9)
    crop = presets.center_crop(image, 4, 4)
    assert crop[0, 0] == image[(7 - 4) // 2, (9 - 4) // 2]
    with pytest.raises(ValueError, match="smaller than the crop"):
        presets.center_crop(image, 8, 4)


def test_default_resize_is_256_for_224():
    assert presets.default_resize(224, 224) == 256
    assert presets.default_resize(32, 28) == 37


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (None, {"rand_crop": False, "rand_mirror": False}),
        ("crop", {"rand_crop": True, "rand_mirror": True}),
    ],
)
def test_train_augmentation_without_colour(kind, expected):
    assert presets.train_augmentation(kind) == expected


def test_train_augmentation_adds_colour_then_affine_jitter():
    colour = presets.train_augmentation("crop_color")
    affine = presets.train_augmentation("crop_color_transform")
    assert colour["random_h"] == 36 and "max_rotate_angle" not in colour
    assert affine["random_s"] == 50 and affine["max_rotate_angle"] == 10
    with pytest.raises(ValueError):
        presets.train_augmentation("rotate")


@pytest.mark.parametrize(
    ("image_shape", "tolerance"),
    [
        ((3, 32, 32), 1e-4),
        ((3, 32, 40), 1e-4),
        # OpenCV's grayscale decoding rounds differently from cvtColor: at most 1 gray level.
        ((1, 32, 32), 1.001),
    ],
)
def test_validation_records_read_by_imagerecorditer_equal_eval_transform(
    tmp_path, image_shape, tolerance
):
    """The product's key property: the C++ validation pipeline sees exactly what the server
    computes with eval_transform, pixel for pixel (odd sizes, both orientations)."""
    rng = random.Random(0)
    sizes = [(50, 40), (41, 77), (64, 64), (33, 90), (100, 37), (40, 40)]
    originals, entries = [], []
    for i, size in enumerate(sizes):
        image = make_image(i % 3, rng, size)
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        originals.append(image)
        entries.append(lst.Entry(i, (float(i % 3),), f"{i}.png"))
    settings = records.PackSettings(40, True, image_shape[1:], 10**8)
    packed = records.pack(
        entries,
        tmp_path,
        name="validation",
        settings=settings,
        cache_dir=tmp_path / "cache",
        workers=2,
        max_bad=0.0,
    )
    cfg = TrainConfig(image_shape=image_shape, resize=40)
    spec = DataSpec(packed, packed, 3, ["a", "b", "c"], 1, None)
    it = record_iter(packed, spec, cfg, training=False, batch_size=len(sizes), threads=1)
    batch = next(iter(it))
    data, labels = batch.data[0].asnumpy(), batch.label[0].asnumpy()
    assert data.shape == (len(sizes), *image_shape)
    for i, image in enumerate(originals):
        expected = presets.eval_transform(image, image_shape=image_shape, resize=40)
        assert np.abs(data[i] - expected).max() < tolerance, f"image {i} {sizes[i]} differs"
        assert labels[i] == i % 3
