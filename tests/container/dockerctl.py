"""Small helpers to drive the Docker CLI from the container tests: commands with timeouts,
containers that are always removed, BuildKit builds, and HTTP on published loopback ports only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Every container a test starts carries this label, so a crashed session can be cleaned up.
LABEL = "oic-test=1"


def sh(
    cmd: Sequence[str | os.PathLike], *, timeout: float, check: bool = True, **kwargs
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``, capture its output as text, fail after ``timeout`` seconds."""
    proc = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-8000:]}\n--- stderr ---\n{proc.stderr[-8000:]}"
        )
    return proc


def docker(*args: str | os.PathLike, timeout: float = 60, check: bool = True):
    """``docker ARGS`` with the client on PATH."""
    return sh(["docker", *args], timeout=timeout, check=check)


def buildkit_docker() -> list[str]:
    """A docker client that builds with BuildKit (``RUN --mount`` needs it).

    The 28.x client in /usr/local/bin has no buildx plugin and falls back to the legacy
    builder; docker.io's 20.10 client builds with BuildKit when DOCKER_BUILDKIT=1.
    """
    if sh(["docker", "buildx", "version"], timeout=30, check=False).returncode == 0:
        return ["docker", "buildx", "build", "--load"]
    legacy = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
    return [legacy, "build"]


def build_command(tag: str, *, build_args: dict[str, str], target: str | None = None) -> list[str]:
    """The BuildKit command that builds Dockerfile.gpu from the repo as ``tag``."""
    cmd = [*buildkit_docker(), "-f", str(REPO / "Dockerfile.gpu"), "-t", tag, "--progress=plain"]
    for key, value in build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    if target:
        cmd += ["--target", target]
    if HOST_CA_BUNDLE.exists():
        # Builds here go through a TLS-inspecting proxy: trust the host's CA bundle (build only).
        cmd += ["--secret", f"id=ca,src={HOST_CA_BUNDLE}"]
    return [*cmd, str(REPO)]


def build_image(tag: str, *, build_args: dict[str, str], timeout: float = 1800) -> float:
    """Build Dockerfile.gpu from the repo as ``tag``; return the seconds it took."""
    start = time.monotonic()
    sh(build_command(tag, build_args=build_args), timeout=timeout, env=buildkit_env())
    return time.monotonic() - start


def buildkit_env() -> dict[str, str]:
    """The environment for :func:`build_command` (the 20.10 client needs DOCKER_BUILDKIT=1)."""
    return {**os.environ, "DOCKER_BUILDKIT": "1"}


def image_size_mb(tag: str) -> float:
    """The image's size in MB (10^6 bytes, as `docker images` shows it)."""
    return int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip()) / 1e6


@dataclass
class Run:
    """A finished ``docker run``: its exit code and combined log."""

    code: int
    log: str
    seconds: float


def run_container(
    image: str,
    *args: str,
    mounts: Sequence[tuple[os.PathLike | str, str, str]] = (),
    env: dict[str, str] | None = None,
    timeout: float = 600,
    extra: Sequence[str] = (),
) -> Run:
    """``docker run --rm`` to completion with bind mounts ``(host, container, mode)``."""
    name = f"oic-test-{uuid.uuid4().hex[:10]}"
    cmd = ["docker", "run", "--name", name, "--label", LABEL, *extra]
    for host, target, mode in mounts:
        cmd += ["-v", f"{host}:{target}:{mode}"]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    cmd += [image, *args]
    start = time.monotonic()
    try:
        proc = sh(cmd, timeout=timeout, check=False)
    finally:
        docker("rm", "-f", name, check=False)
    return Run(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start)


class Container:
    """A detached container, removed when the ``with`` block ends, whatever happens."""

    def __init__(
        self,
        image: str,
        *args: str,
        mounts=(),
        env=None,
        publish: int | None = None,
        extra: Sequence[str] = (),
    ):
        self.name = f"oic-test-{uuid.uuid4().hex[:10]}"
        cmd = ["run", "-d", "--name", self.name, "--label", LABEL, *extra]
        for host, target, mode in mounts:
            cmd += ["-v", f"{host}:{target}:{mode}"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        if publish is not None:
            # Published on loopback only: tests never send traffic anywhere else.
            cmd += ["-p", f"127.0.0.1::{publish}"]
        self._cmd = [*cmd, image, *args]
        self.publish = publish

    def __enter__(self) -> Container:
        docker(*self._cmd, timeout=60)
        return self

    def __exit__(self, *exc) -> None:
        docker("rm", "-f", self.name, check=False)

    def url(self, path: str) -> str:
        """``http://127.0.0.1:<published port><path>``."""
        out = docker("port", self.name, str(self.publish)).stdout.split()
        port = next(line.rsplit(":", 1)[1] for line in out if line.startswith("127.0.0.1:"))
        return f"http://127.0.0.1:{port}{path}"

    def logs(self) -> str:
        proc = docker("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def running(self) -> bool:
        state = docker("inspect", "-f", "{{.State.Running}}", self.name, check=False)
        return state.stdout.strip() == "true"

    def exit_code(self) -> int:
        return int(docker("inspect", "-f", "{{.State.ExitCode}}", self.name).stdout.strip())

    def wait(self, timeout: float) -> int:
        """Wait for the container to exit; return its exit code."""
        return int(docker("wait", self.name, timeout=timeout).stdout.strip())

    def wait_for_log(self, needle: str, timeout: float) -> str:
        """Poll the log until ``needle`` appears (or the container exits); return the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.logs()
            if needle in log:
                return log
            if not self.running():
                raise AssertionError(f"container exited before logging {needle!r}:\n{log[-6000:]}")
            time.sleep(1)
        raise AssertionError(f"no {needle!r} in the log after {timeout} s:\n{self.logs()[-6000:]}")

    def stop(self, grace: int) -> tuple[int, float]:
        """``docker stop -t grace``; return the exit code and the seconds the stop took."""
        start = time.monotonic()
        docker("stop", "-t", str(grace), self.name, timeout=grace + 60)
        return self.exit_code(), time.monotonic() - start


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> Response:
    """One HTTP request to a loopback URL; HTTP errors are returned, not raised."""
    assert url.startswith("http://127.0.0.1:"), "tests only talk to published loopback ports"
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Response(resp.status, resp.read(), resp.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as err:
        return Response(err.code, err.read(), err.headers.get("Content-Type", ""))


def wait_for_ping(
    url: str,
    *,
    timeout: float,
    expect: int = 200,
    mentions: str = "",
    alive: Container | None = None,
) -> Response:
    """Poll ``GET url`` until it answers ``expect`` with ``mentions`` in the body; fail after
    ``timeout`` seconds. A 503 alone proves little: nginx answers 503 (starting) before the
    workers are up, so a test that means the app's own 503 names what the app says."""
    deadline = time.monotonic() + timeout
    last: Response | str = "no answer"
    while time.monotonic() < deadline:
        try:
            last = http(url, timeout=3)
            if last.status == expect and mentions.encode() in last.body:
                return last
        except (OSError, urllib.error.URLError) as exc:
            last = repr(exc)
        if alive is not None and not alive.running():
            raise AssertionError(f"the server exited:\n{alive.logs()[-6000:]}")
        time.sleep(1)
    logs = alive.logs()[-6000:] if alive is not None else ""
    raise AssertionError(f"{url} did not answer {expect} within {timeout} s: {last}\n{logs}")


@contextlib.contextmanager
def removed_on_exit(path: Path) -> Iterator[Path]:
    """Yield ``path`` and delete it afterwards (big temporary files such as libmxnet.so)."""
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
