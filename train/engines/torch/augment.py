"""MXNet's ``ImageRecordIter`` image path, ported with OpenCV: decode, resize, affine, crop,
HLS jitter, mirror, in the C++ order (``image_aug_default.cc`` ``DefaultImageAugmenter::Process``,
then the mirror of ``iter_image_recordio_2.cc``) and with its ranges and integer arithmetic.

Every random number an image uses is drawn first, into :class:`Draws`; the transforms are then
deterministic functions of the image and the draws. That lets the tests check each transform
exactly for given draws, and the draws' distributions separately; the GPU path
(:mod:`train.engines.torch.gpu`) applies the same draws. The numbers (jitter ranges) come from
:func:`train.presets.train_augmentation`, the one place that states the built-in's settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from train import presets
from train.errors import ClientError

FILL_VALUE = 255  # ImageRecordIter's default fill_value: the corners an affine warp uncovers
HLS_LIMITS = (180, 255, 255)  # OpenCV's 8-bit H, L, S ranges (H in degrees / 2)


@dataclass(frozen=True)
class AugmentSettings:
    """What ``ImageRecordIter`` is told: output size, ``resize`` and the augmentation keywords."""

    image_shape: tuple[int, int, int]  # (channels, height, width)
    resize: int | None = None  # the iterator's shorter-side resize (user .rec files only)
    rand_crop: bool = False
    rand_mirror: bool = False
    random_h: int = 0
    random_s: int = 0
    random_l: int = 0
    max_rotate_angle: int = 0
    max_shear_ratio: float = 0.0
    max_aspect_ratio: float = 0.0

    @classmethod
    def for_training(
        cls, augmentation_type: str | None, image_shape: tuple[int, int, int], resize: int | None
    ) -> AugmentSettings:
        """The built-in's ``augmentation_type`` as :func:`presets.train_augmentation` gives it."""
        return cls(tuple(image_shape), resize, **presets.train_augmentation(augmentation_type))

    @classmethod
    def for_evaluation(cls, image_shape: tuple[int, int, int], resize: int | None):
        """Validation: centre crop, no randomness."""
        return cls(tuple(image_shape), resize)

    @property
    def affine(self) -> bool:
        return self.max_rotate_angle > 0 or self.max_shear_ratio > 0 or self.max_aspect_ratio > 0

    @property
    def color(self) -> bool:
        return bool(self.random_h or self.random_s or self.random_l)


@dataclass(frozen=True)
class Draws:
    """One image's random numbers. ``top``/``left`` are fractions in [0, 1) turned into integer
    offsets once the image size is known (uniform over ``0..H-h`` inclusive, as C++'s
    ``uniform_int_distribution``); negative means the centre."""

    shear: float = 0.0
    angle: int = 0
    ratio: float = 1.0
    top: float = -1.0
    left: float = -1.0
    dh: int = 0
    ds: int = 0
    dl: int = 0
    mirror: bool = False


def draw(settings: AugmentSettings, rng: np.random.Generator) -> Draws:
    """Draw one image's numbers with ``ImageRecordIter``'s distributions: shear ~ U(-m, m),
    integer angle ~ U{-a..a}, aspect ratio ~ U(1-r, 1+r), HLS offsets truncated toward zero
    from U(-v, v) (C++ ``int`` conversion), mirror ~ Bernoulli(0.5)."""
    s = settings
    u = rng.random(8)
    return Draws(
        shear=float(u[0] * s.max_shear_ratio * 2 - s.max_shear_ratio) if s.affine else 0.0,
        angle=int(rng.integers(-s.max_rotate_angle, s.max_rotate_angle + 1)) if s.affine else 0,
        ratio=float(u[1] * s.max_aspect_ratio * 2 - s.max_aspect_ratio + 1) if s.affine else 1.0,
        top=float(u[2]) if s.rand_crop else -1.0,
        left=float(u[3]) if s.rand_crop else -1.0,
        dh=int(u[4] * s.random_h * 2 - s.random_h),
        ds=int(u[5] * s.random_s * 2 - s.random_s),
        dl=int(u[6] * s.random_l * 2 - s.random_l),
        mirror=bool(u[7] < 0.5) if s.rand_mirror else False,
    )


def decode(payload: bytes, channels: int) -> np.ndarray:
    """HxWxC uint8 as ``ImageRecordIter`` decodes: BGR colour for 3 channels, OpenCV's own
    grayscale read (not a colour conversion) for 1.

    Raises:
        ClientError: the payload is not an image OpenCV can decode.
    """
    flag = cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), flag)
    if image is None:
        raise ClientError("a record's image cannot be decoded: the .rec file holds a bad image")
    return image if image.ndim == 3 else image[:, :, None]


