"""scripts/up (`make up`): the compose profile is chosen before anything is built."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "up"

# A stand-in docker CLI: answers `info` and `compose version`, records every other call.
FAKE_DOCKER = """#!/bin/sh
case "$1 $2" in
  "info ") exit 0 ;;
  "info --format") echo '{"runc":{}%s}'; exit 0 ;;
  "compose version") exit 0 ;;
esac
echo "$@" >> "$CALLS"
"""


def run_up(tmp_path: Path, *, gpus: str | None, nvidia_runtime: bool, **env: str):
    """Run scripts/up with fake docker (and nvidia-smi when ``gpus`` is given) on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    runtime = ',"nvidia":{}' if nvidia_runtime else ""
    (bin_dir / "docker").write_text(FAKE_DOCKER % runtime)
    if gpus is not None:
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\nprintf '{gpus}'\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    for tool in ("dirname", "grep", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    calls = tmp_path / "calls"
    start = time.monotonic()
    proc = subprocess.run(
        [shutil.which("bash"), str(SCRIPT)],
        env={"PATH": str(bin_dir), "CALLS": str(calls), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    seconds = time.monotonic() - start
    return proc, calls.read_text() if calls.exists() else "", seconds


def test_without_an_nvidia_driver_it_runs_the_cpu_profile_and_says_why(tmp_path: Path) -> None:
    proc, calls, seconds = run_up(tmp_path, gpus=None, nvidia_runtime=False)
    assert proc.returncode == 0, proc.stderr
    assert calls.strip() == "compose --profile cpu up"
    assert "nvidia-smi not found" in proc.stdout
    assert "docker compose --profile cpu up" in proc.stdout
    assert seconds < 5


def test_a_gpu_without_the_container_toolkit_runs_the_cpu_profile(tmp_path: Path) -> None:
    proc, calls, _ = run_up(tmp_path, gpus="GPU 0: NVIDIA A10G (UUID: x)\\n", nvidia_runtime=False)
    assert calls.strip() == "compose --profile cpu up"
    assert "NVIDIA container toolkit is not installed" in proc.stdout


def test_a_gpu_that_docker_can_use_runs_the_gpu_profile(tmp_path: Path) -> None:
    proc, calls, _ = run_up(tmp_path, gpus="GPU 0: NVIDIA A10G (UUID: x)\\n", nvidia_runtime=True)
    assert proc.returncode == 0, proc.stderr
    assert calls.strip() == "compose --profile gpu up"


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_oic_profile_skips_the_detection(tmp_path: Path, profile: str) -> None:
    _, calls, _ = run_up(tmp_path, gpus=None, nvidia_runtime=False, OIC_PROFILE=profile)
    assert calls.strip() == f"compose --profile {profile} up"


def test_no_engine_fails_with_what_to_do(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))
    proc = subprocess.run(
        [shutil.which("bash"), str(SCRIPT)],
        env={**os.environ, "PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "no Docker engine answers" in proc.stderr
