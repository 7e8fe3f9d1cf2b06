"""Evaluation: every image scored exactly once on every device, and stop requests honoured."""

from __future__ import annotations

import threading

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from train.engines.mxnet import steps as engine
from train.errors import TrainingInterrupted


class _Echo(gluon.HybridBlock):
    """Outputs a one-hot of the image's first pixel, so each output names its input."""

    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes

    def hybrid_forward(self, F, x):  # noqa: N803
        return F.one_hot(F.reshape(F.slice_axis(x, axis=1, begin=0, end=1), (-1,)), self.classes)


def _data(count: int, classes: int, batch: int) -> tuple[mx.io.NDArrayIter, np.ndarray]:
    ids = np.arange(count, dtype=np.float32)
    data = ids.reshape(-1, 1, 1, 1) * np.ones((1, 2, 1, 1), np.float32)
    # The iterator pads its last batch (as ImageRecordIter does) by wrapping around.
    return mx.io.NDArrayIter(data, ids, batch_size=batch, last_batch_handle="pad"), ids


def test_a_stop_request_ends_validation():
    data_iter, _ = _data(20, 20, 4)
    setup = engine.make_loss(False, None)
    stop = threading.Event()
    stop.set()
    with pytest.raises(TrainingInterrupted, match="during validation"):
        engine.evaluate(_Echo(20), data_iter, [mx.cpu()], setup, 20, stop=stop)


@pytest.mark.parametrize("contexts", [1, 2, 3])
def test_validation_scores_every_image_exactly_once_on_every_device(contexts):
    """22 images in batches of 4 (the last padded with 2 repeats), split over the devices; a
    last real slice of 2 images is smaller than the device count of 3."""
    ctx = [mx.cpu(i) for i in range(contexts)]
    data_iter, ids = _data(22, 22, 4)
    net = _Echo(22)
    seen_on = []
    real_forward = net.forward

    def forward(x):
        seen_on.append(x.context)
        return real_forward(x)

    net.forward = forward
    result = engine.evaluate(net, data_iter, ctx, engine.make_loss(False, None), 22)
    np.testing.assert_array_equal(result["labels"].reshape(-1), ids)
    np.testing.assert_array_equal(result["outputs"].argmax(axis=1), ids)  # each its own image
    assert result["accuracy"] == 1.0
    assert set(seen_on) == set(ctx)
