"""The AWS side of a command: one boto3 session, its clients, and checks with clear errors.

Every client comes from :class:`Aws`, so tests can hand in a session wired to a local emulator
(``AWS_ENDPOINT_URL``) and observe every request through ``session.events``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from cloud.errors import NO_REGION, CliError

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")


@dataclass
class Aws:
    """A boto3 session plus lazily created, cached clients."""

    session: boto3.Session
    _clients: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, profile: str | None, region: str | None) -> Aws:
        """A session for ``--profile`` / ``--region`` (each falling back to the AWS defaults)."""
        return cls(boto3.Session(profile_name=profile, region_name=region))

    @property
    def region(self) -> str:
        """The configured region, or a :class:`CliError` saying how to set one."""
        if not self.session.region_name:
            raise CliError(NO_REGION)
        return self.session.region_name

    def client(self, name: str) -> Any:
        """The boto3 client for service ``name`` in :attr:`region`."""
        if name not in self._clients:
            self._clients[name] = self.session.client(name, region_name=self.region)
        return self._clients[name]

    def account_id(self) -> str:
        """The account of the credentials (STS GetCallerIdentity)."""
        return self.client("sts").get_caller_identity()["Account"]


def check_role(role: str | None) -> str:
    """The execution role ARN, or a :class:`CliError` saying how to give one."""
    if not role:
        raise CliError(
            "no SageMaker execution role: pass --role arn:aws:iam::ACCOUNT:role/NAME or set "
            "OIC_ROLE. The role must trust sagemaker.amazonaws.com and may read the data bucket, "
            "write the output path and pull from ECR (AmazonSageMakerFullAccess covers this)."
        )
    if not ROLE_ARN.match(role):
        raise CliError(f"--role {role!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
    return role


def check_bucket(s3: Any, bucket: str, region: str) -> None:
    """Fail clearly when ``bucket`` does not exist or is not ours."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise CliError(
                f"bucket {bucket!r} does not exist: create it with "
                f"`aws s3 mb s3://{bucket} --region {region}` or pass --bucket NAME"
            ) from None
        if code in ("403", "AccessDenied"):
            raise CliError(
                f"bucket {bucket!r} exists but these credentials may not use it: pass --bucket "
                "with a bucket of this account"
            ) from None
        raise


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/prefix`` to ``('bucket', 'key/prefix')``."""
    if not uri.startswith("s3://"):
        raise CliError(f"{uri!r} is not an S3 URI (s3://bucket/prefix)")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key
