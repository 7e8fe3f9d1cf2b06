"""Image preprocessing shared by training-time validation and serving.

One definition of the evaluation transform (resize the shorter side, centre-crop) is
used both when validation images are packed and by the inference server, so that the endpoint
reproduces the validation accuracy that training reported. Training augmentation is expressed
as keyword arguments for MXNet's C++ ``ImageRecordIter`` so that no decoding happens in Python.
"""

from __future__ import annotations

import cv2
import numpy as np

# ImageNet statistics in 0-255 RGB, as the GluonCV / MXNet model-zoo weights expect. They are
# applied inside the network (``train.model.normalize_pixels``), never to the input data.
MEAN_RGB = (123.68, 116.779, 103.939)
STD_RGB = (58.393, 57.12, 57.375)

# Ratio used when the user gives no ``resize``: 256 for a 224 crop, the ImageNet convention.
DEFAULT_RESIZE_RATIO = 256 / 224

# Colour jitter of the built-in's ``crop_color``: random offsets added to hue, saturation and
# lightness (documented as [-36, 36], [-50, 50], [-50, 50]).
HSL_JITTER = {"random_h": 36, "random_s": 50, "random_l": 50}
# Geometric jitter of ``crop_color_transform``: rotation in degrees, shear, aspect-ratio change.
AFFINE_JITTER = {"max_rotate_angle": 10, "max_shear_ratio": 0.1, "max_aspect_ratio": 0.25}

AUGMENTATION_TYPES = ("crop", "crop_color", "crop_color_transform")


def default_resize(height: int, width: int) -> int:
    """The shorter-side size used when ``resize`` is not given (256 for a 224x224 model)."""
    return int(round(max(height, width) * DEFAULT_RESIZE_RATIO))


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an HxWxC image so that its shorter side is ``size``, keeping the aspect ratio."""
    height, width = image.shape[:2]
    if min(height, width) == size:
        return image
    scale = size / min(height, width)
    new_w = max(size, int(round(width * scale)))
    new_h = max(size, int(round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=interpolation)


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Take the central ``height`` x ``width`` window, with the same integer offsets as MXNet's
    ``ImageRecordIter`` (``(size - crop) // 2``)."""
    rows, cols = image.shape[:2]
    if rows < height or cols < width:
        raise ValueError(f"image {cols}x{rows} is smaller than the crop {width}x{height}")
    top = (rows - height) // 2
    left = (cols - width) // 2
    return image[top : top + height, left : left + width]


def prepare_for_eval(image_rgb: np.ndarray, resize: int | None) -> np.ndarray:
    """The storage step of evaluation: resize the shorter side (the same call packs validation
    records). ``resize=None`` keeps the image as it is."""
    return image_rgb if resize is None else resize_shorter_side(image_rgb, resize)


def eval_transform(
    image_rgb: np.ndarray, *, image_shape: tuple[int, int, int], resize: int | None
) -> np.ndarray:
    """Evaluation/serving preprocessing: resize the shorter side and centre-crop, or stretch.

    The output holds raw 0-255 values: every model this product serves normalises its input
    inside its graph (see ``train.formats.convention``). With ``resize`` this is exactly what
    training-time validation computes (pixel for pixel: validation records are stored
    losslessly after :func:`prepare_for_eval`, and MXNet's iterator crops the centre with the
    same offsets), so the endpoint reproduces the validation accuracy.

    Args:
        image_rgb: HxWx3 uint8 RGB image (see :func:`train.images.decode_image`).
        image_shape: ``(channels, height, width)`` of the model's input.
        resize: shorter-side size used in training. ``None`` stretches the image straight to
            ``height x width`` without keeping the aspect ratio, as the built-in algorithm's
            serving code does for its models.

    Returns:
        A ``(channels, height, width)`` float32 array ready to batch (gray for one channel).
    """
    channels, height, width = image_shape
    if resize is None:
        if channels == 1:  # gray first, as the built-in's serving decodes to "L"
            image_rgb = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        cropped = cv2.resize(image_rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        cropped = center_crop(prepare_for_eval(image_rgb, resize), height, width)
        if channels == 1:  # after resizing, as validation records are decoded
            cropped = cv2.cvtColor(np.ascontiguousarray(cropped), cv2.COLOR_RGB2GRAY)
    if channels == 1:
        return cropped.astype(np.float32)[None]
    return np.ascontiguousarray(cropped.astype(np.float32).transpose(2, 0, 1))


def train_augmentation(augmentation_type: str | None) -> dict[str, float | bool]:
    """``ImageRecordIter`` keyword arguments for the built-in's ``augmentation_type`` values.

    ``None`` gives a centre crop with no randomness, as the built-in does without augmentation.
    """
    if augmentation_type is None:
        return {"rand_crop": False, "rand_mirror": False}
    if augmentation_type not in AUGMENTATION_TYPES:
        raise ValueError(f"unknown augmentation_type {augmentation_type!r}")
    kwargs: dict[str, float | bool] = {"rand_crop": True, "rand_mirror": True}
    if augmentation_type in ("crop_color", "crop_color_transform"):
        kwargs.update(HSL_JITTER)
    if augmentation_type == "crop_color_transform":
        kwargs.update(AFFINE_JITTER)
    return kwargs
