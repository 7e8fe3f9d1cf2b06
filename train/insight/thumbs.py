"""Small grey thumbnails of encoded images, many at a time, decoded in threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

THUMB = 32
_REDUCED = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def decode_factor(shorter_side: int | None) -> int:
    """The JPEG decoding reduction that still leaves at least 64 pixels on the shorter side:
    decoding a 256-pixel image at 1/4 size is several times faster, and 32x32 is all we keep."""
    factor = 1
    while shorter_side and factor < 8 and shorter_side // (factor * 2) >= 64:
        factor *= 2
    return factor


def thumbnail(data: bytes, factor: int = 1) -> tuple[np.ndarray | None, int, int]:
    """A 32x32 grey thumbnail of one encoded image and its (approximate) height and width;
    ``(None, 0, 0)`` when it cannot be decoded."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[factor])
    if image is None or image.size == 0:
        return None, 0, 0
    height, width = image.shape[:2]
    small = cv2.resize(image, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return small, height * factor, width * factor


def thumbnails(
    encoded: list[bytes], factor: int = 1, workers: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thumbnails ``(N, 32, 32) uint8``, sizes ``(N, 2)`` (height, width) and a mask of the
    images that decoded, for a list of encoded images (OpenCV decodes without the GIL)."""

    def chunk(items: list[bytes]) -> list[tuple[np.ndarray | None, int, int]]:
        return [thumbnail(data, factor) for data in items]

    step = max(1, -(-len(encoded) // max(1, workers * 4)))
    parts = [encoded[i : i + step] for i in range(0, len(encoded), step)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = [r for part in pool.map(chunk, parts) for r in part]
    thumbs = np.zeros((len(encoded), THUMB, THUMB), np.uint8)
    sizes = np.zeros((len(encoded), 2), np.int64)
    ok = np.zeros(len(encoded), bool)
    for i, (small, height, width) in enumerate(results):
        if small is not None:
            thumbs[i], sizes[i], ok[i] = small, (height, width), True
    return thumbs, sizes, ok
