"""What a person reads after training: ``metrics.csv``, learning curves, a confusion matrix
and a per-class precision/recall report, written to ``output/data/``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from train import artifacts

METRICS_CSV = "metrics.csv"
CURVES_PNG = "learning_curves.png"
CONFUSION_PNG = "confusion_matrix.png"
CLASS_REPORT_CSV = "per_class_report.csv"
CLASS_REPORT_JSON = "per_class_report.json"


def write_metrics_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """One row per epoch, all metrics as columns."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    artifacts.atomic_write_bytes(path, buffer.getvalue().encode())


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(path: Path, history: list[dict[str, Any]]) -> None:
    """Accuracy and loss per epoch, training against validation."""
    plt = _figure()
    epochs = [row["epoch"] for row in history]
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    acc_ax.plot(epochs, [r["train_accuracy"] for r in history], "o-", label="train")
    acc_ax.plot(epochs, [r["validation_accuracy"] for r in history], "o-", label="validation")
    acc_ax.set(title="Accuracy", xlabel="epoch", ylim=(0, 1.02))
    loss_ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    loss_ax.plot(epochs, [r["validation_loss"] for r in history], "o-", label="validation")
    loss_ax.set(title="Loss", xlabel="epoch")
    from matplotlib.ticker import MaxNLocator

    for ax in (acc_ax, loss_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    artifacts.atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def plot_confusion_matrix(path: Path, matrix: np.ndarray, class_names: list[str]) -> None:
    """A heat map of the row-normalised confusion matrix, with counts when it is small."""
    plt = _figure()
    n = len(class_names)
    size = min(4 + 0.35 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set(title="Validation confusion matrix (row-normalised)", xlabel="predicted", ylabel="true")
    if n <= 40:
        ax.set_xticks(range(n), class_names, rotation=90)
        ax.set_yticks(range(n), class_names)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    color="white" if norm[i, j] > 0.5 else "black",
                    fontsize=8,
                )
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    artifacts.atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


def _class_row(
    name: str, true_positives: float, predicted: float, support: float
) -> dict[str, Any]:
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "class": name,
        "precision": round(precision, 6),
        "recall": round(recall, 6),
        "f1": round(f1, 6),
        "support": int(support),
    }


def per_class_report(matrix: np.ndarray, class_names: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of every class, from the confusion matrix."""
    return [
        _class_row(name, float(matrix[k, k]), float(matrix[:, k].sum()), float(matrix[k].sum()))
        for k, name in enumerate(class_names)
    ]


def multi_label_report(
    outputs: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> list[dict[str, Any]]:
    """Per-class precision, recall and F1 of the independent decisions (logit > 0)."""
    truth, predicted = labels > 0.5, outputs > 0
    return [
        _class_row(
            name,
            float((truth[:, k] & predicted[:, k]).sum()),
            float(predicted[:, k].sum()),
            float(truth[:, k].sum()),
        )
        for k, name in enumerate(class_names)
    ]


def write_class_report(directory: Path, rows: list[dict[str, Any]]) -> None:
    """The per-class report as CSV (for spreadsheets) and JSON (for programs)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    artifacts.atomic_write_bytes(directory / CLASS_REPORT_CSV, buffer.getvalue().encode())
    artifacts.atomic_write_bytes(directory / CLASS_REPORT_JSON, json.dumps(rows, indent=2).encode())


def write_validation_reports(
    directory: Path,
    outputs: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    multi_label: bool,
) -> None:
    """Confusion matrix picture and per-class report (single-label), or per-class report of
    the independent decisions (multi-label)."""
    if multi_label:
        write_class_report(directory, multi_label_report(outputs, labels, class_names))
        return
    matrix = confusion_matrix(labels.reshape(-1), outputs.argmax(axis=1), len(class_names))
    plot_confusion_matrix(directory / CONFUSION_PNG, matrix, class_names)
    write_class_report(directory, per_class_report(matrix, class_names))
