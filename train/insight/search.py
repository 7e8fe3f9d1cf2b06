"""Which images look alike: a lossless search on coarse colour layouts (4x4 mean colours,
:func:`train.insight.thumbs.layouts`) that proposes a few partners per image for
:mod:`train.insight.matching` to examine, and counts each image's look-alikes."""

from __future__ import annotations

import numpy as np

SEARCH_RMS = 24.0  # colour levels between 4x4 layouts; near-copies measured at most 13.3
NEIGHBOURS = 5  # partners proposed per image at most; this many look-alikes make a crowd
# Within this many colour levels (RMS) layouts are near-identical (a pixel copy, JPEG against
# PNG: at most 2.7; tests/datagen's images of one class: a median of 1.1 to the nearest).
CROWD_RMS = 3.0
_BLOCK = 1024
LAYOUT_CELLS = 16  # a layout is 16 cells of 3 colours
# Neighbouring cubes, each pair of cubes met once: the cube itself and half of the 26 others.
_FORWARD = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)][13:]


def _nearest(a: np.ndarray, b: np.ndarray, d2: np.ndarray, limit: int) -> np.ndarray:
    """Of pairs ``(a, b)`` with squared distances ``d2``, the row numbers of each ``a``'s
    ``limit`` nearest."""
    order = np.lexsort((d2, a))
    grouped = a[order]
    starts = np.r_[0, np.flatnonzero(np.diff(grouped)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order[rank < limit]


def _close(
    a: np.ndarray, b: np.ndarray, radius2: float, crowd2: float, upper: bool
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """Each row of ``a``'s ``NEIGHBOURS`` nearest rows of ``b`` within ``radius2``, and each
    row of ``b``'s of ``a``, per block, as ``(rows, cols, d2)``; and how many rows of the other
    are within ``crowd2`` of each row of ``a`` and of ``b``. Squared distances come from one
    BLAS product of vectors extended to yield them. A row already in a crowd within its block
    gets no partners (:mod:`train.insight.matching` does not examine crowds).
    ``upper``: ``a`` is ``b``: count each pair once and no row with itself."""
    found, count_a, count_b = [], np.zeros(len(a), np.int64), np.zeros(len(b), np.int64)
    for start in range(0, len(a), _BLOCK):
        for col in range(0, len(b), 4 * _BLOCK):
            d2 = a[start : start + _BLOCK] @ b[col : col + 4 * _BLOCK].T
            if upper:
                rows = np.arange(start, start + len(d2))[:, None]
                d2[np.arange(col, col + d2.shape[1])[None, :] <= rows] = np.inf
            if not (d2 <= radius2).any():
                continue
            tight = d2 <= crowd2
            by_row, by_col = tight.sum(axis=1), tight.sum(axis=0)
            count_a[start : start + len(d2)] += by_row
            count_b[col : col + d2.shape[1]] += by_col
            open_rows = np.flatnonzero(by_row < NEIGHBOURS)
            if len(open_rows):  # each open row's nearest columns
                part = d2[open_rows]
                k = min(NEIGHBOURS, part.shape[1])
                top = np.argpartition(part, k - 1, axis=1)[:, :k]
                near = np.take_along_axis(part, top, axis=1)
                r, j = np.nonzero(near <= radius2)
                found.append((open_rows[r] + start, top[r, j] + col, near[r, j]))
            open_cols = np.flatnonzero(by_col < NEIGHBOURS)
            if len(open_cols):  # and each open column's nearest rows
                part = d2[:, open_cols].T
                k = min(NEIGHBOURS, part.shape[1])
                top = np.argpartition(part, k - 1, axis=1)[:, :k]
                near = np.take_along_axis(part, top, axis=1)
                c, j = np.nonzero(near <= radius2)
                found.append((top[c, j] + start, open_cols[c] + col, near[c, j]))
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
    pairs = tuple(np.concatenate(p) for p in zip(*found, strict=True)) if found else empty
    return pairs, count_a, count_b


def look_alikes(points: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(M, 2)``, ``i < j``, of decodable images whose layouts are within
    ``SEARCH_RMS``, at most ``NEIGHBOURS`` nearest per image; and which images are crowded (have
    at least ``NEIGHBOURS`` near-identical look-alikes, within ``CROWD_RMS``).

    Two layouts within ``SEARCH_RMS`` have mean colours within sqrt(3) x ``SEARCH_RMS`` of each
    other (Cauchy-Schwarz), so images are put in cubes of that side by mean colour and a cube
    only meets its neighbours: nothing is lost, and most pairs are never looked at."""
    index = np.flatnonzero(ok)
    if len(index) < 2:
        return np.empty((0, 2), np.int64), np.zeros(len(points), bool)
    x = points[index].astype(np.float64)
    cell = SEARCH_RMS * np.sqrt(3.0)
    keys = np.floor(x.reshape(len(x), LAYOUT_CELLS, 3).mean(axis=1) / cell).astype(np.int64) + 1
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
    radius2, crowd2 = SEARCH_RMS**2 * points.shape[1], CROWD_RMS**2 * points.shape[1]
    found, alike = [], np.zeros(len(points), np.int64)
    for key, (lo, hi) in bounds.items():
        for step in _FORWARD:
            other = bounds.get(key + (step[0] * side + step[1]) * side + step[2])
            if other is None:
                continue
            upper = step == (0, 0, 0)
            (rows, cols, d2), count_a, count_b = _close(
                left[lo:hi], right[other[0] : other[1]], radius2, crowd2, upper
            )
            alike[index[lo:hi]] += count_a
            alike[index[other[0] : other[1]]] += count_b
            rows, cols = rows + lo, cols + other[0]
            found.append(np.stack([rows, cols, d2], axis=1))
    crowded = alike >= NEIGHBOURS
    if not found:
        return np.empty((0, 2), np.int64), crowded
    rows, cols, d2 = np.concatenate(found).T
    _, first = np.unique(rows * len(points) + cols, return_index=True)  # found from both sides
    rows, cols, d2 = rows[first], cols[first], d2[first]
    both_a, both_b = np.r_[rows, cols].astype(np.int64), np.r_[cols, rows].astype(np.int64)
    near = _nearest(both_a, both_b, np.r_[d2, d2], NEIGHBOURS)
    pairs = np.sort(np.stack([index[both_a[near]], index[both_b[near]]], axis=1), axis=1)
    return np.unique(pairs, axis=0).reshape(-1, 2), crowded
