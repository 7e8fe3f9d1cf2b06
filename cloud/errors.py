"""Errors of the ``oic`` CLI: each says what is wrong and what to do, and maps to an exit code.

``main`` prints the message and exits with :attr:`CliError.exit_code`: 2 for a problem to fix
before anything runs (configuration, input, missing resources), 1 for a job that ran and failed.
AWS SDK exceptions that have a usual cause (no credentials, no region, expired token) are
translated here, once, rather than at each call.
"""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)


class CliError(Exception):
    """A failure the user can act on; the message ends with what to do."""

    exit_code = 2


class JobFailed(CliError):
    """A training job or endpoint ended in Failed or Stopped."""

    exit_code = 1


NO_CREDENTIALS = (
    "no AWS credentials found. Run `aws configure` (or `aws sso login --profile NAME` and pass "
    "--profile NAME), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. `--dry-run` works "
    "without credentials."
)
NO_REGION = (
    "no AWS region configured. Pass --region (e.g. --region us-east-1), set AWS_DEFAULT_REGION, "
    "or set `region` in ~/.aws/config."
)
EXPIRED = "your AWS credentials have expired: refresh them (e.g. `aws sso login`) and retry."


def explain(exc: Exception) -> CliError | None:
    """The :class:`CliError` for an AWS SDK exception with a usual cause, else ``None``."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CliError(NO_CREDENTIALS)
    if isinstance(exc, NoRegionError):
        return CliError(NO_REGION)
    if isinstance(exc, ProfileNotFound):
        return CliError(f"{exc}: check --profile / AWS_PROFILE against ~/.aws/config.")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
            return CliError(EXPIRED)
        if code in ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException"):
            return CliError(
                f"AWS refused {exc.operation_name}: {exc}. Check that your credentials are for "
                "the right account and allow this call (SageMaker, S3, ECR, CloudWatch Logs)."
            )
    return None
