"""Container images: ECR URIs, checking a tag exists, and ``oic push`` (docker build + ECR push).

The docker CLI is run as a subprocess (the same commands a user would type); ECR calls go
through boto3. ``--dry-run`` prints both without running anything.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from cloud.aws import Aws
from cloud.errors import CliError
from cloud.settings import DEFAULT_TAG, REPOSITORY

ECR_URI = re.compile(
    r"^(?P<registry>\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?)/(?P<repo>[^:@]+)"
    r"(?::(?P<tag>[^@]+)|@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class ImageRef:
    """An ECR image: registry host, repository, and a tag or a ``sha256:`` digest."""

    registry: str
    repository: str
    tag: str

    @property
    def is_digest(self) -> bool:
        return self.tag.startswith("sha256:")

    @property
    def uri(self) -> str:
        return f"{self.registry}/{self.repository}{'@' if self.is_digest else ':'}{self.tag}"

    @property
    def image_id(self) -> dict[str, str]:
        """The ECR ``imageIds`` entry."""
        return {"imageDigest" if self.is_digest else "imageTag": self.tag}


def registry_host(account: str, region: str) -> str:
    """The ECR registry of ``account`` in ``region``."""
    suffix = ".cn" if region.startswith("cn-") else ""
    return f"{account}.dkr.ecr.{region}.amazonaws.com{suffix}"


def parse_image(uri: str) -> ImageRef:
    """Parse an ECR image URI that names a tag (or a digest).

    Raises:
        CliError: not an ECR URI, or no tag.
    """
    match = ECR_URI.match(uri)
    if not match:
        raise CliError(
            f"--image {uri!r} is not an ECR image URI "
            "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG): SageMaker pulls only from ECR"
        )
    if not (match["tag"] or match["digest"]):
        raise CliError(
            f"--image {uri!r} has no tag: name one (e.g. {uri}:{DEFAULT_TAG}), the one you gave "
            "`oic push --tag`"
        )
    return ImageRef(match["registry"], match["repo"], match["tag"] or match["digest"])


def resolve_image(aws: Aws, image: str | None, tag: str) -> ImageRef:
    """``--image`` as given, or this account's ``oic:TAG`` repository image."""
    if image:
        return parse_image(image)
    return ImageRef(registry_host(aws.account_id(), aws.region), REPOSITORY, tag)


def check_image_exists(ecr: Any, ref: ImageRef) -> None:
    """Fail clearly when the tag is not in the ECR repository."""
    try:
        ecr.describe_images(repositoryName=ref.repository, imageIds=[ref.image_id])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ImageNotFoundException", "RepositoryNotFoundException"):
            raise CliError(
                f"image {ref.uri} is not in ECR ({code}): push it first with "
                f"`oic push --tag {ref.tag}`, or pass --image with a tag that exists"
            ) from None
        raise


def ensure_repository(ecr: Any, name: str) -> bool:
    """Create the ECR repository unless it exists; True when it was created."""
    try:
        ecr.describe_repositories(repositoryNames=[name])
        return False
    except ecr.exceptions.RepositoryNotFoundException:
        ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
        return True


def login_password(ecr: Any) -> str:
    """The docker password of the ECR authorization token."""
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode().split(":", 1)[1]


def run(cmd: Sequence[str], stdin: str | None = None) -> None:
    """Run a docker command, echoing it; a failure becomes a :class:`CliError`."""
    print("$ " + shlex.join(cmd), flush=True)
    try:
        subprocess.run(list(cmd), input=stdin, text=True, check=True)
    except FileNotFoundError:
        raise CliError(f"{cmd[0]} is not installed or not on PATH: install Docker") from None
    except subprocess.CalledProcessError as exc:
        raise CliError(f"`{shlex.join(cmd)}` failed with exit code {exc.returncode}") from None


def build_command(args: argparse.Namespace, local_tag: str) -> list[str]:
    """The ``docker build`` command line."""
    cmd = ["docker", "build", "-f", args.dockerfile, "-t", local_tag]
    for build_arg in args.build_arg or []:
        cmd += ["--build-arg", build_arg]
    return [*cmd, args.context]


def _print_plan(build: list[str] | None, repository: str, docker_steps: list[list[str]]) -> None:
    """What ``push`` would do, for ``--dry-run``."""
    if build:
        print("$ " + shlex.join(build))
    ecr = {
        "DescribeRepositories": {"repositoryNames": [repository]},
        "CreateRepository (if missing)": {"repositoryName": repository},
        "GetAuthorizationToken": {},
    }
    print(json.dumps(ecr, indent=2))
    for step in docker_steps:
        print("$ " + shlex.join(step))


def command(args: argparse.Namespace, aws: Aws) -> int:
    """Run ``oic push``: build, create the repository if missing, log in, tag and push."""
    account = "<account-id>" if args.dry_run else aws.account_id()
    region = (aws.session.region_name or "<region>") if args.dry_run else aws.region
    ref = ImageRef(registry_host(account, region), args.repository, args.tag)
    local_tag = f"{args.repository}:{args.tag}"
    build = None if args.no_build else build_command(args, local_tag)
    login = ["docker", "login", "--username", "AWS", "--password-stdin", ref.registry]
    tag_and_push = [["docker", "tag", local_tag, ref.uri], ["docker", "push", ref.uri]]
    if args.dry_run:
        _print_plan(build, args.repository, [login, *tag_and_push])
        return 0
    if build:
        run(build)
    ecr = aws.client("ecr")
    if ensure_repository(ecr, args.repository):
        print(f"created ECR repository {args.repository}")
    run(login, stdin=login_password(ecr))
    for step in tag_and_push:
        run(step)
    print(f"pushed {ref.uri}\nnext: oic train --tag {args.tag}")
    return 0
