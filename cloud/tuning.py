"""``oic tune``: a hyperparameter tuning job over the built-in's tunable ranges.

The objective is the built-in's, ``validation:accuracy`` maximised, read from the trainer's log
by this product's metric regexes (``train.metric_lines.METRIC_DEFINITIONS``). The training job
definition is what ``oic train`` would start (same data, input mode, image, instance, checks),
with the hyperparameters file's values as static hyperparameters, minus the tuned ones.

Ranges default to the built-in's table (:data:`BUILTIN_RANGES`, from AWS's "Tune an
image classification model"); ``--tune`` picks some, ``--range`` changes one or adds another
hyperparameter. Every bound and category goes through the trainer's own parser first, so a
range the container would refuse fails here, before anything is uploaded.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloud.aws import Aws
from cloud.errors import CliError, JobFailed
from cloud.jobs import JobSpec, plan_job, training_job_request, upload
from cloud.settings import load_hyperparameters
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
STRATEGIES = ("Bayesian", "Random", "Hyperband")
TERMINAL = ("Completed", "Failed", "Stopped")
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


def static_hyperparameters(hyperparameters: dict[str, str], ranges: list[Range]) -> dict[str, str]:
    """The file's hyperparameters without the tuned ones."""
    tuned = {r.name for r in ranges}
    return {k: v for k, v in hyperparameters.items() if k not in tuned}


def tuning_request(
    name: str,
    spec: JobSpec,
    ranges: list[Range],
    strategy: str,
    limits: tuple[int, int],
    early_stopping: bool,
) -> dict[str, Any]:
    """The exact CreateHyperParameterTuningJob parameters."""
    job = training_job_request(spec)
    definition = {
        "StaticHyperParameters": static_hyperparameters(spec.hyperparameters, ranges),
        **{k: job[k] for k in ("AlgorithmSpecification", "RoleArn", "InputDataConfig")},
        **{k: job[k] for k in ("OutputDataConfig", "ResourceConfig", "StoppingCondition")},
        "EnableManagedSpotTraining": job["EnableManagedSpotTraining"],
    }
    by_kind = {
        kind: [r.request() for r in ranges if r.kind == kind]
        for kind in (CONTINUOUS, INTEGER, CATEGORICAL)
    }
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": dict(OBJECTIVE),
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": limits[0],
                "MaxParallelTrainingJobs": limits[1],
            },
            "ParameterRanges": {f"{k}ParameterRanges": v for k, v in by_kind.items() if v},
            "TrainingJobEarlyStoppingType": "Auto" if early_stopping else "Off",
        },
        "TrainingJobDefinition": definition,
    }


def tuning_job_name(given: str | None) -> str:
    """``--job-name`` or ``oic-tune-YYmmdd-HHMMSS``: at most 32 characters (SageMaker's limit)."""
    name = given or time.strftime("oic-tune-%y%m%d-%H%M%S", time.gmtime())
    if len(name) > 32 or not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}", name):
        raise CliError(f"tuning job name {name!r} must be 1-32 letters, digits and hyphens")
    return name


def _check_options(args: argparse.Namespace) -> None:
    if args.spot or args.checkpoint_uri:
        raise CliError(
            "oic tune does not take --spot or --checkpoint-uri: the tuning job's training jobs "
            "would share one checkpoint prefix, and a trial could resume from another's weights"
        )
    if args.max_parallel_jobs > args.max_jobs:
        raise CliError("--max-parallel-jobs must not exceed --max-jobs")
    if args.early_stopping and args.strategy == "Hyperband":
        raise CliError("Hyperband stops jobs early itself: drop --early-stopping")


def wait(sm: Any, name: str, poll: float, out: Callable[[str], None] = print) -> dict[str, Any]:
    """Wait for the tuning job to end, printing status and job counts as they change.

    Raises:
        JobFailed: the tuning job failed or was stopped.
    """
    last = None
    while True:
        job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        counts = job.get("TrainingJobStatusCounters", {})
        status = (job["HyperParameterTuningJobStatus"], tuple(sorted(counts.items())))
        if status != last:
            summary = ", ".join(f"{v} {k.lower()}" for k, v in status[1] if v)
            out(f"{name}: {status[0]}" + (f" - training jobs: {summary}" if summary else ""))
            last = status
        if status[0] in TERMINAL:
            break
        time.sleep(poll)
    if status[0] != "Completed":
        reason = job.get("FailureReason") or "no reason given"
        raise JobFailed(f"tuning job {name} {status[0].lower()}: {reason}")
    return job


def describe_best(job: dict[str, Any]) -> str:
    """The best training job, its objective value and its tuned hyperparameters."""
    best = job.get("BestTrainingJob")
    if not best:
        return "no training job reported validation:accuracy: see their logs (oic logs JOB)"
    metric = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
    tuned = ", ".join(f"{k}={v}" for k, v in sorted(best.get("TunedHyperParameters", {}).items()))
    return (
        f"best training job: {best['TrainingJobName']} "
        f"({metric.get('MetricName', OBJECTIVE['MetricName'])} = {metric.get('Value')})\n"
        f"tuned: {tuned}\nnext: oic deploy --job-name {best['TrainingJobName']}"
    )


def command(args: argparse.Namespace, aws: Aws) -> int:
    """Run ``oic tune``."""
    _check_options(args)
    name = tuning_job_name(args.job_name)
    ranges = select_ranges(args.tune, args.range or [])
    check_ranges(ranges, static_hyperparameters(load_hyperparameters(args.hyperparameters), ranges))
    spec = plan_job(args, aws, name)
    limits = (args.max_jobs, args.max_parallel_jobs)
    request = tuning_request(name, spec, ranges, args.strategy, limits, args.early_stopping)
    upload(aws, spec, args.dry_run)
    if args.dry_run:
        print("CreateHyperParameterTuningJob " + json.dumps(request, indent=2))
        return 0
    sm = aws.client("sagemaker")
    sm.create_hyper_parameter_tuning_job(**request)
    print(f"started tuning job {name}: {len(ranges)} hyperparameters, {limits[0]} training jobs")
    if args.no_wait:
        print(
            "follow it in the SageMaker console or with: aws sagemaker "
            f"describe-hyper-parameter-tuning-job --hyper-parameter-tuning-job-name {name}"
        )
        return 0
    print(describe_best(wait(sm, name, args.poll)))
    return 0
