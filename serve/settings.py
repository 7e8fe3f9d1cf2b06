"""The server's environment variables: one table, each value parsed exactly once.

SageMaker configures a model server through environment variables (``ContainerDefinition.
Environment``, plus the ones it sets itself for batch transform). Every variable the server
reads is a row of :data:`ENV_TABLE`; :meth:`Settings.from_env` parses them all once, up front,
into a frozen :class:`Settings` that the rest of the package receives as an argument.
docs/serving.md prints the same table (``python -m serve --print-env-table``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.images import DEFAULT_MAX_PIXELS
from train.paths import Paths

MIB = 1024 * 1024
# Set by the supervisor for its children (not by users).
STATE_DIR_ENV = "SERVE_STATE_DIR"
BATCH_STRATEGIES = ("MULTI_RECORD", "SINGLE_RECORD")
BACKENDS = ("auto", "mxnet", "onnxruntime")


class SettingsError(ValueError):
    """An environment variable has a value the server cannot use; the message names it."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("expected a positive integer")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("expected a number >= 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("expected a number > 0")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false or 1/0")


def _batch_strategy(text: str) -> str:
    value = text.strip().upper().replace("MULTIRECORD", "MULTI_RECORD")
    value = value.replace("SINGLERECORD", "SINGLE_RECORD")
    if value not in BATCH_STRATEGIES:
        raise ValueError(f"expected one of {', '.join(BATCH_STRATEGIES)}")
    return value


def _backend(text: str) -> str:
    value = text.strip().lower()
    if value not in BACKENDS:
        raise ValueError(f"expected one of {', '.join(BACKENDS)}")
    return value


def _proxy(text: str) -> str:
    value = text.strip().lower()
    if value not in ("auto", "nginx", "none"):
        raise ValueError("expected auto, nginx or none")
    return value


@dataclass(frozen=True)
class EnvVar:
    """One row of the table: the names read (first set wins), default, parser and meaning."""

    field: str
    names: tuple[str, ...]
    default: Any
    parse: Callable[[str], Any]
    help: str


