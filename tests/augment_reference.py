"""Independent references for the PyTorch engine's augmentation tests: MXNet's C++ steps written
out again with plain OpenCV and numpy (not the product's code), for images in BGR as decoded."""

from __future__ import annotations

import cv2
import numpy as np


def window(image_bgr: np.ndarray, top: int, left: int, mirror: bool, shape) -> np.ndarray:
    """The (C, h, w) RGB crop at (top, left), flipped left-right with ``mirror``."""
    crop = image_bgr[top : top + shape[1], left : left + shape[2], ::-1]
    return (crop[:, ::-1] if mirror else crop).transpose(2, 0, 1)


def find_window(image_bgr: np.ndarray, out: np.ndarray) -> tuple[int, int, bool]:
    """The one (top, left, mirror) whose window is ``out``."""
    shape = out.shape
    h, w = image_bgr.shape[0] - shape[1], image_bgr.shape[1] - shape[2]
    found = [
        (y, x, m)
        for y in range(h + 1)
        for x in range(w + 1)
        for m in (False, True)
        if np.array_equal(window(image_bgr, y, x, m, shape), out)
    ]
    assert len(found) == 1, "MXNet's output is not one crop window of the image"
    return found[0]


def hls(image_rgb_chw: np.ndarray, dh: int, ds: int, dl: int) -> np.ndarray:
    """The C++ loop over OpenCV's 8-bit HLS, written out independently."""
    bgr = np.ascontiguousarray(image_rgb_chw.transpose(1, 2, 0)[:, :, ::-1])
    hls = cv2.cvtColor(bgr, cv2.COLOR_BGR2HLS).astype(int) + [dh, dl, ds]
    hls = np.clip(hls, 0, [180, 255, 255]).astype(np.uint8)
    return cv2.cvtColor(hls, cv2.COLOR_HLS2BGR)[:, :, ::-1].transpose(2, 0, 1)


def ks(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())
