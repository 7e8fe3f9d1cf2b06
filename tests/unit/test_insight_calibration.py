"""Expected calibration error against a value worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from train.insight.calibration import reliability, softmax


def test_ece_matches_a_hand_computed_value() -> None:
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.35, 0.65], [0.4, 0.6], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 0, 1])
    # Top-1 confidences 0.95 0.9 0.65 0.6 0.8; right: yes no yes no yes. Five bins (lo, hi]:
    # bin (0.4,0.6]: {0.6 wrong} -> |0 - 0.6| = 0.6
    # bin (0.6,0.8]: {0.65 right, 0.8 right} -> |1 - 0.725| = 0.275
    # bin (0.8,1.0]: {0.95 right, 0.9 wrong} -> |0.5 - 0.925| = 0.425
    expected = (1 * 0.6 + 2 * 0.275 + 2 * 0.425) / 5
    assert reliability(probs, labels, bins=5)["ece"] == pytest.approx(expected)


def test_a_perfectly_calibrated_set_has_zero_ece() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert reliability(probs, np.array([0, 1]))["ece"] == pytest.approx(0.0)


def test_softmax_rows_sum_to_one() -> None:
    assert softmax(np.array([[1000.0, 0.0], [1.0, 2.0]])).sum(axis=1) == pytest.approx([1, 1])
