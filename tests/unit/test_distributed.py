"""Multi-host plumbing: resourceconfig, DNS waits, and a real ps-lite cluster on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.ports import free_port
from train.distributed import (
    Cluster,
    HostResolutionError,
    parameter_server,
    ps_environment,
    resolve_hosts,
)

ROOT = Path(__file__).resolve().parents[2]


def test_missing_resourceconfig_means_single_host_algo_1(tmp_path: Path) -> None:
    cluster = Cluster.from_file(tmp_path / "resourceconfig.json")
    assert cluster == Cluster(hosts=("algo-1",), current_host="algo-1")
    assert not cluster.is_distributed
    assert (cluster.rank, cluster.is_chief, cluster.num_workers) == (0, True, 1)


def test_resourceconfig_of_the_second_host(tmp_path: Path) -> None:
    path = tmp_path / "resourceconfig.json"
    path.write_text(
        json.dumps(
            {
                "current_host": "algo-2",
                "hosts": ["algo-1", "algo-2"],
                "network_interface_name": "eth0",
            }
        )
    )
    cluster = Cluster.from_file(path)
    assert cluster.is_distributed
    assert (cluster.rank, cluster.is_chief, cluster.chief, cluster.num_workers) == (
        1,
        False,
        "algo-1",
        2,
    )


def test_cluster_rejects_a_current_host_outside_hosts() -> None:
    with pytest.raises(ValueError, match="algo-3"):
        Cluster(hosts=("algo-1", "algo-2"), current_host="algo-3")


def test_ps_environment_has_one_server_and_one_worker_per_host() -> None:
    cluster = Cluster(hosts=("algo-1", "algo-2", "algo-3"), current_host="algo-2")
    assert ps_environment(cluster, "10.0.0.5", 8000) == {
        "DMLC_PS_ROOT_URI": "10.0.0.5",
        "DMLC_PS_ROOT_PORT": "8000",
        "DMLC_NUM_WORKER": "3",
        "DMLC_NUM_SERVER": "3",
        "PS_VERBOSE": "0",
    }


def test_ps_environment_with_a_single_server() -> None:
    cluster = Cluster(hosts=("algo-1", "algo-2"), current_host="algo-2")
    env = ps_environment(cluster, "10.0.0.5", 8000, single_server=True)
    assert (env["DMLC_NUM_WORKER"], env["DMLC_NUM_SERVER"]) == ("2", "1")


def test_resolve_hosts_waits_for_late_hosts() -> None:
    attempts: dict[str, int] = {}

    def late_resolver(host: str) -> str:
        attempts[host] = attempts.get(host, 0) + 1
        if host == "algo-2" and attempts[host] < 3:
            raise socket.gaierror(-2, "Name or service not known")
        return {"algo-1": "10.0.0.1", "algo-2": "10.0.0.2"}[host]

    found = resolve_hosts(["algo-1", "algo-2"], 5, interval=0.01, resolver=late_resolver)
    assert found == {"algo-1": "10.0.0.1", "algo-2": "10.0.0.2"}
    assert attempts == {"algo-1": 1, "algo-2": 3}


def test_scheduler_host_that_never_resolves_times_out_with_a_clear_error() -> None:
    start = time.monotonic()
    with pytest.raises(HostResolutionError, match=r"algo-1.*did not resolve in DNS within 0.5 s"):
        resolve_hosts(["algo-1.invalid"], 0.5, interval=0.1)
    assert time.monotonic() - start < 3


def test_a_resolver_that_hangs_cannot_hang_the_wait() -> None:
    def hanging_resolver(host: str) -> str:
        time.sleep(30)
        return "10.0.0.1"

    start = time.monotonic()
    with pytest.raises(HostResolutionError, match="algo-1"):
        resolve_hosts(["algo-1"], 0.3, resolver=hanging_resolver)
    assert time.monotonic() - start < 2


@pytest.fixture
def unrelated_child() -> Iterator[psutil.Process]:
    """A child process the parameter server did not start (as `make test`'s dockerd is)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def new_children(before: set[psutil.Process]) -> list[psutil.Process]:
    """Children of this process that were not there in ``before`` (and are still alive)."""
    return [p for p in psutil.Process().children() if p not in before and p.is_running()]


def test_parameter_server_fails_before_spawning_when_a_host_is_missing(
    unrelated_child: psutil.Process,
) -> None:
    before = set(psutil.Process().children())
    assert unrelated_child in before
    cluster = Cluster(hosts=("localhost", "algo-2.invalid"), current_host="localhost")
    with (
        pytest.raises(HostResolutionError, match="algo-2.invalid"),
        parameter_server(cluster, free_port(), resolve_timeout=0.3),
    ):
        pass  # pragma: no cover - never entered
    assert new_children(before) == []
    assert unrelated_child.is_running()
    assert "DMLC_ROLE" not in os.environ


def test_an_error_in_the_block_terminates_scheduler_and_server(
    unrelated_child: psutil.Process,
) -> None:
    before = set(psutil.Process().children())
    cluster = Cluster(hosts=("localhost", "127.0.0.1"), current_host="localhost")
    with (
        pytest.raises(RuntimeError, match="boom"),
        parameter_server(cluster, free_port(), resolve_timeout=5) as env,
    ):
        assert os.environ["DMLC_ROLE"] == "worker"
        assert env["DMLC_PS_ROOT_URI"] == "127.0.0.1"
        assert len(new_children(before)) == 2  # scheduler + server
        raise RuntimeError("boom")
    assert new_children(before) == []
    assert unrelated_child.is_running()
    assert "DMLC_ROLE" not in os.environ


WORKER = """
import sys
import mxnet as mx
import psutil
from train.distributed import Cluster, parameter_server

cluster = Cluster(hosts=("localhost", "127.0.0.1"), current_host=sys.argv[1])
single = sys.argv[3] == "single"
with parameter_server(cluster, int(sys.argv[2]), resolve_timeout=10, shutdown_timeout=30,
                      single_server=single):
    kv = mx.kv.create("dist_sync")
    kv.init(7, mx.nd.zeros((4,)))
    kv.push(7, mx.nd.ones((4,)) * (kv.rank + 1))
    out = mx.nd.zeros((4,))
    kv.pull(7, out=out)
    print("RESULT", kv.rank, kv.num_workers, out.asnumpy().tolist(), flush=True)
    del kv
print("CHILDREN", len(psutil.Process().children()), flush=True)
"""


def start_workers(script: str, *args: str) -> list[subprocess.Popen[str]]:
    """Two worker processes, the "hosts" ``localhost`` (chief) and ``127.0.0.1``."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return [
        subprocess.Popen(
            [sys.executable, "-c", script, host, str(port), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for host in ("localhost", "127.0.0.1")
    ]


@pytest.mark.parametrize("servers", ["per-host", "single"])
def test_two_workers_synchronise_a_tensor_through_scheduler_and_servers(servers: str) -> None:
    workers = start_workers(WORKER, servers)
    try:
        outputs = [w.communicate(timeout=120)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()
    for w, out in zip(workers, outputs, strict=True):
        assert w.returncode == 0, out
    results = sorted(
        line.split(" ", 3) for o in outputs for line in o.splitlines() if line.startswith("RESULT")
    )
    # dist_sync sums the pushes of both workers: 1 + 2 on every element.
    assert [r[1:] for r in results] == [
        ["0", "2", "[3.0, 3.0, 3.0, 3.0]"],
        ["1", "2", "[3.0, 3.0, 3.0, 3.0]"],
    ]
    assert all("CHILDREN 0" in o for o in outputs), outputs


FAILING_WORKER = """
import sys, time
import mxnet as mx
from train.distributed import Cluster, parameter_server

cluster = Cluster(hosts=("localhost", "127.0.0.1"), current_host=sys.argv[1])
with parameter_server(cluster, int(sys.argv[2]), resolve_timeout=10):
    kv = mx.kv.create("dist_sync")
    kv.init(7, mx.nd.zeros((4,)))
    kv.push(7, mx.nd.ones((4,)))
    kv.pull(7, out=mx.nd.zeros((4,)))
    print("SYNCED", flush=True)
    if cluster.is_chief:
        raise RuntimeError("training failed on the chief")
    time.sleep(300)  # the other host: killed by the test, as SageMaker stops the job
"""


def test_a_failing_worker_exits_instead_of_hanging_in_the_exit_barrier() -> None:
    chief, other = start_workers(FAILING_WORKER)
    try:
        out = chief.communicate(timeout=120)[0]
    finally:
        chief.kill()
        other.kill()
        other.wait()
    assert chief.returncode == 1, out
    assert "SYNCED" in out and "training failed on the chief" in out
