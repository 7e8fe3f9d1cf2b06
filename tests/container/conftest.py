"""Session fixtures for the container tests: a Docker engine, a base image, the two flavours.

Machines here have a Docker client but no engine and no registry (see the team's
containers-on-dev-machines doc). ``docker_engine`` uses a running engine when there is one,
otherwise starts ``dockerd`` (root) and stops that pid at the end. ``base_image`` makes
``debian:bookworm-slim`` with debootstrap. The host packages come from ``tests/host-deps``
(``make deps``, which ``make test`` runs first); nothing here installs anything. ``cpu_image``
and ``gpu_image`` build Dockerfile.gpu (BAKE_WEIGHTS=0: no internet for weights). Every test
here is marked ``container``. Timings and image sizes are printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.dockerctl import (
    LABEL,
    REPO,
    build_image,
    docker,
    image_size_mb,
    run_container,
    sh,
)
from tests.datagen import make_sagemaker_tree

# dockerd, nginx and debootstrap live in sbin folders, which a non-root PATH may lack.
HOST_PATH = f"{os.environ.get('PATH', '')}:/usr/local/sbin:/usr/sbin:/sbin"
BASE_IMAGE = "local/debian:bookworm-slim"
DEFAULT_BASE_IMAGE = "debian:bookworm-slim"
CPU_TAG = "oic:cpu"
GPU_TAG = "oic:gpu"

# Small enough for a 2-core CPU: seconds per epoch.
SMALL_HYPERPARAMETERS = {
    "num_layers": "20",
    "use_pretrained_model": "0",
    "image_shape": "3,32,32",
    "resize": "36",
    "epochs": "2",
    "mini_batch_size": "16",
    "learning_rate": "0.05",
}

TIMINGS: dict[str, str] = {}


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.container)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("container timings and sizes")
        for key, value in TIMINGS.items():
            terminalreporter.write_line(f"{key}: {value}")


def require_host_tools(*tools: str) -> None:
    """Fail (not skip) with the one fix when a host tool the test needs is missing."""
    missing = [tool for tool in tools if not shutil.which(tool, path=HOST_PATH)]
    assert not missing, (
        f"{', '.join(missing)} not installed: run `make deps` (as root), which installs "
        "everything the suite needs (tests/host-deps lists it)"
    )


def _engine_up() -> bool:
    return sh(["docker", "info"], timeout=30, check=False).returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    """A Docker engine and Compose v2; started here (and stopped at the end) if none runs."""
    started: subprocess.Popen | None = None
    require_host_tools("docker")
    if not _engine_up():
        assert os.geteuid() == 0, (
            "no Docker engine is running and only root can start one: start it "
            "(sudo systemctl start docker) or run the tests as root"
        )
        require_host_tools("dockerd")
        log = Path(tempfile.mkdtemp(prefix="dockerd-")) / "dockerd.log"
        start = time.monotonic()
        with log.open("wb") as out:  # dockerd keeps its own copy of the descriptor
            started = subprocess.Popen(
                ["dockerd", "--storage-driver=overlay2"], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while not _engine_up():
            if started.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start; see {log}")
            time.sleep(1)
        TIMINGS["dockerd start"] = f"{time.monotonic() - start:.0f} s (pid {started.pid})"
    assert sh(["docker", "compose", "version"], timeout=30, check=False).returncode == 0, (
        "Docker Compose v2 is not a docker CLI plugin here: run `make deps`"
    )
    try:
        yield
    finally:
        # Containers a crashed test may have left behind.
        ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False)
        if started is not None:
            started.terminate()
            try:
                started.wait(timeout=60)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(timeout=30)


@pytest.fixture(scope="session")
def base_image(docker_engine) -> str:
    """``local/debian:bookworm-slim`` from debootstrap, also tagged ``debian:bookworm-slim``."""
    have = docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0
    if not have:
        require_host_tools("debootstrap")
        mirror = "http://deb.debian.org/debian"
        for sources in Path("/etc/apt/sources.list.d").glob("*.sources"):
            for line in sources.read_text().splitlines():
                if line.startswith("URIs:"):
                    mirror = line.split()[1]
                    break
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="rootfs-") as rootfs:
            sh(["debootstrap", "--variant=minbase", "bookworm", rootfs, mirror], timeout=900)
            sh(["bash", "-c", f"tar -C {rootfs} -c . | docker import - {BASE_IMAGE}"], timeout=600)
        TIMINGS["base image (debootstrap)"] = f"{time.monotonic() - start:.0f} s"
    # The Dockerfile's (and compose's) default base then resolves locally, without a pull.
    docker("tag", BASE_IMAGE, DEFAULT_BASE_IMAGE)
    return BASE_IMAGE


def _build(tag: str, base: str, **args: str) -> str:
    seconds = build_image(tag, build_args={"BASE_IMAGE": base, "BAKE_WEIGHTS": "0", **args})
    TIMINGS[f"build {tag}"] = f"{seconds:.0f} s"
    TIMINGS[f"size {tag}"] = f"{image_size_mb(tag):.0f} MB"
    return tag


@pytest.fixture(scope="session")
def cpu_image(base_image) -> str:
    """The CPU flavour (``mxnet``), without baked weights; returns its tag."""
    return _build(CPU_TAG, base_image, MXNET_PACKAGE="mxnet")


@pytest.fixture(scope="session")
def gpu_image(base_image) -> str:
    """The GPU flavour (``mxnet-cu112`` + CUDA 11 wheels, ``onnxruntime-gpu`` + CUDA 12 wheels),
    without baked weights."""
    return _build(GPU_TAG, base_image)


def train_in_container(
    image: str, base: Path, *, extra: tuple[str, ...] = (), timeout: float = 900
):
    """``docker run IMAGE train`` with ``base`` mounted as /opt/ml."""
    return run_container(
        image, "train", mounts=[(base, "/opt/ml", "rw")], extra=extra, timeout=timeout
    )


@pytest.fixture(scope="session")
def trained_model(cpu_image, tmp_path_factory):
    """A small model trained in the CPU image: ``(opt_ml_dir, Run)``."""
    base = make_sagemaker_tree(
        tmp_path_factory.mktemp("trained") / "opt_ml", hyperparameters=SMALL_HYPERPARAMETERS
    )
    result = train_in_container(cpu_image, base)
    TIMINGS["train (cpu image, small)"] = f"{result.seconds:.0f} s"
    return base, result


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
