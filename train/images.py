"""Safe image decoding shared by the RecordIO packer and the inference server.

Every image goes through :func:`decode_image`, which refuses what should never reach a decoder
(empty bytes, unknown formats, decompression bombs, truncated JPEG/PNG) with a
:class:`BadImage` that says why, and turns what is merely unusual (grayscale, CMYK, 16-bit,
alpha channel, palette) into plain 8-bit RGB.

The pixel limit is the caller's (``max_image_pixels``, ``SERVE_MAX_IMAGE_PIXELS``), checked from
the header before any decoder runs. The decoders' own caps must not override it: entry points
call :func:`lift_pillow_limit` (Pillow refuses over 179 MP by default), the server gives its
workers :func:`opencv_limit_environment` (read once, when OpenCV loads), and an image over an
OpenCV cap that could not be set in time is decoded by Pillow instead.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

# A 30000x30000 image is 900 megapixels; phone and DSLR photos stay well under 100.
DEFAULT_MAX_PIXELS = 100_000_000
# OpenCV 4 reads its pixel cap (default 2**30) from this variable when the library loads.
OPENCV_PIXEL_LIMIT_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"


class BadImage(ValueError):
    """The bytes are not an image this product can use; the message says why."""


class ImageTooLarge(BadImage):
    """The image declares more pixels than allowed (a decompression bomb, or just too big).

    Raised from the header alone, before any pixel is decoded; the server answers 413.
    """


def lift_pillow_limit() -> None:
    """Switch off Pillow's own decompression-bomb cap in this process (an entry point's
    set-up): :func:`decode_image` checks every image against the caller's limit first."""
    Image.MAX_IMAGE_PIXELS = None


def opencv_limit_environment(max_pixels: int) -> dict[str, str]:
    """The environment that gives OpenCV ``max_pixels`` as its cap, for a process not started
    yet (OpenCV reads it once, when it loads)."""
    return {OPENCV_PIXEL_LIMIT_ENV: str(max_pixels)}


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height read from the header alone, without decoding any pixels."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image too large to decode safely ({exc})") from None
    except Exception:
        raise BadImage("not a recognised image format (expected JPEG, PNG, BMP, ...)") from None


def _check_complete(data: bytes) -> None:
    """Refuse JPEG and PNG files whose end marker is missing: they were cut short."""
    if data.startswith(_JPEG_SOI) and _JPEG_EOI not in data[-1024:] and not _jpeg_end(data):
        raise BadImage("truncated JPEG (no end-of-image marker)")
    if data.startswith(_PNG_MAGIC) and _PNG_IEND not in data[-64:]:
        raise BadImage("truncated PNG (no IEND chunk)")


def _jpeg_end(data: bytes) -> int | None:
    """Offset just past the end-of-image marker of the JPEG that starts ``data``, found by
    walking its segments (so a thumbnail's marker inside EXIF does not count); None when the
    data ends first. Only asked when the marker is not at the end: phone "Motion Photos"
    append a video after a complete JPEG, while a cut-off (or zero-padded) file never ends."""
    pos, size = 2, len(data)
    while pos + 1 < size:
        marker = data[pos + 1]
        if data[pos] != 0xFF:
            return None
        if marker == 0xD9:
            return pos + 2
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill, no length
            pos += 1 if marker == 0xFF else 2
            continue
        if pos + 4 > size:
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        while marker == 0xDA:  # entropy-coded scan: runs to the next marker
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= size:
                return None
            if data[pos + 1] != 0x00 and not 0xD0 <= data[pos + 1] <= 0xD7:
                break  # a real marker (or fill before one): back to the segment walk
            pos += 2
    return None


def _to_rgb8(image: np.ndarray) -> np.ndarray:
    """Convert what OpenCV decoded (gray, BGR, BGRA, 8 or 16 bit) to 8-bit RGB."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        # Composite on white: transparent pixels often hide black or garbage RGB.
        rgb = image[:, :, :3].astype(np.float32)
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        blended = rgb * alpha + 255.0 * (1.0 - alpha)
        return cv2.cvtColor(blended.round().astype(np.uint8), cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes into an HxWx3 uint8 RGB array.

    Args:
        data: the encoded file (JPEG, PNG, BMP, TIFF, WebP, ...).
        max_pixels: images with more pixels than this are refused before decoding.

    Raises:
        BadImage: empty, unknown, truncated or undecodable input.
        ImageTooLarge: (a BadImage) more than ``max_pixels`` pixels.
    """
    width, height = image_size(data)
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image too large: {width}x{height} ({width * height / 1e6:.0f} megapixels), over "
            f"the limit of {max_pixels / 1e6:.0f} megapixels; downscale it first"
        )
    _check_complete(data)
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:  # over OpenCV's own pixel cap, which the caller's limit allows
        image = None
    if image is None or image.size == 0:
        image = _decode_with_pillow(data)
    return _to_rgb8(image)


def _decode_with_pillow(data: bytes) -> np.ndarray:
    """Fallback for formats OpenCV cannot read (CMYK variants, some TIFFs): Pillow to RGB."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            rgb = np.asarray(img.convert("RGB"))
    except Exception as exc:
        raise BadImage(f"could not decode image ({type(exc).__name__}: {exc})") from None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def encode_jpeg(image_rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB image as JPEG (used to pack training records)."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise BadImage("could not re-encode image as JPEG")
    return buf.tobytes()


def encode_png(image_rgb: np.ndarray) -> bytes:
    """Encode an RGB image losslessly (used to pack validation records, so validation sees
    exactly the pixels the server computes)."""
    ok, buf = cv2.imencode(
        ".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    if not ok:
        raise BadImage("could not re-encode image as PNG")
    return buf.tobytes()
