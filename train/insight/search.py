"""Which images look alike: a lossless search on coarse colour layouts (4x4 mean colours,
:func:`train.insight.thumbs.layouts`) that proposes a few partners per image for
:mod:`train.insight.matching` to examine, and counts each image's look-alikes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

SEARCH_RMS = 24.0  # colour levels between 4x4 layouts; near-copies measured at most 13.3
NEIGHBOURS = 5  # partners proposed per image at most; this many look-alikes make a crowd
# Within this many colour levels (RMS) layouts are near-identical (a pixel copy, JPEG against
# PNG: at most 2.7; tests/datagen's images of one class: a median of 1.1 to the nearest). At 3,
# 2 of 10,000 tests/datagen images were left out of crowds with a sibling as close as a copy.
CROWD_RMS = 6.0
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


def _blocks(
    a: np.ndarray, b: np.ndarray, upper: bool, rows_wanted: np.ndarray, cols_wanted: np.ndarray
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Blocks ``(first row, first column, squared distances)`` of ``a`` against ``b`` (one BLAS
    product of vectors extended to yield squared distances), skipping blocks where no row or
    column is wanted. ``upper``: ``a`` is ``b``: each pair once, no row with itself."""
    for start in range(0, len(a), _BLOCK):
        for col in range(0, len(b), 4 * _BLOCK):
            stop, col_stop = min(start + _BLOCK, len(a)), min(col + 4 * _BLOCK, len(b))
            if upper and col_stop <= start + 1:
                continue
            if not (rows_wanted[start:stop].any() or cols_wanted[col:col_stop].any()):
                continue
            d2 = a[start:stop] @ b[col:col_stop].T
            if upper:
                d2[np.arange(col, col_stop)[None, :] <= np.arange(start, stop)[:, None]] = np.inf
            yield start, col, d2


def _nearest_in(d2: np.ndarray, wanted: np.ndarray, radius2: float) -> tuple[np.ndarray, ...]:
    """For each wanted row of ``d2``, its ``NEIGHBOURS`` nearest columns within ``radius2``."""
    rows = np.flatnonzero(wanted)
    part = d2[rows]
    k = min(NEIGHBOURS, part.shape[1])
    top = np.argpartition(part, k - 1, axis=1)[:, :k]
    near = np.take_along_axis(part, top, axis=1)
    r, j = np.nonzero(near <= radius2)
    return rows[r], top[r, j], near[r, j]


def _partners(
    a: np.ndarray,
    b: np.ndarray,
    radius2: float,
    upper: bool,
    open_a: np.ndarray,
    open_b: np.ndarray,
) -> list[np.ndarray]:
    """``(rows, cols, d2)`` stacks: each open row of ``a``'s nearest rows of ``b`` within
    ``radius2``, and each open row of ``b``'s of ``a``."""
    found = []
    for start, col, d2 in _blocks(a, b, upper, open_a, open_b):
        within = d2 <= radius2
        if not within.any():
            continue
        rows_open = open_a[start : start + len(d2)] & within.any(axis=1)
        cols_open = open_b[col : col + d2.shape[1]] & within.any(axis=0)
        if rows_open.any():
            r, c, near = _nearest_in(d2, rows_open, radius2)
            found.append(np.stack([r + start, c + col, near], axis=1))
        if cols_open.any():
            c, r, near = _nearest_in(d2.T, cols_open, radius2)
            found.append(np.stack([r + start, c + col, near], axis=1))
    return found


def _cubes(x: np.ndarray, radius: float) -> tuple[np.ndarray, list]:
    """An order of ``x`` by cubes of mean colour of side sqrt(3) x ``radius`` and the pairs of
    neighbouring cubes, each once, as ``((lo, hi), (lo, hi), same cube)`` in that order: two
    layouts within ``radius`` (RMS) are in neighbouring cubes (Cauchy-Schwarz)."""
    keys = np.floor(x.reshape(len(x), LAYOUT_CELLS, 3).mean(axis=1) / (radius * np.sqrt(3.0)))
    keys = keys.astype(np.int64) + 1
    side = int(keys.max(initial=0)) + 2
    flat = (keys[:, 0] * side + keys[:, 1]) * side + keys[:, 2]
    order = np.argsort(flat, kind="stable")
    cells, starts = np.unique(flat[order], return_index=True)
    ends = np.r_[starts[1:], len(flat)]
    bounds = {
        k: (lo, hi)
        for k, lo, hi in zip(cells.tolist(), starts.tolist(), ends.tolist(), strict=True)
    }
    return order, [
        ((lo, hi), other, step == (0, 0, 0))
        for key, (lo, hi) in bounds.items()
        for step in _FORWARD
        if (other := bounds.get(key + (step[0] * side + step[1]) * side + step[2]))
    ]


