"""tests/host-deps, the one place that knows what the suite needs from the host (make deps)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "host-deps"


def test_check_on_a_bare_machine_lists_every_missing_package_and_runs_nothing(
    tmp_path: Path,
) -> None:
    """A PATH with none of the tools stands for a fresh machine: the check names each Debian
    package, says how to install them, and fails before any test runs."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("dirname", "realpath"):
        (bare / tool).symlink_to(shutil.which(tool))
    proc = subprocess.run(
        [shutil.which("bash"), str(SCRIPT), "--check"],
        env={"PATH": str(bare), "HOST_SBIN": "", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    listed = next(line for line in proc.stderr.splitlines() if "Debian packages:" in line)
    for package in ("nginx", "docker.io", "debootstrap", "gcc", "binutils", "chromium"):
        assert package in listed.split(), listed
    assert "sudo make deps" in listed
    assert "No test was run." in proc.stderr