def resized_shape(height: int, width: int, resize: int) -> tuple[int, int]:
    """The iterator's ``resize``: the shorter side to ``resize``, the longer with C++ integer
    division (``resize * long / short``), not rounding."""
    if height > width:
        return resize * height // width, resize
    return resize, resize * width // height


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to :func:`resized_shape`, done even when the size does not change."""
    height, width = resized_shape(image.shape[0], image.shape[1], size)
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return out if out.ndim == 3 else out[:, :, None]


def affine_matrix(width: int, height: int, angle: int, shear: float, ratio: float) -> np.ndarray:
    """The 2x3 matrix ``ImageRecordIter`` warps with (scale 1), in float32 as C++ builds it."""
    f = np.float32
    a, b = f(math.cos(angle / 180.0 * math.pi)), f(math.sin(angle / 180.0 * math.pi))
    hs = f(2) / (f(1) + f(ratio))
    ws, s = f(ratio) * hs, f(shear)
    m = np.zeros((2, 3), np.float32)
    m[0, 0], m[1, 0] = hs * a - s * b * ws, -b * ws
    m[0, 1], m[1, 1] = hs * b + s * a * ws, a * ws
    m[0, 2] = (f(width) - (m[0, 0] * f(width) + m[0, 1] * f(height))) / f(2)
    m[1, 2] = (f(height) - (m[1, 0] * f(width) + m[1, 1] * f(height))) / f(2)
    return m


def warp(image: np.ndarray, draws: Draws) -> np.ndarray:
    """Rotate, shear and stretch about the centre, to the same size, white outside."""
    height, width, channels = image.shape
    m = affine_matrix(width, height, draws.angle, draws.shear, draws.ratio)
    fill = (FILL_VALUE,) * 3
    out = cv2.warpAffine(
        image, m, (width, height), flags=cv2.INTER_LINEAR, borderValue=fill
    )  # borderMode defaults to BORDER_CONSTANT
    return out if out.ndim == 3 else out[:, :, None]


def crop_offsets(height: int, width: int, out_h: int, out_w: int, draws: Draws) -> tuple[int, int]:
    """(top, left): uniform over ``0..H-h`` when drawn, else the centre ``(H-h)//2``.

    Raises:
        ClientError: the image is smaller than the output (MXNet aborts on a ``CHECK``).
    """
    if height < out_h or width < out_w:
        raise ClientError(
            f"a {width}x{height} record is smaller than image_shape {out_w}x{out_h}: set "
            f"'resize' to at least {max(out_h, out_w)}, or give images at least that large"
        )
    if draws.top < 0:
        return (height - out_h) // 2, (width - out_w) // 2
    return int(draws.top * (height - out_h + 1)), int(draws.left * (width - out_w + 1))


def hls_jitter(image_bgr: np.ndarray, dh: int, ds: int, dl: int) -> np.ndarray:
    """Add the offsets in OpenCV's 8-bit HLS, clipped (not wrapped) to H<=180, L, S<=255: a
    saturating add clips to 0..255, then hue is capped at 180."""
    hls = cv2.add(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HLS), (dh, dl, ds, 0))
    if dh > 0:
        np.minimum(hls[:, :, 0], HLS_LIMITS[0], out=hls[:, :, 0])
    return cv2.cvtColor(hls, cv2.COLOR_HLS2BGR)


def augment(image: np.ndarray, settings: AugmentSettings, draws: Draws) -> np.ndarray:
    """Decoded HxWxC (BGR) -> CxHxW uint8 RGB, the iterator's steps in its order (a strided
    view: the caller copies it once, into its batch). One-channel images skip the HLS jitter
    (MXNet's iterator aborts on them: OpenCV's BGR2HLS needs three channels)."""
    channels, out_h, out_w = settings.image_shape
    if settings.resize:
        image = resize(image, settings.resize)
    if settings.affine:
        image = warp(image, draws)
    top, left = crop_offsets(image.shape[0], image.shape[1], out_h, out_w, draws)
    image = image[top : top + out_h, left : left + out_w]
    if settings.color and channels == 3:
        image = hls_jitter(np.ascontiguousarray(image), draws.dh, draws.ds, draws.dl)
    if draws.mirror:
        image = image[:, ::-1]
    if channels == 3:
        image = image[:, :, ::-1]  # BGR -> RGB, as the iterator copies pixels out
    return image.transpose(2, 0, 1)
