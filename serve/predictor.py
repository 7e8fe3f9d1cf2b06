"""The model behind the endpoint: loaded once per worker, fed preprocessed batches.

:func:`preprocess` is the serving side of the one preprocessing (``train.presets.
eval_transform``, the transform training-time validation uses): raw pixels, with the geometry of
the model's input convention (``train.formats``). :class:`MXNetPredictor` loads the model through
``train.formats.model_dir`` (this product's models and the built-in's, all made to take raw
pixels), on a GPU when one is visible, and runs every forward pass through one
:class:`~serve.batching.MicroBatcher`; ``serve.onnx_predictor`` is the same for ONNX Runtime,
and ``serve.backends`` chooses between them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from serve.batching import MicroBatcher
from serve.health import Progress
from train import artifacts
from train.images import ImageTooLarge
from train.presets import eval_transform

logger = logging.getLogger(__name__)

# Set by the gunicorn config in each worker (0, 1, ...): which GPU the worker uses.
WORKER_INDEX_ENV = "SERVE_WORKER_INDEX"


@dataclass(frozen=True)
class ModelInfo:
    """What the request pipeline needs to know about the loaded model."""

    image_shape: tuple[int, int, int]
    resize: int | None  # shorter side before the centre crop; None: stretch to image_shape
    labels: tuple[str, ...]
    multi_label: bool


class Predictor(Protocol):
    """What the app needs from a model: its info, and probabilities for a batch."""

    info: ModelInfo

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``NxCxHxW`` float32 (from :func:`preprocess`) to ``N x num_classes`` probabilities."""
        ...

    def close(self) -> None:
        """Release the model (stop its batching thread)."""
        ...


def model_info(saved: Any, num_outputs: int) -> ModelInfo:
    """The :class:`ModelInfo` of a ``train.formats.model_dir.SavedModel`` whose graph has
    ``num_outputs`` outputs per image (whichever backend runs it)."""
    from train.formats import model_dir as saved_models

    return ModelInfo(
        image_shape=saved.files.image_shape,
        resize=saved.convention.crop_resize,
        labels=model_labels(saved.files.classes, num_outputs),
        multi_label=saved_models.outputs_independent_scores(saved),
    )


def describe(saved: Any, info: ModelInfo) -> str:
    """One log line's worth about a loaded model: input, geometry, pixels, classes."""
    convention = saved.convention
    return (
        f"input {'x'.join(map(str, info.image_shape))}, {convention.geometry} (resize "
        f"{convention.resize}), model expects {convention.pixels} pixels, {len(info.labels)} "
        f"classes{' (multi-label)' if info.multi_label else ''}"
    )


def resized_pixels(height: int, width: int, info: ModelInfo) -> int:
    """Pixels of an image once :func:`eval_transform` has resized its shorter side.

    A stretched model (``resize`` None, the built-in's) is resized straight to its input size,
    which never grows an image beyond that.
    """
    if info.resize is None:
        return info.image_shape[1] * info.image_shape[2]
    scale = info.resize / min(height, width)
    return int(height * width * scale * scale)


def preprocess(
    images: Sequence[np.ndarray], info: ModelInfo, *, max_pixels: int, first_index: int = 0
) -> np.ndarray:
    """Decoded ``HxWx3`` uint8 RGB images to the model's ``NxCxHxW`` float32 input.

    Raises:
        ImageTooLarge: resizing an image (a thin strip, say) would exceed ``max_pixels``; the
            message numbers images from ``first_index``.
    """
    for index, image in enumerate(images):
        height, width = image.shape[:2]
        if resized_pixels(height, width, info) > max_pixels:
            raise ImageTooLarge(
                f"image {first_index + index} ({width}x{height}) would exceed {max_pixels} "
                "pixels once its shorter side is resized; crop it to a less extreme aspect ratio"
            )
    shape, resize = info.image_shape, info.resize
    return np.stack([eval_transform(image, image_shape=shape, resize=resize) for image in images])


def model_labels(classes: Sequence[str] | None, num_outputs: int) -> tuple[str, ...]:
    """Class names from ``classes.json``, or the class indices as text when it is absent.

    Raises:
        ValueError: ``classes.json`` names a different number of classes than the model has.
    """
    if classes is None:
        return tuple(str(i) for i in range(num_outputs))
    if len(classes) != num_outputs:
        raise ValueError(
            f"{artifacts.CLASSES_FILE} lists {len(classes)} classes but the model outputs "
            f"{num_outputs}"
        )
    return tuple(classes)


def inference_context() -> Any:
    """``mx.gpu(i)`` when a GPU MXNet can run is visible (workers spread over GPUs), else
    ``mx.cpu()`` (see :func:`train.devices.inference_context`)."""
    from train import devices

    return devices.inference_context(int(os.environ.get(WORKER_INDEX_ENV, "0")))


class BatchedPredictor:
    """What every engine's predictor shares: its model info, and one
    :class:`~serve.batching.MicroBatcher` that runs the subclass's ``_forward`` and reports its
    forward passes to ``progress`` (``/ping``'s stall check)."""

    def __init__(
        self,
        info: ModelInfo,
        *,
        max_batch: int,
        max_wait_s: float = 0.0,
        timeout: float | None = None,
        progress: Progress | None = None,
    ):
        self.info = info
        self._timeout = timeout
        self._batcher = MicroBatcher(
            self._forward, max_batch=max_batch, max_wait_s=max_wait_s, progress=progress
        )

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (softmax, or independent sigmoid scores for multi-label models)."""
        return self._batcher.run(batch, timeout=self._timeout)

    def close(self) -> None:
        """Stop the batching thread."""
        self._batcher.close()

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class MXNetPredictor(BatchedPredictor):
    """A loaded MXNet model and the batcher that feeds it."""

    def __init__(
        self,
        block: Any,
        info: ModelInfo,
        ctx: Any,
        *,
        max_batch: int,
        max_wait_s: float = 0.0,
        timeout: float | None = None,
        progress: Progress | None = None,
    ):
        self._block = block
        self._ctx = ctx
        super().__init__(
            info, max_batch=max_batch, max_wait_s=max_wait_s, timeout=timeout, progress=progress
        )

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        max_batch: int,
        max_wait_s: float = 0.0,
        timeout: float | None = None,
        progress: Progress | None = None,
    ) -> MXNetPredictor:
        """Load the model in ``model_dir`` and run one warm-up forward pass.

        Raises:
            artifacts.MissingModelFiles: naming each missing file.
            train.formats.metadata.BadMetadata: an unusable ``model-metadata.json``.
            ValueError, mxnet.base.MXNetError: the files are there but unusable.
        """
        artifacts.locate_model(model_dir)  # before importing MXNet: a missing file fails fast

        import mxnet as mx

        from train.formats import model_dir as saved_models

        saved = saved_models.open_model(model_dir)
        ctx = inference_context()
        block = saved_models.load_for_inference(saved, ctx)
        warm_up = block(mx.nd.zeros((1, *saved.files.image_shape), ctx=ctx)).asnumpy()
        info = model_info(saved, warm_up.shape[-1])
        name = saved.files.params.name
        logger.info("Loaded model %s with MXNet on %s: %s", name, ctx, describe(saved, info))
        return cls(
            block,
            info,
            ctx,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            timeout=timeout,
            progress=progress,
        )

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import mxnet as mx

        return self._block(mx.nd.array(batch, ctx=self._ctx)).asnumpy()