def _extended(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors whose dot products are squared distances: [x, |x|^2, 1] . [-2y, 1, |y|^2]."""
    norms = (x**2).sum(axis=1, keepdims=True)
    ones = np.ones_like(norms)
    return (
        np.hstack([x, norms, ones]).astype(np.float32),
        np.hstack([-2 * x, ones, norms]).astype(np.float32),
    )


def look_alikes(points: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(M, 2)``, ``i < j``, of decodable images whose layouts are within
    ``SEARCH_RMS``, at most ``NEIGHBOURS`` nearest per image; and which images are crowded (have
    at least ``NEIGHBOURS`` near-identical look-alikes, within ``CROWD_RMS``).

    Lossless and mostly far from quadratic: images are put in cubes by mean colour and a cube
    only meets its neighbours (:func:`_cubes`). A first pass, on small cubes, counts each
    image's near-identical look-alikes; the second, on large ones, looks for partners of the
    images not in a crowd (:mod:`train.insight.matching` does not compare two crowded ones)."""
    index = np.flatnonzero(ok)
    crowded = np.zeros(len(points), bool)
    if len(index) < 2:
        return np.empty((0, 2), np.int64), crowded
    x = points[index].astype(np.float64)
    order, cubes = _cubes(x, 3 * CROWD_RMS)  # bigger cubes than needed: fewer, larger blocks
    left, right = _extended(x[order])
    alike, everyone = np.zeros(len(x), np.int64), np.ones(len(x), bool)
    crowd2 = CROWD_RMS**2 * points.shape[1]
    for (lo, hi), (o_lo, o_hi), upper in cubes:
        pair = left[lo:hi], right[o_lo:o_hi], upper, everyone[lo:hi], everyone[o_lo:o_hi]
        for start, col, d2 in _blocks(*pair):
            tight = d2 <= crowd2
            alike[order[lo + start : lo + start + len(d2)]] += tight.sum(axis=1)
            alike[order[o_lo + col : o_lo + col + d2.shape[1]]] += tight.sum(axis=0)
    crowded[index] = alike >= NEIGHBOURS
    order, cubes = _cubes(x, SEARCH_RMS)
    left, right = _extended(x[order])
    open_ = alike[order] < NEIGHBOURS
    found = []
    for (lo, hi), (o_lo, o_hi), upper in cubes:
        for rows, cols, d2 in (
            part.T
            for part in _partners(
                left[lo:hi],
                right[o_lo:o_hi],
                SEARCH_RMS**2 * points.shape[1],
                upper,
                open_[lo:hi],
                open_[o_lo:o_hi],
            )
        ):
            found.append(
                np.stack(
                    [
                        order[(rows + lo).astype(np.int64)],
                        order[(cols + o_lo).astype(np.int64)],
                        d2,
                    ],
                    axis=1,
                )
            )
    if not found:
        return np.empty((0, 2), np.int64), crowded
    rows, cols, d2 = np.concatenate(found).T
    _, first = np.unique(rows * len(points) + cols, return_index=True)  # found from both sides
    rows, cols, d2 = rows[first], cols[first], d2[first]
    both_a, both_b = np.r_[rows, cols].astype(np.int64), np.r_[cols, rows].astype(np.int64)
    near = _nearest(both_a, both_b, np.r_[d2, d2], NEIGHBOURS)
    pairs = np.sort(np.stack([index[both_a[near]], index[both_b[near]]], axis=1), axis=1)
    return np.unique(pairs, axis=0).reshape(-1, 2), crowded