ENV_TABLE: tuple[EnvVar, ...] = (
    EnvVar(
        "port",
        ("SAGEMAKER_BIND_TO_PORT",),
        8080,
        _positive_int,
        "TCP port to listen on (SageMaker sets it for inference pipelines)",
    ),
    EnvVar(
        "host",
        ("SERVE_HOST",),
        "0.0.0.0",
        str,
        "address to listen on (0.0.0.0: every interface, as a container must)",
    ),
    EnvVar(
        "workers",
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "MODEL_SERVER_WORKERS"),
        1,
        _positive_int,
        "gunicorn worker processes, each with its own copy of the model; one "
        "uses every core (MXNet threads) and batches concurrent requests",
    ),
    EnvVar(
        "threads",
        ("MODEL_SERVER_THREADS",),
        32,
        _positive_int,
        "request threads per worker (decode and preprocess in parallel; "
        "keeps /ping answered while inference runs)",
    ),
    EnvVar(
        "timeout",
        ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "MODEL_SERVER_TIMEOUT"),
        60,
        _positive_int,
        "seconds a request may take (gunicorn timeout, nginx proxy timeout)",
    ),
    EnvVar(
        "ping_stall_s",
        ("SERVE_PING_STALL_SECONDS",),
        60.0,
        _positive_float,
        "/ping answers 503 while images wait for the model and no forward pass has ended for "
        "this long (a hung model), 200 again once one ends; SageMaker then replaces the instance",
    ),
    EnvVar(
        "max_payload_mb",
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB",),
        6,
        _positive_int,
        "largest request body in MiB; larger bodies get 413 (SageMaker's real-time limit)",
    ),
    EnvVar(
        "batch",
        ("SAGEMAKER_BATCH",),
        False,
        _bool,
        "set to true by SageMaker in batch transform jobs (informational)",
    ),
    EnvVar(
        "batch_strategy",
        ("SAGEMAKER_BATCH_STRATEGY",),
        "MULTI_RECORD",
        _batch_strategy,
        "BatchStrategy advertised by GET /execution-parameters",
    ),
    EnvVar(
        "max_concurrent_transforms",
        ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS",),
        None,
        _positive_int,
        "MaxConcurrentTransforms advertised by GET /execution-parameters "
        "(default: workers x max batch size)",
    ),
    EnvVar(
        "default_accept",
        ("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",),
        "application/json",
        str,
        "response type when a request has no Accept header (or */*)",
    ),
    EnvVar(
        "backend",
        ("SERVE_BACKEND",),
        "auto",
        _backend,
        "what runs the model: mxnet, onnxruntime (the model's model.onnx, converted at load "
        "when absent or stale), or auto: by the GPU (docs/serving.md, 'Backends')",
    ),
    EnvVar(
        "max_batch_size",
        ("SERVE_MAX_BATCH_SIZE",),
        16,
        _positive_int,
        "most images in one forward pass (requests that arrive together are batched)",
    ),
    EnvVar(
        "batch_wait_ms",
        ("SERVE_BATCH_WAIT_MS",),
        0.0,
        _non_negative_float,
        "under steady load, how long a batch smaller than the previous one waits for the rest "
        "(0: take only what is waiting; a lone client never waits; may help on a GPU, did "
        "not on 2 CPU cores)",
    ),
    EnvVar(
        "max_image_pixels",
        ("SERVE_MAX_IMAGE_PIXELS",),
        DEFAULT_MAX_PIXELS,
        _positive_int,
        "images declaring more pixels are refused (413) before decoding; the decoders' own caps "
        "(Pillow's, OpenCV's) are set aside or set to it",
    ),
    EnvVar(
        "reload_interval_s",
        ("SERVE_MODEL_RETRY_SECONDS",),
        10.0,
        _non_negative_float,
        "while no model is loaded, /ping retries loading at most this often",
    ),
    EnvVar(
        "proxy",
        ("SERVE_PROXY",),
        "auto",
        _proxy,
        "auto: nginx in front of gunicorn when nginx is installed; nginx: require it; "
        "none: gunicorn listens on the port itself",
    ),
    EnvVar("log_level", ("SERVE_LOG_LEVEL",), "info", str.lower, "log level of the server"),
    EnvVar(
        "state_dir",
        (STATE_DIR_ENV,),
        None,
        Path,
        "set by `python -m serve` for its children: nginx's folder, where a worker marks that "
        "its model is loaded (nginx's /ping fallback)",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Everything the server reads from its environment, parsed and validated.

    The defaults live in :data:`ENV_TABLE` only; build one with :meth:`from_env` (tests pass a
    dict) and change a field with :func:`dataclasses.replace`.
    """

    model_dir: Path
    port: int
    host: str
    workers: int
    threads: int
    timeout: int
    ping_stall_s: float
    max_payload_mb: int
    batch: bool
    batch_strategy: str
    max_concurrent_transforms: int | None
    default_accept: str
    backend: str
    max_batch_size: int
    batch_wait_ms: float
    max_image_pixels: int
    reload_interval_s: float
    proxy: str
    log_level: str
    state_dir: Path | None

    @property
    def max_body_bytes(self) -> int:
        """The request body limit in bytes."""
        return self.max_payload_mb * MIB

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse every row of :data:`ENV_TABLE` (model dir from ``SAGEMAKER_BASE_DIR``).

        Raises:
            SettingsError: naming the variable, its value and what is expected.
        """
        env = os.environ if environ is None else environ
        values = {row.field: _read(row, env) for row in ENV_TABLE}
        return cls(model_dir=Paths.from_env(dict(env)).model_dir, **values)


def _read(row: EnvVar, env: Mapping[str, str]) -> Any:
    for name in row.names:
        raw = env.get(name)
        if raw is None or not raw.strip():
            continue
        try:
            return row.parse(raw.strip())
        except ValueError as exc:
            raise SettingsError(f"environment variable {name}={raw!r} is invalid: {exc}") from None
    return row.default


def env_table_markdown() -> str:
    """The table of :data:`ENV_TABLE` as Markdown, for docs/serving.md."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines.append(
        "| `SAGEMAKER_BASE_DIR` | `/opt/ml` | the model is read from `$SAGEMAKER_BASE_DIR/model` |"
    )
    for row in ENV_TABLE:
        names = " or ".join(f"`{n}`" for n in row.names)
        default = "(see meaning)" if row.default is None else f"`{row.default}`"
        lines.append(f"| {names} | {default} | {row.help} |")
    return "\n".join(lines)
