"""Running accuracy and loss of an epoch, from plain numpy arrays: shared by both engines."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class ScoreSetup(Protocol):
    """How predictions are scored: softmax with optional top-k, or per-class sigmoid."""

    multi_label: bool
    top_k: int | None


class Scores:
    """Running accuracy (top-1, top-k, or mean per-class accuracy for multi-label) and loss."""

    def __init__(self, setup: ScoreSetup):
        self.setup = setup
        self.correct = 0.0
        self.correct_k = 0.0
        self.count = 0
        self.loss_sum = 0.0

    def update(self, labels: np.ndarray, outputs: np.ndarray, losses: np.ndarray) -> None:
        """Add a batch: ``outputs`` are the scores (logits) the loss was computed from."""
        self.loss_sum += float(losses.sum())
        if self.setup.multi_label:
            predicted = outputs > 0  # logit > 0 <=> sigmoid > 0.5
            self.correct += float((predicted == (labels > 0.5)).mean(axis=1).sum())
        else:
            truth = labels.astype(np.int64).reshape(-1)
            self.correct += float((outputs.argmax(axis=1) == truth).sum())
            if self.setup.top_k:
                top = np.argsort(-outputs, axis=1)[:, : self.setup.top_k]
                self.correct_k += float((top == truth[:, None]).any(axis=1).sum())
        self.count += len(labels)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)

    @property
    def top_k_accuracy(self) -> float:
        return self.correct_k / max(self.count, 1)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    def epoch_result(self, elapsed: float) -> dict[str, float]:
        """What the driver logs and records for a training epoch."""
        result = {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "time": elapsed,
            "samples_per_sec": self.count / max(elapsed, 1e-9),
        }
        if self.setup.top_k:
            result["top_k_accuracy"] = self.top_k_accuracy
        return result
