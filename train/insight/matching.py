"""Which images are copies or near-copies of which: a search on coarse colour layouts proposes
a few partners per image, a comparison of aligned 64x64 grey views decides.

Thresholds (stated in every audit report), measured on generated pictures (tests/insight_data)
and on tests/datagen's classes, whose images differ only by noise within a class:
- copy: the same bytes, or 64x64 grey views whose median difference is at most ``COPY_LEVELS``
  grey levels as they are (a training copy is JPEG-packed, a validation copy PNG-packed;
  at most 0.78);
- near-copy: the median difference is at most ``NEAR_LEVELS`` at the best of a shift of up to
  ``MAX_SHIFT`` pixels (6%) and a zoom of up to 8% (re-encoded at JPEG quality 40, resized,
  6% cropped: at most 2.43 in 1,000 pairs from 200 pictures; two tests/datagen images of one
  class and height, 3,480 pairs: at least 2.82, their noise differs). Not looked for between
  two crowded images, those with ``search.NEIGHBOURS`` or more look-alikes: in tests/datagen's
  classes at 10,000 images independent pictures came as close as 2.13.
Perceptual hashes (imagehash's phash) miss slight crops: a 1-pixel crop of a 48-pixel image
moved phash by up to 18 of 64 bits, as far as unrelated pictures.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from train.insight import search, thumbs

COPY_LEVELS = 1.0
NEAR_LEVELS = 2.6
_CHUNK = 2048  # pairs examined at a time
MAX_SHIFT = 4  # of 64 pixels
ZOOMS = (1.0, 1.04, 1.08)
THRESHOLDS = {
    "copy": f"same bytes, or 64x64 grey views differ by <= {COPY_LEVELS:g} grey levels (median)",
    "near_copy": f"64x64 grey views differ by <= {NEAR_LEVELS:g} grey levels (median) at a "
    f"shift of up to {MAX_SHIFT} px and a zoom of up to {ZOOMS[-1] - 1:.0%}; looked for among "
    f"the {search.NEIGHBOURS} nearest 4x4 colour layouts within {search.SEARCH_RMS:g} levels "
    "(RMS) of each image",
    "crowd": f"images with {search.NEIGHBOURS} or more near-identical look-alikes (4x4 colour "
    f"layouts within {search.CROWD_RMS:g} levels RMS): copies between two of them are found only "
    "when byte-identical (independent pictures there differ as little as re-encoded ones)",
}


def exact_pairs(digests: Sequence[bytes]) -> np.ndarray:
    """``(M, 2)`` pairs ``(first, later)`` of byte-identical images (by their content hashes)."""
    first: dict[bytes, int] = {}
    pairs = []
    for k, key in enumerate(digests):
        if key in first:
            pairs.append((first[key], k))
        else:
            first[key] = k
    return np.array(pairs, np.int64).reshape(-1, 2)


def _zoomed(view: np.ndarray, zoom: float) -> np.ndarray:
    side = int(round(thumbs.FINE * zoom))
    big = cv2.resize(view, (side, side), interpolation=cv2.INTER_LINEAR)
    offset = (side - thumbs.FINE) // 2
    return big[offset : offset + thumbs.FINE, offset : offset + thumbs.FINE]


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """The median grey-level difference of two 64x64 views at their best alignment: the
    least squared difference over shifts of up to ``MAX_SHIFT`` pixels of either's centre,
    zoomed by each of ``ZOOMS``, in the other."""
    inner = thumbs.FINE - 2 * MAX_SHIFT
    best, best_pair = np.inf, (a, a)
    for x, y in ((a, b), (b, a)):
        for zoom in ZOOMS:
            centre = _zoomed(x, zoom)[MAX_SHIFT:-MAX_SHIFT, MAX_SHIFT:-MAX_SHIFT]
            scores = cv2.matchTemplate(y, centre, cv2.TM_SQDIFF)
            at = int(scores.argmin())
            if scores.flat[at] < best:
                dy, dx = np.unravel_index(at, scores.shape)
                best, best_pair = scores.flat[at], (centre, y[dy : dy + inner, dx : dx + inner])
    return float(np.median(np.abs(best_pair[0] - best_pair[1])))


def _verdicts(encoded: Sequence[bytes], pairs: np.ndarray, factor: int, workers: int) -> np.ndarray:
    """The verdict on each pair, 0: different, 1: copy, 2: near-copy; a chunk of pairs at a time
    (64x64 views are 16 KB each), the copy test vectorised, the alignment search in threads."""
    out = np.zeros(len(pairs), np.int64)
    for start in range(0, len(pairs), _CHUNK):
        chunk = pairs[start : start + _CHUNK]
        involved, where = np.unique(chunk, return_inverse=True)
        views = np.stack(
            thumbs.in_threads(lambda k: thumbs.fine(encoded[k], factor), involved.tolist(), workers)
        )
        where = where.reshape(-1, 2)
        verdict = np.zeros(len(chunk), np.int64)
        for at in range(0, len(chunk), 256):  # median <= COPY_LEVELS: half the pixels within it
            a, b = where[at : at + 256, 0], where[at : at + 256, 1]
            within = (np.abs(views[a] - views[b]) <= COPY_LEVELS).sum(axis=(1, 2))
            verdict[at : at + 256] = within * 2 >= thumbs.FINE**2
        search = np.flatnonzero(verdict == 0)
        near = thumbs.in_threads(
            lambda pair, views=views: difference(views[pair[0]], views[pair[1]]) <= NEAR_LEVELS,
            where[search].tolist(),
            workers,
        )
        verdict[search[np.array(near, bool)]] = 2
        out[start : start + len(chunk)] = verdict
    return out


def matching_pairs(
    encoded: Sequence[bytes],
    seen: tuple[np.ndarray, np.ndarray, list[bytes]],
    factor: int,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Every pair of images that are copies or near-copies of each other.

    Args:
        encoded: the images as stored.
        seen: their layouts, decodability and hashes (:func:`train.insight.thumbs.layouts`).
        factor: the JPEG decoding reduction (:func:`train.insight.thumbs.decode_factor`).

    Returns:
        ``(i, j, is_copy, crowded)``, ``i < j``; ``is_copy`` is False for a near-copy;
        ``crowded``: how many images are in a crowd.
    """
    points, ok, digests = seen
    exact = exact_pairs(digests)
    pairs, crowded = search.look_alikes(points, ok)
    n = len(encoded)
    pairs = pairs[~np.isin(pairs[:, 0] * n + pairs[:, 1], exact[:, 0] * n + exact[:, 1])]
    pairs = pairs[~crowded[pairs].all(axis=1)]
    verdict = _verdicts(encoded, pairs, factor, workers)
    found = np.concatenate([exact, pairs[verdict > 0]])
    is_copy = np.r_[np.ones(len(exact), bool), verdict[verdict > 0] == 1]
    order = np.lexsort((found[:, 1], found[:, 0]))
    return found[order, 0], found[order, 1], is_copy[order], int(crowded.sum())
