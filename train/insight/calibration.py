"""Is a single-label model's confidence worth its number? Expected calibration error and a
reliability diagram on the validation set."""

from __future__ import annotations

from typing import Any

import numpy as np

BINS = 15


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities from scores (engines hand over logits)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """Top-1 confidence against accuracy in ``bins`` equal-width bins, and the expected
    calibration error: the mean over images of |accuracy - confidence| of their bin
    (Guo et al., 2017), with bins (lo, hi] and 0 in the first.

    Args:
        probs: ``(N, K)`` probabilities.
        labels: ``(N,)`` true class indices.
    """
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels.reshape(-1).astype(np.int64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    acc = np.bincount(which, weights=correct, minlength=bins) / np.maximum(count, 1)
    conf = np.bincount(which, weights=confidence, minlength=bins) / np.maximum(count, 1)
    ece = float((count * np.abs(acc - conf)).sum() / max(len(confidence), 1))
    return {
        "ece": ece,
        "edges": edges.tolist(),
        "count": count.tolist(),
        "accuracy": acc.tolist(),
        "confidence": conf.tolist(),
    }


def plot_reliability(table: dict[str, Any]):
    """The reliability diagram as a matplotlib figure (bars: accuracy per confidence bin)."""
    from train.reports import _figure

    plt = _figure()
    edges = np.asarray(table["edges"])
    width = edges[1] - edges[0]
    fig, ax = plt.subplots(figsize=(5, 5))
    counts = np.asarray(table["count"])
    shown = counts > 0
    ax.bar(
        edges[:-1][shown],
        np.asarray(table["accuracy"])[shown],
        width=width,
        align="edge",
        edgecolor="black",
        color="#4c72b0",
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set(
        title=f"Reliability (ECE {table['ece']:.3f})",
        xlabel="confidence (top-1)",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig
