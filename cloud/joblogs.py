"""Following a training job to its end: status changes, every host's CloudWatch log lines, and
``oic logs JOB``. Ctrl-C stops following, never the job."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from cloud.aws import Aws
from cloud.errors import JobFailed

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = ("Completed", "Failed", "Stopped")


class LogTail:
    """Prints new CloudWatch log events of a training job's streams (one per host)."""

    def __init__(self, logs: Any, job_name: str, out: Callable[[str], None] = print) -> None:
        self.logs, self.job_name, self.out = logs, job_name, out
        self.tokens: dict[str, str | None] = {}

    def poll(self) -> None:
        """Print every event logged since the last poll."""
        try:
            streams = self.logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.job_name}/"
            )["logStreams"]
        except self.logs.exceptions.ResourceNotFoundException:
            return  # the log group appears with the job's first log line
        for stream in streams:
            self._read(stream["logStreamName"], prefix=len(streams) > 1)

    def _read(self, name: str, prefix: bool) -> None:
        while True:
            kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": name}
            token = self.tokens.get(name)
            kwargs.update({"nextToken": token} if token else {"startFromHead": True})
            page = self.logs.get_log_events(**kwargs)
            host = name.split("/")[-1].rsplit("-", 1)[0]
            for event in page["events"]:
                self.out(f"[{host}] {event['message']}" if prefix else event["message"])
            self.tokens[name] = page.get("nextForwardToken")
            if not page["events"] or page.get("nextForwardToken") == token:
                return


def wait(
    sagemaker: Any,
    tail: LogTail | None,
    job_name: str,
    poll: float,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Wait for the job to end, streaming logs and status changes; return its description.

    Raises:
        JobFailed: the job ended Failed or Stopped (with its FailureReason).
    """
    last_status = None
    while True:
        job = sagemaker.describe_training_job(TrainingJobName=job_name)
        status = (job["TrainingJobStatus"], job.get("SecondaryStatus"))
        if status != last_status:
            out(f"{job_name}: {status[0]} - {status[1] or ''}".rstrip(" -"))
            last_status = status
        if tail:
            tail.poll()
        if job["TrainingJobStatus"] in TERMINAL:
            break
        time.sleep(poll)
    if job["TrainingJobStatus"] != "Completed":
        reason = job.get("FailureReason") or "no reason given"
        raise JobFailed(
            f"training job {job_name} {job['TrainingJobStatus'].lower()}: {reason}\n"
            f"Full logs: CloudWatch log group {LOG_GROUP}, streams {job_name}/*"
        )
    return job


def describe(job: dict[str, Any]) -> str:
    """Where the model of a completed job is, and how long it billed."""
    lines = [f"model: {job['ModelArtifacts']['S3ModelArtifacts']}"]
    if job.get("BillableTimeInSeconds"):
        lines.append(f"billable time: {job['BillableTimeInSeconds']} s")
    return "\n".join(lines)


def logs_command(args: argparse.Namespace, aws: Aws) -> int:
    """Run ``oic logs JOB``: stream a job's logs until it ends; exit 1 if it failed."""
    if args.dry_run:
        print(f"DescribeTrainingJob {json.dumps({'TrainingJobName': args.job_name})}")
        return 0
    follow(aws, args.job_name, args.poll)
    return 0


def follow(aws: Aws, name: str, poll: float) -> None:
    """Stream the job's logs until it ends and print where its model is.

    Raises:
        JobFailed: the job failed or was stopped, or following was interrupted (Ctrl-C), which
            leaves the job running.
    """
    tail = LogTail(aws.client("logs"), name)
    try:
        print(describe(wait(aws.client("sagemaker"), tail, name, poll)))
    except KeyboardInterrupt:
        raise JobFailed(
            f"stopped following; training job {name} keeps running. Follow it again with "
            f"`oic logs {name}`, or stop it with "
            f"`aws sagemaker stop-training-job --training-job-name {name}`"
        ) from None
