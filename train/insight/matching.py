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
  class and height, 3,480 pairs: at least 2.82, their noise differs).
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
_BLOCK = 1024
# Neighbouring cubes, each pair of cubes met once: the cube itself and half of the 26 others.
_FORWARD = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)][13:]

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


def _close(a: np.ndarray, b: np.ndarray, radius2: float) -> tuple[np.ndarray, ...]:
    """Pairs ``(row of a, row of b, squared distance)`` within ``radius2``, by one BLAS product
    of vectors extended so that it yields squared distances."""
    found = []
    for start in range(0, len(a), _BLOCK):
        rows = a[start : start + _BLOCK]
        for col in range(0, len(b), 4 * _BLOCK):
            d2 = rows @ b[col : col + 4 * _BLOCK].T
            r, c = np.nonzero(d2 <= radius2)
            found.append((r + start, c + col, d2[r, c]))
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))


def candidates(points: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``(M, 2)`` pairs ``i < j`` of decodable images whose layouts are within ``SEARCH_RMS``,
    at most ``NEIGHBOURS`` nearest per image.

    Two layouts within ``SEARCH_RMS`` have mean colours within sqrt(3) x ``SEARCH_RMS`` of each
    other (Cauchy-Schwarz), so images are put in cubes of that side by mean colour and a cube
    only meets its neighbours: nothing is lost, and most pairs are never looked at."""
    index = np.flatnonzero(ok)
    x = points[index].astype(np.float64)
    cell = SEARCH_RMS * np.sqrt(3.0)
    keys = np.floor(x.reshape(len(x), -1, 3).mean(axis=1) / cell).astype(np.int64) + 1
    side = int(keys.max(initial=0)) + 2
    flat = (keys[:, 0] * side + keys[:, 1]) * side + keys[:, 2]
    order = np.argsort(flat, kind="stable")
    flat, x, index = flat[order], x[order], index[order]
    norms = (x**2).sum(axis=1, keepdims=True)
    ones = np.ones_like(norms)
    left = np.hstack([x, norms, ones]).astype(np.float32)
    right = np.hstack([-2 * x, ones, norms]).astype(np.float32)
    cells, starts = np.unique(flat, return_index=True)
    ends = np.r_[starts[1:], len(flat)]
    bounds = {
        k: (lo, hi)
        for k, lo, hi in zip(cells.tolist(), starts.tolist(), ends.tolist(), strict=True)
    }
    radius2 = SEARCH_RMS**2 * points.shape[1]
    found = []
    for key, (lo, hi) in bounds.items():
        for step in _FORWARD:
            other = bounds.get(key + (step[0] * side + step[1]) * side + step[2])
            if other is None:
                continue
            rows, cols, d2 = _close(left[lo:hi], right[other[0] : other[1]], radius2)
            rows, cols = rows + lo, cols + other[0]
            keep = cols > rows if step == (0, 0, 0) else np.ones(len(rows), bool)
            rows, cols, d2 = rows[keep], cols[keep], d2[keep]
            near = _nearest(rows, cols, d2, NEIGHBOURS)
            found.append(np.stack([rows[near], cols[near], d2[near]], axis=1))
    if not found:
        return np.empty((0, 2), np.int64)
    rows, cols, d2 = np.concatenate(found).T
    both_a, both_b = np.r_[rows, cols].astype(np.int64), np.r_[cols, rows].astype(np.int64)
    near = _nearest(both_a, both_b, np.r_[d2, d2], NEIGHBOURS)
    pairs = np.sort(np.stack([index[both_a[near]], index[both_b[near]]], axis=1), axis=1)
    return np.unique(pairs, axis=0).reshape(-1, 2)


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
