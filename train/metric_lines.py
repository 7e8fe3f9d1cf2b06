"""The per-epoch log lines, in the built-in algorithm's format, and the regexes that read them.

Both live here so they cannot drift: SageMaker ``MetricDefinitions`` (used by the cloud CLI and
documented in the README) parse exactly what :func:`epoch_lines` and :func:`saved_model_line`
print. The built-in prints ``Epoch[0] Train-accuracy=0.150391``; existing regexes keep working.
"""

from __future__ import annotations

_NUMBER = r"([0-9.eE+-]+)"

METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": "train:accuracy", "Regex": rf"Epoch\[\d+\] Train-accuracy={_NUMBER}"},
    {"Name": "validation:accuracy", "Regex": rf"Epoch\[\d+\] Validation-accuracy={_NUMBER}"},
    {"Name": "train:top_k_accuracy", "Regex": rf"Epoch\[\d+\] Train-top_k_accuracy_\d+={_NUMBER}"},
    {"Name": "train:loss", "Regex": rf"Epoch\[\d+\] Train-loss={_NUMBER}"},
    {"Name": "validation:loss", "Regex": rf"Epoch\[\d+\] Validation-loss={_NUMBER}"},
    {"Name": "train:throughput", "Regex": rf"Epoch\[\d+\] Train-samples_per_sec={_NUMBER}"},
    {"Name": "train:epoch_time", "Regex": rf"Epoch\[\d+\] Time cost={_NUMBER}"},
]


def epoch_lines(
    epoch: int, train: dict[str, float], validation: dict[str, float], top_k: int | None
) -> list[str]:
    """The lines logged after epoch ``epoch`` (0-based, as the built-in counts)."""
    lines = [f"Epoch[{epoch}] Train-accuracy={train['accuracy']:f}"]
    if top_k:
        lines.append(f"Epoch[{epoch}] Train-top_k_accuracy_{top_k}={train['top_k_accuracy']:f}")
    lines += [
        f"Epoch[{epoch}] Train-loss={train['loss']:f}",
        f"Epoch[{epoch}] Train-samples_per_sec={train['samples_per_sec']:.2f}",
        f"Epoch[{epoch}] Time cost={train['time']:.3f}",
        f"Epoch[{epoch}] Validation-accuracy={validation['accuracy']:f}",
        f"Epoch[{epoch}] Validation-loss={validation['loss']:f}",
    ]
    return lines


def saved_model_line(epoch: int, accuracy: float) -> str:
    """The job's last ``Validation-accuracy`` line: the saved model's, of epoch ``epoch``
    (0-based, as in :func:`epoch_lines`).

    A tuning job ranks each training job by the *latest* value its objective regex found
    (``FinalHyperParameterTuningJobObjectiveMetric``), but without ``checkpoint_frequency`` the
    job saves its best epoch, not its last: a job whose last epoch was worse than its best would
    be ranked by a model it did not save. Logged once the saved model is final, in the shape of
    an epoch line so that this product's regexes and those written for the built-in read it.
    """
    return (
        f"Epoch[{epoch}] Validation-accuracy={accuracy:f} "
        "(the saved model's: the value a tuning job ranks this job by)"
    )


def batch_speed_line(epoch: int, batch: int, speed: float, accuracy: float) -> str:
    """The built-in's progress line every 50 batches (both engines log it)."""
    return f"Epoch[{epoch}] Batch [{batch}]\tSpeed: {speed:.2f} samples/sec\taccuracy={accuracy:f}"
