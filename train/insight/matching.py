"""Which images are copies or near-copies of which: a search on coarse colour layouts proposes
a few partners per image, a comparison of aligned 64x64 grey views decides.

Thresholds (stated in every audit report), measured on generated pictures (tests/insight_data)
and on tests/datagen's classes, whose images differ only by noise within a class:
- copy: the same bytes, or 64x64 grey views whose median difference is at most ``COPY_LEVELS``
  grey levels as they are (a training copy is JPEG-packed, a validation copy PNG-packed;
  at most 0.78);
- near-copy: the median difference is at most ``NEAR_LEVELS`` at the best of a shift of up to
  ``MAX_SHIFT`` pixels (6%) and a zoom of up to 8% (re-encoded at JPEG quality 40, resized,
  6% cropped: at most 2.43 in 1,000 pairs from 200 pictures; two tests/datagen images of one class and
  height, 3,480 pairs: at least 2.82, their noise differs).
Perceptual hashes (imagehash's phash) miss slight crops: a 1-pixel crop of a 48-pixel image
moved phash by up to 18 of 64 bits, as far as unrelated pictures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import cv2
import numpy as np

from train.insight import thumbs

COPY_LEVELS = 1.0
NEAR_LEVELS = 2.6
MAX_SHIFT = 4  # of 64 pixels
ZOOMS = (1.0, 1.04, 1.08)
SEARCH_RMS = 24.0  # colour levels between 4x4 layouts; near-copies measured at most 13.3
NEIGHBOURS = 5  # partners proposed per image at most

THRESHOLDS = {
    "copy": f"same bytes, or 64x64 grey views differ by <= {COPY_LEVELS:g} grey levels (median)",
    "near_copy": f"64x64 grey views differ by <= {NEAR_LEVELS:g} grey levels (median) at a "
    f"shift of up to {MAX_SHIFT} px and a zoom of up to {ZOOMS[-1] - 1:.0%}; at most "
    f"{NEIGHBOURS} partners examined per image",
}


def exact_pairs(encoded: Sequence[bytes]) -> np.ndarray:
    """``(M, 2)`` pairs ``(first, later)`` of byte-identical images (content hash)."""
    first: dict[bytes, int] = {}
    pairs = []
    for k, data in enumerate(encoded):
        key = hashlib.blake2b(data, digest_size=16).digest()
        if key in first:
            pairs.append((first[key], k))
        else:
            first[key] = k
    return np.array(pairs, np.int64).reshape(-1, 2)


def _nearest(a: np.ndarray, b: np.ndarray, d2: np.ndarray, limit: int) -> np.ndarray:
    """Of pairs ``(a, b)`` with squared distances ``d2``, the row numbers of each ``a``'s
    ``limit`` nearest."""
    order = np.lexsort((d2, a))
    grouped = a[order]
    starts = np.r_[0, np.flatnonzero(np.diff(grouped)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order[rank < limit]


def candidates(points: np.ndarray, ok: np.ndarray, block: int = 1024) -> np.ndarray:
    """``(M, 2)`` pairs ``i < j`` of decodable images whose layouts are within ``SEARCH_RMS``,
    at most ``NEIGHBOURS`` nearest per image.

    Images are sorted by mean colour and a block of rows only meets the columns whose mean is
    within ``SEARCH_RMS`` (the RMS difference is at least the difference of the means, so
    nothing is lost); each block is a BLAS product of distances."""
    index = np.flatnonzero(ok)
    mean = points[index].mean(axis=1)
    order = index[np.argsort(mean, kind="stable")]
    mean = np.sort(mean, kind="stable")
    sorted_points = points[order].astype(np.float32)
    norms = (sorted_points**2).sum(axis=1)
    radius2 = SEARCH_RMS**2 * points.shape[1]
    found = []
    for start in range(0, len(order), block):
        stop = min(start + block, len(order))
        end = int(np.searchsorted(mean, mean[stop - 1] + SEARCH_RMS, side="right"))
        for col in range(start, end, 4 * block):
            col_end = min(col + 4 * block, end)
            d2 = (
                norms[start:stop, None]
                + norms[None, col:col_end]
                - 2 * sorted_points[start:stop] @ sorted_points[col:col_end].T
            )
            rows, cols = np.nonzero(d2 <= radius2)
            rows, cols = rows + start, cols + col
            keep = cols > rows
            rows, cols, dist = rows[keep], cols[keep], d2[rows[keep] - start, cols[keep] - col]
            near = _nearest(rows, cols, dist, NEIGHBOURS)
            found.append(np.stack([rows[near], cols[near], dist[near]], axis=1))
    if not found:
        return np.empty((0, 2), np.int64)
    rows, cols, dist = np.concatenate(found).T
    both_a, both_b = np.r_[rows, cols].astype(np.int64), np.r_[cols, rows].astype(np.int64)
    near = _nearest(both_a, both_b, np.r_[dist, dist], NEIGHBOURS)
    pairs = np.sort(np.stack([order[both_a[near]], order[both_b[near]]], axis=1), axis=1)
    return np.unique(pairs, axis=0)


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


def _verdict(a: np.ndarray, b: np.ndarray) -> int:
    """0: different, 1: copy, 2: near-copy."""
    if float(np.median(np.abs(a - b))) <= COPY_LEVELS:
        return 1
    return 2 if difference(a, b) <= NEAR_LEVELS else 0


def matching_pairs(
    encoded: Sequence[bytes], points: np.ndarray, ok: np.ndarray, factor: int, workers: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of images that are copies or near-copies of each other.

    Args:
        encoded: the images as stored.
        points, ok: their layouts and decodability (:func:`train.insight.thumbs.layouts`).
        factor: the JPEG decoding reduction (:func:`train.insight.thumbs.decode_factor`).

    Returns:
        ``(i, j, is_copy)``, ``i < j``; ``is_copy`` is False for a near-copy.
    """
    exact = exact_pairs(encoded)
    pairs = candidates(points, ok)
    n = len(encoded)
    pairs = pairs[~np.isin(pairs[:, 0] * n + pairs[:, 1], exact[:, 0] * n + exact[:, 1])]
    involved = np.unique(pairs)
    views = dict(
        zip(
            involved.tolist(),
            thumbs.in_threads(
                lambda d: thumbs.fine(d, factor), [encoded[k] for k in involved], workers
            ),
            strict=True,
        )
    )
    verdicts = thumbs.in_threads(
        lambda p: _verdict(views[p[0]], views[p[1]]), pairs.tolist(), workers
    )
    verdict = np.array(verdicts, np.int64)
    found = np.concatenate([exact, pairs[verdict > 0]])
    is_copy = np.r_[np.ones(len(exact), bool), verdict[verdict > 0] == 1]
    order = np.lexsort((found[:, 1], found[:, 0])) if len(found) else np.empty(0, np.int64)
    return found[order, 0], found[order, 1], is_copy[order]
