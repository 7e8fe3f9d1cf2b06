"""``oic push``: docker build/login/tag/push in order, and the ECR repository made if missing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from cloud.cli import main
from tests.cloud.conftest import ACCOUNT, REGION

FAKE_DOCKER = """#!/bin/sh
stdin=""
if [ "$2" = "login" ] || [ "$1" = "login" ]; then stdin=$(cat); fi
printf '%s\\n' "{\\"argv\\": \\"$*\\", \\"stdin\\": \\"$stdin\\"}" >> "$FAKE_DOCKER_LOG"
"""


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``docker`` on PATH that records its arguments (and stdin for login)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    return log


def test_push_builds_creates_the_repository_logs_in_and_pushes(
    session, recorder, fake_docker: Path, setup_client
) -> None:
    assert main(["push", "--tag", "v7"], session=session) == 0
    uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/oic:v7"
    calls = [json.loads(line) for line in fake_docker.read_text().splitlines()]
    assert [c["argv"] for c in calls] == [
        "build -f Dockerfile.gpu -t oic:v7 .",
        f"login --username AWS --password-stdin {ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
        f"tag oic:v7 {uri}",
        f"push {uri}",
    ]
    assert calls[1]["stdin"]  # the password goes through stdin, never argv
    assert recorder.params("CreateRepository") == [
        {"repositoryName": "oic", "imageScanningConfiguration": {"scanOnPush": True}}
    ]
    repos = setup_client("ecr").describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repos] == ["oic"]


def test_push_reuses_an_existing_repository(session, recorder, fake_docker, setup_client) -> None:
    setup_client("ecr").create_repository(repositoryName="oic")
    assert main(["push", "--no-build"], session=session) == 0
    assert "CreateRepository" not in recorder.ops()
    assert "build" not in fake_docker.read_text()


def test_push_dry_run_prints_commands_and_runs_nothing(
    session, recorder, fake_docker: Path, capsys
) -> None:
    assert main(["push", "--dry-run", "--build-arg", "BASE_IMAGE=x"], session=session) == 0
    out = capsys.readouterr().out
    assert "$ docker build -f Dockerfile.gpu -t oic:latest --build-arg BASE_IMAGE=x ." in out
    assert "$ docker push '<account-id>.dkr.ecr.us-east-1.amazonaws.com/oic:latest'" in out
    assert not fake_docker.exists() and recorder.calls == []


def test_a_failing_docker_build_stops_with_its_exit_code(
    session, recorder, tmp_path: Path, monkeypatch, capsys
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 3\n")
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert main(["push"], session=session) == 2
    assert "failed with exit code 3" in capsys.readouterr().err
    assert "CreateRepository" not in recorder.ops()
