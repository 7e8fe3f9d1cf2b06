"""`make venv` on a system without Python 3.11: Debian 13 (trixie) packages 3.13 only.

In a trixie container (python3, pip and make from Debian; the checkout mounted read-only),
`make python`, the step of `make venv` that finds or installs the interpreter, either gives a
working 3.11 (uv from PyPI, CPython from python-build-standalone) or stops with a message that
names what failed and the other ways to get 3.11. Without any network the outcome is known: the
message about uv. With the container's network it depends on what the machine reaches (here:
PyPI, not GitHub), so either outcome is accepted, each checked in full.

The trixie image is made once with debootstrap and kept (``local/debian:trixie-python``), as
conftest's base image is.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from tests.container.conftest import TIMINGS, require_host_tools
from tests.container.dockerctl import HOST_CA_BUNDLE, LABEL, REPO, docker, sh

TRIXIE_IMAGE = "local/debian:trixie-python"
PACKAGES = "python3,python3-pip,make,ca-certificates"
ALTERNATIVES = ("deadsnakes", "uv python install 3.11", "pyenv install 3.11", "make venv PYTHON=")


@pytest.fixture(scope="module")
def trixie_image(docker_engine) -> str:
    if docker("image", "inspect", TRIXIE_IMAGE, check=False).returncode != 0:
        require_host_tools("debootstrap")
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="rootfs-") as rootfs:
            sh(
                ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "trixie", rootfs,
                 "http://deb.debian.org/debian"],
                timeout=900,
            )  # fmt: skip
            sh(
                ["bash", "-c", f"tar -C {rootfs} -c . | docker import - {TRIXIE_IMAGE}"],
                timeout=600,
            )
        TIMINGS["trixie image (debootstrap)"] = f"{time.monotonic() - start:.0f} s"
    return TRIXIE_IMAGE


def make_python(image: str, *options: str) -> tuple[int, str, str, float]:
    """``make python`` in a fresh container; then, when it printed a path, that interpreter's
    version and whether it has what a venv build needs. Returns (rc, stdout, stderr, seconds)."""
    script = (
        'py=$(make -s -C /src python) || exit $?; echo "$py"; '
        '"$py" -c "import ensurepip, os, sys, sysconfig; '
        "h = os.path.join(sysconfig.get_paths()['include'], 'Python.h'); "
        'print(sys.version_info[:2], os.path.exists(h))"'
    )
    start = time.monotonic()
    result = docker(
        "run", "--rm", "--label", LABEL, "-v", f"{REPO}:/src:ro", *options,
        image, "bash", "-c", script,
        timeout=600, check=False,
    )  # fmt: skip
    print(f"\n$ make python {' '.join(options)}\n{result.stdout}{result.stderr}")  # -rA shows it
    return result.returncode, result.stdout, result.stderr, time.monotonic() - start


def assert_clear_message(stderr: str, what_failed: str) -> None:
    assert stderr.count("make venv: ") >= 1, stderr
    assert what_failed in stderr, stderr
    for way in ALTERNATIVES:
        assert way in stderr, (way, stderr)
    assert "Traceback" not in stderr, stderr


def test_without_network_it_says_what_failed_and_the_other_ways(trixie_image):
    rc, out, err, seconds = make_python(trixie_image, "--network", "none")
    TIMINGS["make python, trixie, no network"] = f"{seconds:.0f} s"
    assert rc != 0 and out == "", out
    assert_clear_message(err, "could not download uv 0.13.8 from PyPI")


def test_with_the_network_it_gives_a_working_311_or_says_what_failed(trixie_image):
    ca = []
    if HOST_CA_BUNDLE.is_file():  # a TLS-inspecting proxy's CA, for pip and uv alike
        bundle = str(HOST_CA_BUNDLE)
        ca = ["-v", f"{bundle}:{bundle}:ro"]
        ca += ["-e", f"PIP_CERT={bundle}", "-e", f"SSL_CERT_FILE={bundle}"]
    rc, out, err, seconds = make_python(trixie_image, *ca)
    TIMINGS["make python, trixie, network"] = f"{seconds:.0f} s"
    if rc == 0:
        path, report = out.splitlines()[-2:]
        assert Path(path).name.startswith("python3"), out
        assert report == "(3, 11) True", out  # 3.11, with ensurepip and its headers
        return
    if "could not download uv" in err:  # PyPI out of reach too
        assert_clear_message(err, "could not download uv 0.13.8 from PyPI")
    else:
        assert "fetching uv 0.13.8 from PyPI" in err, err
        assert_clear_message(err, "uv could not download CPython 3.11 from https://github.com/")
