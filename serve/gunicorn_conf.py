"""gunicorn's settings for the serving stack (``gunicorn -c python:serve.gunicorn_conf``).

gunicorn reads a config module's globals, so this module is its interface: the values come from
:class:`serve.settings.Settings` (the environment-variable table), parsed once here in the master.
``python -m serve`` adds ``--bind`` (nginx's unix socket, or the port when there is no nginx).

Why ``gthread``: each worker holds one model and runs it from one batching thread, while its
request threads decode, preprocess and wait. A ``/ping`` therefore never queues behind a
running inference (it takes a free thread), and requests that arrive together share a forward
pass. Slow clients are nginx's problem: it buffers whole requests and responses.
"""

from __future__ import annotations

import os
from typing import Any

from serve.predictor import WORKER_INDEX_ENV
from serve.settings import Settings
from train.images import lift_pillow_limit

_settings = Settings.from_env()

bind = [f"{_settings.host}:{_settings.port}"]
worker_class = "gthread"
workers = _settings.workers
threads = _settings.threads
timeout = _settings.timeout
# SageMaker sends SIGKILL 30 s after SIGTERM; in-flight requests get this long to finish.
graceful_timeout = 5
keepalive = 5
# The model is loaded after the fork, in each worker: MXNet's engine threads do not survive fork.
preload_app = False
# Heartbeat files on tmpfs: a worker is not killed because a disk-backed /tmp stalls.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No runtime-management socket: nothing uses it, and it would be written under $HOME, which an
# arbitrary container uid may not have.
control_socket_disable = True
accesslog = "-"
# Behind nginx the peer is the socket: the client is in X-Forwarded-For.
access_log_format = '%({x-forwarded-for}i)s "%(r)s" %(s)s %(B)s %(M)sms'
loglevel = _settings.log_level
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"level": _settings.log_level.upper(), "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {
            "level": _settings.log_level.upper(),
            "handlers": ["stderr"],
            "propagate": False,
        },
        "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}


def post_fork(server: Any, worker: Any) -> None:
    """Give each worker an index, so that workers spread over the visible GPUs; let
    ``SERVE_MAX_IMAGE_PIXELS`` alone limit image sizes (not Pillow's own cap)."""
    os.environ[WORKER_INDEX_ENV] = str((worker.age - 1) % max(1, server.num_workers))
    lift_pillow_limit()
