"""ONNX parity checks shared by the tests: ONNX Runtime's answers against plain MXNet's.

Both sides are independent of the product's inference code: ONNX Runtime runs the file as any
ONNX user would, and MXNet opens the checkpoint as built-in users' scripts do
(:func:`tests.builtin_models.plain_mxnet_predict`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.builtin_models import plain_mxnet_predict, stretched_pixels

TOLERANCE = 1e-4
BATCH_SIZES = (1, 8)


def onnx_runtime_predict(onnx_file: Path, batch: np.ndarray) -> np.ndarray:
    """The ONNX file's output for ``batch`` (its only input), on ONNX Runtime's CPU provider."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: batch.astype(np.float32)})[0]


def pixels_of(files: list[Path], image_shape: tuple[int, int, int]) -> np.ndarray:
    """The image files stretched to ``image_shape``, raw 0-255 values (as a built-in client)."""
    channels, size, _ = image_shape
    return np.stack([stretched_pixels(path, size, channels) for path in files])


def max_difference(
    onnx_file: Path, prefix: Path, epoch: int, pixels: np.ndarray, symbol: Any = None
) -> float:
    """Largest |ONNX Runtime - plain MXNet| over batches of 1 and 8 taken from ``pixels``;
    asserts both see the same batch shape and answer with the same shape. ``symbol``: the
    graph plain MXNet runs instead of the saved one (a float16 model's float32 twin)."""
    worst = 0.0
    for size in BATCH_SIZES:
        batch = pixels[:size]
        assert len(batch) == size, f"need at least {size} images"
        ours = onnx_runtime_predict(onnx_file, batch)
        theirs = plain_mxnet_predict(prefix, epoch, batch, symbol)
        assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst
