"""The per-epoch log lines, in the built-in algorithm's format, and the regexes that read them.

Both live here so they cannot drift: SageMaker ``MetricDefinitions`` (used by the cloud CLI and
documented in the README) parse exactly what :func:`epoch_lines` prints. The built-in prints
``Epoch[0] Train-accuracy=0.150391``; existing regexes keep working.
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
