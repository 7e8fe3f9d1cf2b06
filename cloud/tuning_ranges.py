"""The hyperparameter ranges of ``oic tune``: the built-in's table, overrides, and checks.

:data:`BUILTIN_RANGES` is the table of AWS's "Tune an image classification model" page (types and
bounds as published). ``--range`` changes one or adds any other hyperparameter; every bound and
category is run through the trainer's own parser, with what SageMaker adds to each training job
of a tuning job (:data:`INJECTED`), so a range the container would refuse fails before any
upload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cloud.errors import CliError
from train.config import SPECS, parse_hyperparameters
from train.errors import ClientError

CONTINUOUS, INTEGER, CATEGORICAL = "Continuous", "Integer", "Categorical"
OBJECTIVE = {"Type": "Maximize", "MetricName": "validation:accuracy"}
SCALINGS = {
    "auto": "Auto",
    "linear": "Linear",
    "log": "Logarithmic",
    "logarithmic": "Logarithmic",
    "reverselogarithmic": "ReverseLogarithmic",
}
# What SageMaker adds to every training job of a tuning job (the trainer accepts and ignores it).
INJECTED = {"_tuning_objective_metric": OBJECTIVE["MetricName"]}


@dataclass(frozen=True)
class Range:
    """One tuned hyperparameter: (min, max) for Continuous/Integer, else the categories."""

    name: str
    kind: str
    values: tuple[str, ...]
    scaling: str = "Auto"

    def request(self) -> dict[str, Any]:
        """The ``*ParameterRange`` entry (every value a string, as the API wants)."""
        if self.kind == CATEGORICAL:
            return {"Name": self.name, "Values": list(self.values)}
        low, high = self.values
        return {"Name": self.name, "MinValue": low, "MaxValue": high, "ScalingType": self.scaling}


BUILTIN_RANGES: dict[str, Range] = {
    r.name: r
    for r in (
        Range("beta_1", CONTINUOUS, ("1e-06", "0.999")),
        Range("beta_2", CONTINUOUS, ("1e-06", "0.999")),
        Range("eps", CONTINUOUS, ("1e-08", "1.0")),
        Range("gamma", CONTINUOUS, ("1e-08", "0.999")),
        Range("learning_rate", CONTINUOUS, ("1e-06", "0.5")),
        Range("mini_batch_size", INTEGER, ("8", "512")),
        Range("momentum", CONTINUOUS, ("0", "0.999")),
        Range("optimizer", CATEGORICAL, ("sgd", "adam", "rmsprop", "nag")),
        Range("weight_decay", CONTINUOUS, ("0", "0.999")),
    )
}


def _is_int(text: str) -> bool:
    return re.fullmatch(r"-?\d+", text) is not None


def parse_range(text: str) -> Range:
    """``NAME=MIN:MAX[:SCALING]`` or ``NAME=A,B,C`` (categories).

    The kind of a hyperparameter of the built-in's table is the table's; another one is
    Integer when both bounds are whole numbers, else Continuous.
    """
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not spec or name not in SPECS:
        raise CliError(
            f"--range {text!r}: expected NAME=MIN:MAX[:SCALING] or NAME=A,B,C with NAME a "
            "hyperparameter, e.g. --range learning_rate=0.001:0.1:log --range optimizer=sgd,nag"
        )
    builtin = BUILTIN_RANGES.get(name)
    if ":" not in spec:
        values = tuple(v.strip() for v in spec.split(",") if v.strip())
        return Range(name, CATEGORICAL, values)
    parts = [p.strip() for p in spec.split(":")]
    scaling = SCALINGS.get(parts[2].lower()) if len(parts) == 3 else "Auto"
    if len(parts) not in (2, 3) or scaling is None:
        raise CliError(
            f"--range {text!r}: expected MIN:MAX or MIN:MAX:SCALING with SCALING one of "
            "auto, linear, log, reverselogarithmic"
        )
    kind = builtin.kind if builtin else (INTEGER if all(map(_is_int, parts[:2])) else CONTINUOUS)
    return _checked_bounds(Range(name, kind, (parts[0], parts[1]), scaling), text)


def _checked_bounds(r: Range, text: str) -> Range:
    try:
        low, high = (float(v) for v in r.values)
    except ValueError:
        raise CliError(f"--range {text!r}: MIN and MAX must be numbers") from None
    if r.kind == INTEGER and not all(map(_is_int, r.values)):
        raise CliError(f"--range {text!r}: {r.name} is tuned over whole numbers")
    if low >= high:
        raise CliError(f"--range {text!r}: MIN must be below MAX")
    if r.scaling == "Logarithmic" and low <= 0:
        raise CliError(f"--range {text!r}: logarithmic scaling needs MIN > 0")
    if r.scaling == "ReverseLogarithmic" and (r.kind != CONTINUOUS or low < 0 or high >= 1):
        raise CliError(f"--range {text!r}: reverse-logarithmic scaling needs 0 <= MIN < MAX < 1")
    return r


def select_ranges(tune: str | None, overrides: list[str]) -> list[Range]:
    """The ranges to tune: ``--tune`` names (default: the built-in's table), ``--range`` wins."""
    names = [n.strip() for n in tune.split(",") if n.strip()] if tune else list(BUILTIN_RANGES)
    unknown = [n for n in names if n not in BUILTIN_RANGES]
    if unknown:
        raise CliError(
            f"--tune {', '.join(unknown)}: no built-in range; name them with --range NAME=MIN:MAX "
            f"(built-in ranges: {', '.join(BUILTIN_RANGES)})"
        )
    ranges = {n: BUILTIN_RANGES[n] for n in names}
    for text in overrides:
        r = parse_range(text)
        ranges[r.name] = r
    return list(ranges.values())


def fit_batch_size(ranges: list[Range], images: int | None) -> list[Range]:
    """The ranges with the built-in's ``mini_batch_size`` range capped at the training set's size
    (the trainer refuses a batch larger than the training set, so those trials would fail).

    Raises:
        CliError: a ``--range`` of ``mini_batch_size`` beyond the training set's size.
    """
    batch = next((r for r in ranges if r.name == "mini_batch_size"), None)
    if batch is None or images is None:
        return ranges
    largest = max(int(float(v)) for v in batch.values)
    if largest <= images:
        return ranges
    smallest = min(int(float(v)) for v in batch.values)
    if batch != BUILTIN_RANGES["mini_batch_size"] or smallest >= images:
        raise CliError(
            f"mini_batch_size is tuned up to {largest}, but the training set has {images} images "
            f"and the trainer refuses a larger batch: pass --range mini_batch_size=MIN:{images}"
        )
    capped = Range(batch.name, batch.kind, (batch.values[0], str(images)), batch.scaling)
    return [capped if r is batch else r for r in ranges]


def check_ranges(ranges: list[Range], static: dict[str, str]) -> None:
    """Every bound and category, with the static values, through the trainer's parser."""
    for r in ranges:
        for value in r.values:
            try:
                parse_hyperparameters({**static, r.name: value, **INJECTED})
            except ClientError as exc:
                raise CliError(
                    f"the range of {r.name} holds {value!r}, which the trainer refuses: {exc}. "
                    "Change it with --range; nothing was uploaded or started."
                ) from None
