"""Multi-host training on MXNet's own parameter server (ps-lite), as the MXNet toolkit runs it.

SageMaker starts the same image on every host and writes ``resourceconfig.json`` with the host
names. The first host runs the ps-lite scheduler, every host runs one server, and the training
process itself becomes a worker: ``mx.kv.create("dist_sync")`` then finds the others through the
``DMLC_*`` variables set here. Starting a scheduler or server is just ``import mxnet`` with
``DMLC_ROLE`` set: MXNet's ``kvstore_server`` module serves and exits at import for those roles.

Typical use by the trainer::

    cluster = Cluster.from_file(paths.resource_config)
    if cluster.is_distributed:
        with parameter_server(cluster, cfg.ps_port):
            kv = mx.kv.create(cfg.kv_store or "dist_sync")
            ...  # shard by kv.rank / kv.num_workers; only cluster.is_chief saves the model
            del kv  # let this worker leave the ps-lite barrier before the block ends

A worker leaves ps-lite when its KVStore is freed, with a barrier across every node, so the
scheduler must still be alive then: killing it first would hang every worker for ever. Hence on a
normal exit the children get ``shutdown_timeout`` seconds to end on their own (they do once every
worker has freed its KVStore); any still running are left to end with this process, to which
they are bound (``PR_SET_PDEATHSIG``), rather than killed under a live KVStore. After an exception
they are terminated at once, and every distributed KVStore of this process is told to skip that
exit barrier (MXNet's ``MXKVStoreSetBarrierBeforeExit``), so the failing host exits, its failure is
reported, and SageMaker (or compose's ``--abort-on-container-exit``) stops the other hosts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from train import json_input
from train.errors import ClientError

logger = logging.getLogger(__name__)

SINGLE_HOST = "algo-1"
DEFAULT_RESOLVE_TIMEOUT = 300.0  # seconds; SageMaker brings hosts up within a few minutes
# The scheduler or server process: ask Linux for SIGTERM when the parent dies (done here rather
# than in a preexec_fn, which is unsafe with threads), exit if it already has, then serve.
_CHILD_CODE = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(os.environ["OIC_PS_PARENT"]):
    sys.exit(0)
import mxnet
"""


class HostResolutionError(TimeoutError):
    """Some training hosts did not resolve in DNS before the timeout."""


@dataclass(frozen=True)
class Cluster:
    """The training hosts, as SageMaker's ``resourceconfig.json`` lists them."""

    hosts: tuple[str, ...]
    current_host: str

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ValueError("a cluster needs at least one host")
        if self.current_host not in self.hosts:
            raise ValueError(f"current_host {self.current_host!r} is not in hosts {self.hosts}")

    @classmethod
    def single(cls) -> Cluster:
        """One host named ``algo-1`` (a local run, or a file-less SageMaker-like setup)."""
        return cls(hosts=(SINGLE_HOST,), current_host=SINGLE_HOST)

    @classmethod
    def from_dict(cls, doc: Mapping[str, object]) -> Cluster:
        """Build from the parsed JSON of ``resourceconfig.json``."""
        hosts = doc.get("hosts") or []
        current = doc.get("current_host")
        if not isinstance(hosts, list) or not isinstance(current, str):
            raise ValueError("resourceconfig.json needs 'hosts' (a list) and 'current_host'")
        return cls(hosts=tuple(str(h) for h in hosts), current_host=current)

    @classmethod
    def from_file(cls, path: Path) -> Cluster:
        """Read ``resourceconfig.json``; a missing file means a single host ``algo-1``.

        Raises:
            ClientError: the file is not JSON, or not an object naming the hosts.
        """
        if not path.is_file():
            return cls.single()
        try:
            doc = json_input.loads(path.read_text())
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object with 'hosts' and 'current_host'")
            return cls.from_dict(doc)
        except ValueError as exc:  # JSONDecodeError too
            raise ClientError(f"{path} is not a usable resourceconfig.json: {exc}") from None

    @property
    def is_distributed(self) -> bool:
        """True when more than one host trains."""
        return len(self.hosts) > 1

    @property
    def rank(self) -> int:
        """Position of this host in ``hosts`` (0 for the chief)."""
        return self.hosts.index(self.current_host)

    @property
    def chief(self) -> str:
        """The first host: it runs the scheduler and writes the model."""
        return self.hosts[0]

    @property
    def is_chief(self) -> bool:
        """True on the first host."""
        return self.current_host == self.chief

    @property
    def num_workers(self) -> int:
        """One worker per host."""
        return len(self.hosts)


Resolver = Callable[[str], str]


def _resolve_once(host: str, timeout: float, resolver: Resolver) -> str | None:
    """One lookup that cannot block past ``timeout`` (the system resolver may hang for long)."""
    answer: queue.Queue[str | None] = queue.Queue(maxsize=1)

    def lookup() -> None:
        try:
            answer.put(resolver(host))
        except OSError:
            answer.put(None)

    threading.Thread(target=lookup, name=f"resolve-{host}", daemon=True).start()
    try:
        return answer.get(timeout=max(timeout, 0.01))
    except queue.Empty:
        return None


