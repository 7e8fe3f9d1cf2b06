"""What the audit keeps of each image: a coarse colour layout to search with (48 numbers), its
size, and, for the few images a search pairs up, a finer grey view to decide with. Decoded by
OpenCV in threads (it releases the GIL), at a JPEG reduction that keeps enough pixels."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import cv2
import numpy as np

LAYOUT = 4  # the search descriptor: a 4x4 grid of mean colours
FINE = 64  # the deciding view: 64x64 grey
_COLOUR = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_GREY = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
T = TypeVar("T")


def decode_factor(shorter_side: int | None) -> int:
    """The JPEG decoding reduction that still leaves at least 64 pixels on the shorter side:
    decoding a 256-pixel image at 1/4 size is several times faster, and 64 is all we look at."""
    factor = 1
    while shorter_side and factor < 8 and shorter_side // (factor * 2) >= FINE:
        factor *= 2
    return factor


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    smaller = min(image.shape[:2]) >= side
    interpolation = cv2.INTER_AREA if smaller else cv2.INTER_LINEAR
    return cv2.resize(image, (side, side), interpolation=interpolation)


def layout(data: bytes, factor: int = 1) -> tuple[np.ndarray | None, int, int, bytes]:
    """The 4x4 mean colours (BGR, 48 numbers) of one encoded image, its (approximate) height
    and width, and a hash of its bytes; ``(None, 0, 0, hash)`` when it cannot be decoded."""
    digest = hashlib.blake2b(data, digest_size=16).digest()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _COLOUR[factor])
    if image is None or image.size == 0:
        return None, 0, 0, digest
    height, width = image.shape[:2]
    small = cv2.resize(image, (LAYOUT, LAYOUT), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32).ravel(), height * factor, width * factor, digest


def fine(data: bytes, factor: int = 1) -> np.ndarray:
    """The 64x64 grey view (float32) of one encoded image; zeros when it cannot be decoded."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _GREY[factor])
    if image is None or image.size == 0:
        return np.zeros((FINE, FINE), np.float32)
    return _shrink(image.astype(np.float32), FINE)


def in_threads(work: Callable[[Any], T], items: Sequence[Any], workers: int) -> list[T]:
    """``work`` on every item, in order, in ``workers`` threads (chunks, not one task each;
    each item is fetched in its thread, so a lazy sequence is read there)."""
    step = max(1, -(-len(items) // max(1, workers * 4)))
    parts = [range(i, min(i + step, len(items))) for i in range(0, len(items), step)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [r for part in pool.map(lambda p: [work(items[k]) for k in p], parts) for r in part]


def layouts(
    encoded: Sequence[bytes], factor: int = 1, workers: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[bytes]]:
    """Layouts ``(N, 48) float32``, sizes ``(N, 2)`` (height, width), a mask of the images
    that decoded and the hashes of their bytes, for a sequence of encoded images."""
    results = in_threads(lambda data: layout(data, factor), encoded, workers)
    points = np.zeros((len(encoded), 3 * LAYOUT * LAYOUT), np.float32)
    sizes = np.zeros((len(encoded), 2), np.int64)
    ok = np.zeros(len(encoded), bool)
    for i, (small, height, width, _) in enumerate(results):
        if small is not None:
            points[i], sizes[i], ok[i] = small, (height, width), True
    return points, sizes, ok, [r[3] for r in results]
