"""The production stack (``python -m serve``: nginx -> gunicorn -> Flask) on 127.0.0.1.

Needs nginx (``make deps`` installs it): these tests fail, not skip, without it, because the
container ships nginx and the stack must be tested as it runs there.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from serve import content_types as ct
from tests.conftest import png_bomb
from tests.datagen import make_image
from tests.serve_fixtures import REPO, ServerProcess, make_model_dir, require_nginx

pytestmark = pytest.mark.integration


def jpeg(label: int, seed: int) -> bytes:
    rng = random.Random(seed)
    image = make_image(label, rng, (rng.randint(30, 120), rng.randint(30, 120)))
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc (no process is matched by name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def booted_workers(log: str) -> list[str]:
    return re.findall(r"Booting worker with pid: (\d+)", log)


@pytest.fixture(scope="module")
def model_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("stack")
    make_model_dir(base / "model")
    return base


@pytest.fixture(scope="module")
def server(model_base, tmp_path_factory):
    require_nginx()
    env = {
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        "MODEL_SERVER_THREADS": "8",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1",
    }
    log = tmp_path_factory.mktemp("stack_log") / "server.log"
    with ServerProcess(model_base, log, env) as proc:
        proc.wait_ready(timeout=120)
        yield proc


def test_nginx_fronts_gunicorn(server) -> None:
    assert "nginx -> gunicorn" in server.log()
    assert len(children_of(server.process.pid)) == 2


def test_concurrent_mixed_requests_good_ones_answered_correctly_no_worker_dies(server) -> None:
    good = {f"good{i}": jpeg(i % 3, i) for i in range(8)}
    answers = {
        name: requests.post(
            f"{server.url}/invocations", data=body, headers={"Content-Type": ct.JPEG}, timeout=60
        )
        for name, body in good.items()
    }
    # Every worker answers, including one still loading its model when the first request
    # reaches it (it waits for the load: /ping was made healthy by another worker).
    assert all(r.status_code == 200 for r in answers.values()), {
        n: r.text for n, r in answers.items() if r.status_code != 200
    }
    expected = {name: response.json() for name, response in answers.items()}
    bad = {
        "empty": (b"", ct.JPEG, 400),
        "not_an_image": (b"<html>nope</html>" * 50, ct.JPEG, 400),
        "truncated": (good["good0"][: len(good["good0"]) // 2], ct.JPEG, 400),
        "bomb": (png_bomb(), ct.PNG, 413),
        "too_large": (b"\xff" * (1024 * 1024 + 10), ct.JPEG, 413),
        "csv": (b"1,2,3", "text/csv", 415),
    }
    jobs = [(n, b, ct.JPEG, 200) for n, b in good.items()] * 6
    jobs += [(n, *spec) for n, spec in bad.items()] * 4
    random.Random(0).shuffle(jobs)
    workers_before = booted_workers(server.log())

    def send(job):
        name, body, content_type, _ = job
        response = requests.post(
            f"{server.url}/invocations",
            data=body,
            headers={"Content-Type": content_type},
            timeout=60,
        )
        return name, response

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, jobs))
    for (name, response), (_, _, _, status) in zip(results, jobs, strict=True):
        assert response.status_code == status, (name, response.text)
        assert response.headers["Content-Type"].startswith(ct.JSON), name
        if status == 200:
            assert np.allclose(response.json(), expected[name], atol=1e-5), name
        else:
            assert "error" in response.json() and "Traceback" not in response.text
    assert booted_workers(server.log()) == workers_before  # no worker was replaced
    assert "Worker exiting" not in server.log() and "WORKER TIMEOUT" not in server.log()
    assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200


def test_ping_answers_within_2s_while_inference_is_saturated(server) -> None:
    body = jpeg(1, 99)
    stop = time.monotonic() + 6

    def hammer(_):
        count = 0
        with requests.Session() as session:
            while time.monotonic() < stop:
                session.post(
                    f"{server.url}/invocations",
                    data=body,
                    headers={"Content-Type": ct.JPEG},
                    timeout=30,
                )
                count += 1
        return count

    with ThreadPoolExecutor(24) as pool:
        load = [pool.submit(hammer, i) for i in range(24)]
        time.sleep(1)
        pings = []
        while time.monotonic() < stop - 0.5:
            start = time.monotonic()
            assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200
            pings.append(time.monotonic() - start)
            time.sleep(0.1)
        assert sum(f.result() for f in load) > 24
    assert max(pings) < 2.0


def gunicorn_workers(server_pid: int) -> list[int]:
    (master,) = [
        pid
        for pid in children_of(server_pid)
        if "gunicorn" in Path(f"/proc/{pid}/cmdline").read_text()
    ]
    return children_of(master)


def test_ping_is_answered_by_nginx_when_every_worker_is_stuck(server) -> None:
    workers = gunicorn_workers(server.process.pid)
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)  # as busy as a worker can be
    try:
        start = time.monotonic()
        response = requests.get(f"{server.url}/ping", timeout=5)
        assert response.status_code == 200
        assert 0.9 < time.monotonic() - start < 2.0
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200


def test_stalled_slow_clients_do_not_block_the_server(server) -> None:
    # More stalled uploads than gunicorn has threads (2 workers x 8): nginx holds them all.
    stalled = []
    for _ in range(24):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"\xff\xd8" * 100
        )
        stalled.append(sock)
    try:
        start = time.monotonic()
        response = requests.post(
            f"{server.url}/invocations",
            data=jpeg(2, 5),
            headers={"Content-Type": ct.JPEG},
            timeout=10,
        )
        assert response.status_code == 200
        assert time.monotonic() - start < 2.0
    finally:
        for sock in stalled:
            sock.close()


def test_unknown_paths_get_json_404_from_nginx(server) -> None:
    response = requests.get(f"{server.url}/admin", timeout=5)
    assert response.status_code == 404 and "error" in response.json()


def test_sigterm_stops_the_stack_cleanly_within_seconds(model_base, tmp_path) -> None:
    require_nginx()
    proc = ServerProcess(model_base, tmp_path / "server.log").start()
    proc.wait_ready(timeout=120)
    children = children_of(proc.process.pid)
    start = time.monotonic()
    assert proc.stop(timeout=15) == 0
    assert time.monotonic() - start < 10
    assert "Stop requested" in proc.log()
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)


def test_a_dying_child_stops_the_server_with_an_error(model_base, tmp_path) -> None:
    require_nginx()
    proc = ServerProcess(model_base, tmp_path / "server.log").start()
    proc.wait_ready(timeout=120)
    nginx = [
        pid
        for pid in children_of(proc.process.pid)
        if "nginx" in Path(f"/proc/{pid}/cmdline").read_text()
    ]
    assert len(nginx) == 1
    os.kill(nginx[0], signal.SIGKILL)
    code = proc.process.wait(timeout=20)
    assert code != 0
    assert "nginx exited" in proc.log()


def test_missing_model_starts_503_names_the_file_then_picks_up_the_model(tmp_path) -> None:
    """From the moment the port opens, every answer is the app's JSON: first that the server
    is starting (nginx, before a worker is up), then which model file is missing (a worker)."""
    require_nginx()
    (tmp_path / "model").mkdir()
    env = {"SERVE_MODEL_RETRY_SECONDS": "0.5"}
    missing = "image-classification-symbol.json"
    with ServerProcess(tmp_path, tmp_path / "server.log", env) as proc:
        seen = proc.wait_ping(lambda response: missing in response.text, timeout=60)
        for response in seen:
            assert response.status_code == 503, response.text
            assert response.headers["Content-Type"].startswith(ct.JSON), response.text
            error = response.json()["error"]
            assert "starting" in error or missing in error, error
        assert (
            "is missing: image-classification-symbol.json, model-shapes.json, "
            "image-classification-NNNN.params" in proc.log()
        )
        for pid in gunicorn_workers(proc.process.pid):  # a stuck worker without a model: 503
            os.kill(pid, signal.SIGSTOP)
        try:
            response = requests.get(f"{proc.url}/ping", timeout=5)
            assert response.status_code == 503 and "no worker answered" in response.json()["error"]
        finally:
            for pid in gunicorn_workers(proc.process.pid):
                os.kill(pid, signal.SIGCONT)
        make_model_dir(tmp_path / "model")  # training finishes after the server started
        proc.wait_ready(timeout=60)


def test_without_nginx_gunicorn_serves_the_port_itself(model_base, tmp_path) -> None:
    with ServerProcess(model_base, tmp_path / "server.log", {"SERVE_PROXY": "none"}) as proc:
        proc.wait_ready(timeout=120)
        response = requests.post(
            f"{proc.url}/invocations",
            data=jpeg(0, 1),
            headers={"Content-Type": ct.JPEG},
            timeout=30,
        )
        assert response.status_code == 200 and len(response.json()) == 3
        assert "gunicorn faces clients directly" in proc.log() or "nginx" not in proc.log()
        json.dumps(response.json())


def test_ping_turns_unhealthy_when_the_model_hangs_and_healthy_once_it_answers(
    model_base, tmp_path
) -> None:
    """The worker keeps running (gunicorn's heartbeat is fine) while every request thread waits
    for a model that never answers: /ping, from gunicorn or from nginx's fallback, must say
    503 once the stall limit passes, and 200 again once forward passes end."""
    require_nginx()
    freeze, limit = tmp_path / "freeze", 4.0
    env = {
        "MODEL_SERVER_THREADS": "2",
        "SERVE_PING_STALL_SECONDS": str(limit),
        "PYTHONPATH": f"{REPO / 'tests' / 'fault_injection'}{os.pathsep}{REPO}",
        "OIC_TEST_FREEZE_FILE": str(freeze),
    }
    with ServerProcess(model_base, tmp_path / "server.log", env) as proc:
        proc.wait_ready(timeout=120)
        freeze.touch()

        def invoke(_):
            return requests.post(
                f"{proc.url}/invocations",
                data=jpeg(0, 3),
                headers={"Content-Type": ct.JPEG},
                timeout=60,
            ).status_code

        with ThreadPoolExecutor(4) as pool:
            answers = pool.map(invoke, range(4))  # more than the worker's 2 threads
            start, release_at, timeline = time.monotonic(), limit + 4, []
            while (elapsed := time.monotonic() - start) < release_at + 4:
                if elapsed >= release_at and freeze.exists():
                    freeze.unlink()
                sent = time.monotonic()
                status = requests.get(f"{proc.url}/ping", timeout=5).status_code
                timeline.append((elapsed, status, time.monotonic() - sent))
                time.sleep(0.25)
            assert list(answers) == [200] * 4
        print("t(s) status latency(s):", [(round(t, 1), s, round(d, 2)) for t, s, d in timeline])
        assert max(d for _, _, d in timeline) < 2.0  # always answered within SageMaker's 2 s
        assert all(s == 200 for t, s, _ in timeline if t < limit - 0.5)
        assert all(s == 503 for t, s, _ in timeline if limit + 2.5 < t < release_at)
        assert all(s == 200 for t, s, _ in timeline if t > release_at + 2.5)
        assert "reporting unhealthy on /ping" in proc.log()
        assert "reporting healthy on /ping" in proc.log()