def resolve_hosts(
    hosts: Sequence[str],
    timeout: float = DEFAULT_RESOLVE_TIMEOUT,
    *,
    interval: float = 1.0,
    resolver: Resolver = socket.gethostbyname,
) -> dict[str, str]:
    """Wait until every host name resolves, and return ``{host: ip}``.

    Raises:
        HostResolutionError: after ``timeout`` seconds, naming the hosts that never resolved.
    """
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while True:
        for host in hosts:
            if host not in found:
                ip = _resolve_once(host, deadline - time.monotonic(), resolver)
                if ip:
                    found[host] = ip
        missing = [h for h in hosts if h not in found]
        if not missing:
            return found
        if time.monotonic() >= deadline:
            raise HostResolutionError(
                f"training hosts {', '.join(missing)} did not resolve in DNS within "
                f"{timeout:g} s (resolved: {', '.join(found) or 'none'}). The other instances "
                "did not come up or are not on this host's network; check the job's other "
                "hosts' logs, or for a local multi-host run that every container is on the "
                "same Docker network."
            )
        time.sleep(min(interval, max(deadline - time.monotonic(), 0)))


def ps_environment(
    cluster: Cluster, root_ip: str, port: int, verbose: int = 0, *, single_server: bool = False
) -> dict[str, str]:
    """The ``DMLC_*`` variables shared by every role (without ``DMLC_ROLE``)."""
    servers = 1 if single_server else cluster.num_workers  # the toolkit: one server per host
    return {
        "DMLC_PS_ROOT_URI": root_ip,
        "DMLC_PS_ROOT_PORT": str(port),
        "DMLC_NUM_WORKER": str(cluster.num_workers),
        "DMLC_NUM_SERVER": str(servers),
        "PS_VERBOSE": str(verbose),
    }


def _spawn(role: str, env: Mapping[str, str], python: str) -> subprocess.Popen[bytes]:
    """Start a ps-lite ``scheduler`` or ``server``: ``import mxnet`` with ``DMLC_ROLE`` set."""
    child_env = {**os.environ, **env, "DMLC_ROLE": role, "OIC_PS_PARENT": str(os.getpid())}
    logger.info("starting the MXNet parameter-server %s", role)
    return subprocess.Popen([python, "-c", _CHILD_CODE], env=child_env)


def _wait(children: Sequence[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    """Wait up to ``timeout`` s in all for the children to end; return the pids still running."""
    deadline = time.monotonic() + timeout
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(max(deadline - time.monotonic(), 0))
    return [child.pid for child in children if child.poll() is None]


def _skip_exit_barriers() -> int:
    """Tell this process's distributed KVStores not to wait for the other nodes when freed.

    Without this a worker whose scheduler is gone would hang for ever in ps-lite's exit barrier.
    Returns how many KVStores were found.
    """
    mx = sys.modules.get("mxnet")
    if mx is None:
        return 0
    import ctypes
    import gc

    stores = [o for o in gc.get_objects() if isinstance(o, mx.kv.KVStore) and "dist" in o.type]
    set_barrier = mx.base._LIB.MXKVStoreSetBarrierBeforeExit  # not wrapped in Python in 1.9
    for store in stores:
        mx.base.check_call(set_barrier(store.handle, ctypes.c_int(0)))
    return len(stores)


def _terminate(children: Sequence[subprocess.Popen[bytes]]) -> None:
    """Terminate the children, and kill those that ignore it for 5 s."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextlib.contextmanager
def _worker_environ(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` (MXNet reads it at ``kv.create``); restore on exit."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def parameter_server(
    cluster: Cluster,
    port: int = 8000,
    *,
    resolve_timeout: float = DEFAULT_RESOLVE_TIMEOUT,
    shutdown_timeout: float = 30.0,
    verbose: int = 0,
    single_server: bool = False,
    python: str = sys.executable,
) -> Iterator[dict[str, str]]:
    """Run this host's part of the parameter server; inside, this process is a ps-lite worker.

    Starts the scheduler on the chief (``hosts[0]``) and one server on every host (only on the
    chief with ``single_server``), and sets the worker variables in ``os.environ``. Yields the
    worker environment.

    ``single_server`` is for workers that apply the updates themselves (gluon
    ``Trainer(update_on_kvstore=False)`` with ``dist_sync``): with one server per host, MXNet
    1.9.1's push-pull of the gradients left the workers with different weights now and then
    (measured: 18 of 65 trainable arrays of a ResNet-20 differed after two epochs, one loss blew
    up); with one server they stayed identical. Updates on the servers work with either layout.

    Raises:
        HostResolutionError: when some host does not resolve within ``resolve_timeout`` s.
    """
    ips = resolve_hosts(cluster.hosts, resolve_timeout)
    env = ps_environment(cluster, ips[cluster.chief], port, verbose, single_server=single_server)
    children: list[subprocess.Popen[bytes]] = []
    try:
        if cluster.is_chief:
            children.append(_spawn("scheduler", env, python))
        if cluster.is_chief or not single_server:
            children.append(_spawn("server", env, python))
        with _worker_environ({**env, "DMLC_ROLE": "worker"}):
            yield {**env, "DMLC_ROLE": "worker"}
    except BaseException:
        _skip_exit_barriers()
        _terminate(children)
        raise
    running = _wait(children, shutdown_timeout)
    if running:
        logger.info(
            "parameter-server processes %s still serve other workers; they end with this process",
            running,
        )
