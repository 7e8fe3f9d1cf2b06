"""nginx's own answers, with the rendered ``container/nginx.conf`` in front of a stand-in for
gunicorn: a socket that is not there yet (workers starting) and one that never answers (workers
busy or stuck). Every answer nginx makes itself must be the app's JSON ``{"error": ...}``.

Needs nginx, no model and no gunicorn: each case takes seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from serve import content_types as ct
from serve import proxy
from serve.settings import Settings
from tests.ports import free_port
from tests.serve_fixtures import require_nginx

pytestmark = pytest.mark.integration

TIMEOUT_S = 1  # SAGEMAKER_MODEL_SERVER_TIMEOUT: nginx waits this + 5 s for /invocations


class Nginx:
    """nginx on 127.0.0.1:<free port>, proxying to ``state_dir/gunicorn.sock``."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.socket = state_dir / "gunicorn.sock"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = Settings.from_env(
            {
                "SAGEMAKER_BASE_DIR": str(state_dir),
                "SAGEMAKER_BIND_TO_PORT": str(self.port),
                "SERVE_HOST": "127.0.0.1",
                "SAGEMAKER_MODEL_SERVER_TIMEOUT": str(TIMEOUT_S),
            }
        )
        self.conf = state_dir / "nginx.conf"
        self.conf.write_text(proxy.nginx_conf(settings, socket=self.socket, state_dir=state_dir))

    def command(self, *args: str) -> list[str]:
        binary = proxy.nginx_binary()
        assert binary is not None
        return [binary, "-e", "stderr", "-p", str(self.state_dir), "-c", str(self.conf), *args]


@pytest.fixture
def nginx() -> Iterator[Nginx]:
    require_nginx()
    # A short folder: a unix socket's path must fit in 108 bytes. nginx's workers (another
    # user when the tests run as root) must reach the socket and the readiness marker.
    with tempfile.TemporaryDirectory(prefix="oic-nginx-") as tmp:
        state_dir = Path(tmp)
        state_dir.chmod(0o755)
        server = Nginx(state_dir)
        process = subprocess.Popen(server.command(), stderr=subprocess.DEVNULL)
        try:
            _wait_until_listening(server.port, process)
            yield server
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_until_listening(port: int, process: subprocess.Popen) -> None:
    for _ in range(100):
        assert process.poll() is None, "nginx exited at start"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nginx does not listen on {port}")


@pytest.fixture
def silent_gunicorn(nginx: Nginx) -> Iterator[socket.socket]:
    """A socket that accepts connections into its backlog and never answers: gunicorn's
    master has bound it and no worker is up (or every worker is stuck)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(nginx.socket))
        os.chmod(nginx.socket, 0o777)
        sock.listen(64)
        yield sock


def assert_json_error(response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == ct.JSON, response.headers
    assert words in response.json()["error"], response.text


def test_rendered_nginx_conf_passes_nginx_t(tmp_path) -> None:
    require_nginx()
    check = subprocess.run(Nginx(tmp_path).command("-t"), capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_before_gunicorn_listens_every_path_answers_json_503_starting(nginx) -> None:
    assert_json_error(requests.get(f"{nginx.url}/ping", timeout=5), 503, "starting")
    response = requests.post(f"{nginx.url}/invocations", data=b"x", timeout=5)
    assert_json_error(response, 503, "starting")
    response = requests.get(f"{nginx.url}/execution-parameters", timeout=5)
    assert_json_error(response, 503, "starting")


def test_ping_that_no_worker_answers_is_json_503_until_a_model_is_loaded(
    nginx, silent_gunicorn
) -> None:
    assert_json_error(requests.get(f"{nginx.url}/ping", timeout=5), 503, "starting")
    marker = nginx.state_dir / proxy.READY_MARKER
    marker.touch()
    marker.chmod(0o644)
    assert requests.get(f"{nginx.url}/ping", timeout=5).status_code == 200


def test_invocation_that_no_worker_answers_is_json_504_naming_the_timeout(
    nginx, silent_gunicorn
) -> None:
    response = requests.post(f"{nginx.url}/invocations", data=b"x", timeout=30)
    assert_json_error(response, 504, f"did not answer within {TIMEOUT_S + 5} s")


def test_oversized_headers_get_json_400(nginx) -> None:
    headers = {"X-Amzn-SageMaker-Custom-Attributes": "a" * 9000}
    response = requests.post(f"{nginx.url}/invocations", data=b"x", headers=headers, timeout=5)
    assert_json_error(response, 400, "headers too large")
