"""Reports in output/data: metrics.csv, learning curves, confusion matrix, per-class report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from train import reports

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HISTORY = [
    {
        "epoch": e,
        "learning_rate": 0.1,
        "train_accuracy": 0.5 + 0.1 * e,
        "train_loss": 1.0 - 0.2 * e,
        "validation_accuracy": 0.4 + 0.1 * e,
        "validation_loss": 1.1 - 0.2 * e,
    }
    for e in range(3)
]

# Rows = true class, columns = predicted class.
MATRIX = np.array([[5, 1, 0], [2, 6, 2], [0, 0, 0]])


def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000  # a drawn figure, not an empty canvas
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_metrics_csv_has_one_row_per_epoch(tmp_path):
    history = [*HISTORY[:2], {**HISTORY[2], "train_top_k_accuracy": 0.9}]
    reports.write_metrics_csv(tmp_path / reports.METRICS_CSV, history)
    rows = list(csv.DictReader((tmp_path / reports.METRICS_CSV).open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[2]["validation_accuracy"]) == pytest.approx(0.6)
    assert rows[0]["train_top_k_accuracy"] == "" and rows[2]["train_top_k_accuracy"] == "0.9"


def test_learning_curves_are_a_png(tmp_path):
    reports.plot_learning_curves(tmp_path / reports.CURVES_PNG, HISTORY)
    _assert_png(tmp_path / reports.CURVES_PNG)


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0, 2])
    assert reports.confusion_matrix(labels, predicted, 3).tolist() == [
        [1, 1, 0],
        [1, 2, 0],
        [0, 0, 1],
    ]


def test_per_class_precision_recall_on_a_known_matrix():
    rows = reports.per_class_report(MATRIX, ["a", "b", "c"])
    by_class = {r["class"]: r for r in rows}
    assert by_class["a"]["precision"] == pytest.approx(5 / 7, abs=1e-6)
    assert by_class["a"]["recall"] == pytest.approx(5 / 6, abs=1e-6)
    assert by_class["b"]["precision"] == pytest.approx(6 / 7, abs=1e-6)
    assert by_class["b"]["recall"] == pytest.approx(6 / 10, abs=1e-6)
    assert by_class["b"]["f1"] == pytest.approx(2 * (6 / 7) * 0.6 / (6 / 7 + 0.6), abs=1e-6)
    assert [r["support"] for r in rows] == [6, 10, 0]
    # A class never predicted and never present has zeros, not a division error.
    assert (by_class["c"]["precision"], by_class["c"]["recall"], by_class["c"]["f1"]) == (0, 0, 0)


def test_single_label_validation_reports_write_png_csv_and_json(tmp_path):
    labels = np.array([0, 0, 1, 1, 2])
    outputs = np.eye(3)[[0, 1, 1, 1, 2]] * 5.0  # logits: one error (a -> b)
    reports.write_validation_reports(tmp_path, outputs, labels, ["a", "b", "c"], False)
    _assert_png(tmp_path / reports.CONFUSION_PNG)
    rows = json.loads((tmp_path / reports.CLASS_REPORT_JSON).read_text())
    assert [(r["class"], r["recall"], r["support"]) for r in rows] == [
        ("a", 0.5, 2),
        ("b", 1.0, 2),
        ("c", 1.0, 1),
    ]
    assert rows[1]["precision"] == pytest.approx(2 / 3, abs=1e-6)
    csv_rows = list(csv.DictReader((tmp_path / reports.CLASS_REPORT_CSV).open()))
    assert [r["class"] for r in csv_rows] == ["a", "b", "c"]


def test_multi_label_report_scores_each_class_independently(tmp_path):
    labels = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=np.float32)
    logits = np.array([[2, -1], [-2, 3], [1, 1], [-1, -1]], dtype=np.float32)
    reports.write_validation_reports(tmp_path, logits, labels, ["x", "y"], True)
    rows = {r["class"]: r for r in json.loads((tmp_path / reports.CLASS_REPORT_JSON).read_text())}
    assert (rows["x"]["precision"], rows["x"]["recall"]) == pytest.approx((0.5, 0.5))
    assert (rows["y"]["precision"], rows["y"]["recall"]) == pytest.approx((1.0, 1.0))
    assert not (tmp_path / reports.CONFUSION_PNG).exists()
