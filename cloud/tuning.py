"""``oic tune``: a hyperparameter tuning job over the built-in's tunable ranges.

The objective is the built-in's, ``validation:accuracy`` maximised, read from the trainer's log
by this product's metric regexes (``train.metric_lines.METRIC_DEFINITIONS``). The training job
definition is what ``oic train`` would start (same data, input mode, image, instance, checks),
with the hyperparameters file's values as static hyperparameters, minus the tuned ones.

Ranges default to the built-in's table; ``--tune`` picks some, ``--range`` changes one or adds
another hyperparameter, each checked by the trainer's own parser before anything is uploaded
(:mod:`cloud.tuning_ranges`).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from typing import Any

from cloud.aws import Aws
from cloud.errors import CliError, JobFailed
from cloud.inputs import FILE
from cloud.jobs import JobSpec, plan_job, training_job_request, upload
from cloud.settings import load_hyperparameters
from cloud.tuning_ranges import (
    CATEGORICAL,
    CONTINUOUS,
    INTEGER,
    OBJECTIVE,
    Range,
    check_ranges,
    fit_batch_size,
    select_ranges,
)
from train.config import parse_hyperparameters
from train.lst import IMAGE_EXTENSIONS

STRATEGIES = ("Bayesian", "Random", "Hyperband")
TERMINAL = ("Completed", "Failed", "Stopped")


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


def training_images(spec: JobSpec) -> int | None:
    """The training set's size, when known before the job: the images of a File-mode ``train``
    channel of images, else ``num_training_samples`` (checked against the stream in Pipe mode)."""
    train = next((c for c in spec.channels if c.name == "train"), None)
    if train and train.input_mode == FILE:
        if any(u.path.suffix == ".rec" for u in train.uploads):
            return None  # File-mode RecordIO: counted by the trainer
        return sum(u.path.suffix.lower() in IMAGE_EXTENSIONS for u in train.uploads) or None
    return parse_hyperparameters(spec.hyperparameters).num_training_samples


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
    images = training_images(spec)
    fitted = fit_batch_size(ranges, images)
    if fitted != ranges:
        print(f"mini_batch_size: tuned up to {images}, the size of the training set")
    ranges = fitted
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
