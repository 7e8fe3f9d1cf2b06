"""Class activation maps from saved model files: on a network trained on images whose class is
decided by a bright patch (its colour; its place is random and known), the map of the true
class peaks on the patch."""

from __future__ import annotations

from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from train.config import load_hyperparameters
from train.formats import model_dir as saved_models
from train.formats.metadata import InputConvention
from train.insight.cam import ActivationMaps, overlay
from train.model import from_scratch

PATCH = 8
CLASSES = 3  # the patch is red, green or blue


def _batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels and each patch's top-left corner (row, col)."""
    images = rng.uniform(0, 90, (n, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, CLASSES, n)
    corners = rng.integers(0, 32 - PATCH, (n, 2))
    for image, label, (row, col) in zip(images, labels, corners, strict=True):
        image[label, row : row + PATCH, col : col + PATCH] = 255
    return images, labels, corners


def _trained_model(model_dir: Path) -> None:
    cfg = load_hyperparameters(
        '{"num_layers": "20", "image_shape": "3,32,32", "num_classes": "3"}', "test"
    )
    mx.random.seed(0)
    net = from_scratch(cfg, CLASSES)
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 2e-3})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.default_rng(0)
    for _ in range(200):  # train until the precondition holds, not for a fixed time
        x, y, _ = _batch(rng, 32)
        with autograd.record():
            loss = loss_fn(net(mx.nd.array(x)), mx.nd.array(y))
        loss.backward()
        trainer.step(32)
        check_x, check_y, _ = _batch(rng, 64)
        if (net(mx.nd.array(check_x)).asnumpy().argmax(axis=1) == check_y).all():
            break
    saved_models.export_model(
        net,
        model_dir,
        1,
        multi_label=False,
        image_shape=(3, 32, 32),
        batch_size=32,
        input_convention=InputConvention("raw", 3, "resize_crop", 32),
    )


def test_cam_peaks_on_the_patch_that_decides_the_class(tmp_path: Path) -> None:
    _trained_model(tmp_path)
    maps = ActivationMaps(tmp_path)
    images, labels, corners = _batch(np.random.default_rng(1), 16)
    probs, cams = maps(images, labels)
    assert (probs.argmax(axis=1) == labels).all()  # the precondition: it learned the task
    for cam, (top, left) in zip(cams, corners, strict=True):
        row, col = np.unravel_index(cam.argmax(), cam.shape)
        assert top - 2 <= row < top + PATCH + 2 and left - 2 <= col < left + PATCH + 2
    picture = overlay(images[0].transpose(1, 2, 0).astype(np.uint8), cams[0])
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8
