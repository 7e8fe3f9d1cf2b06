"""Epoch log lines and the MetricDefinitions regexes that SageMaker applies to them."""

from __future__ import annotations

import re

import pytest

from train.metric_lines import METRIC_DEFINITIONS, epoch_lines

TRAIN = {
    "accuracy": 0.871094,
    "loss": 0.4123,
    "samples_per_sec": 412.5,
    "time": 12.3456,
    "top_k_accuracy": 0.99,
}
VALIDATION = {"accuracy": 0.8125, "loss": 0.53}


def _regex(name: str) -> re.Pattern[str]:
    return re.compile(next(d["Regex"] for d in METRIC_DEFINITIONS if d["Name"] == name))


def _read(lines: list[str]) -> dict[str, float]:
    """What SageMaker extracts: the first group of each regex, on any line."""
    found = {}
    for definition in METRIC_DEFINITIONS:
        for line in lines:
            match = re.search(definition["Regex"], line)
            if match:
                found[definition["Name"]] = float(match.group(1))
    return found


def test_every_metric_is_read_back_from_the_epoch_lines():
    values = _read(epoch_lines(3, TRAIN, VALIDATION, top_k=5))
    assert values == pytest.approx(
        {
            "train:accuracy": 0.871094,
            "validation:accuracy": 0.8125,
            "train:top_k_accuracy": 0.99,
            "train:loss": 0.4123,
            "validation:loss": 0.53,
            "train:throughput": 412.5,
            "train:epoch_time": 12.346,
        }
    )


def test_lines_use_the_builtin_algorithms_format():
    lines = epoch_lines(0, TRAIN, VALIDATION, top_k=None)
    assert lines[0] == "Epoch[0] Train-accuracy=0.871094"
    assert "Epoch[0] Validation-accuracy=0.812500" in lines
    assert "Epoch[0] Time cost=12.346" in lines
    assert not any("top_k" in line for line in lines)


def test_top_k_line_names_k():
    assert "Epoch[2] Train-top_k_accuracy_5=0.990000" in epoch_lines(2, TRAIN, VALIDATION, 5)


@pytest.mark.parametrize(
    ("name", "line", "value"),
    [
        # Lines the built-in algorithm prints: existing regexes must keep matching.
        ("train:accuracy", "Epoch[0] Train-accuracy=0.150391", 0.150391),
        ("validation:accuracy", "Epoch[12] Validation-accuracy=0.5", 0.5),
        ("train:top_k_accuracy", "Epoch[1] Train-top_k_accuracy_3=1.000000", 1.0),
        ("train:epoch_time", "Epoch[0] Time cost=54.279", 54.279),
        ("train:loss", "Epoch[3] Train-loss=1.2e-05", 1.2e-05),
    ],
)
def test_regexes_read_builtin_style_lines(name, line, value):
    match = _regex(name).search(f"[11/24/2026 04:19:52 INFO 1401] {line}")
    assert match is not None
    assert float(match.group(1)) == pytest.approx(value)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("train:accuracy", "Epoch[0] Validation-accuracy=0.5"),
        ("validation:accuracy", "Epoch[0] Train-accuracy=0.5"),
        ("train:loss", "Epoch[0] Validation-loss=0.5"),
        ("train:accuracy", "Epoch[0] Batch [50]\tSpeed: 410.00 samples/sec\taccuracy=0.5"),
    ],
)
def test_regexes_do_not_cross_match(name, line):
    assert _regex(name).search(line) is None


def test_metric_names_are_unique_and_each_has_one_group():
    names = [d["Name"] for d in METRIC_DEFINITIONS]
    assert len(names) == len(set(names))
    assert all(re.compile(d["Regex"]).groups == 1 for d in METRIC_DEFINITIONS)
