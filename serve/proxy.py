"""The nginx reverse proxy: finding the binary and rendering its configuration.

The configuration is ``container/nginx.conf`` with upper-case ``${...}`` placeholders filled
from the settings (port, payload limit, timeout) and from the supervisor (socket and state
folder), so nginx and gunicorn always agree on the limits.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from serve.settings import Settings

# Created in the state folder once a worker has loaded its model; nginx answers /ping from it
# when gunicorn is too busy to answer in time.
READY_MARKER = "model-ready"
# Overrides where the template is read from (the default is the repository's container/).
TEMPLATE_ENV = "SERVE_NGINX_TEMPLATE"
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
# nginx lives in sbin folders, which a non-root PATH may lack.
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def nginx_binary() -> str | None:
    """The nginx executable, or None when nginx is not installed."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which("nginx", path=path)


def template_path() -> Path:
    """``container/nginx.conf`` beside the ``serve`` package (or ``$SERVE_NGINX_TEMPLATE``)."""
    override = os.environ.get(TEMPLATE_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "container" / "nginx.conf"


def render(template: str, values: dict[str, str]) -> str:
    """Fill every upper-case ``${...}`` placeholder of ``template``.

    Raises:
        KeyError: the template uses a name ``values`` lacks.
    """

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"nginx template placeholder ${{{name}}} has no value")
        return values[name]

    return _PLACEHOLDER.sub(fill, template)


def nginx_conf(settings: Settings, *, socket: Path, state_dir: Path) -> str:
    """The nginx configuration for ``settings``, proxying to gunicorn on ``socket``."""
    values = {
        "HOST": settings.host,
        "PORT": str(settings.port),
        "SOCKET": str(socket),
        "STATE_DIR": str(state_dir),
        "READY_MARKER": READY_MARKER,
        "MAX_BODY_MB": str(settings.max_payload_mb),
        # A little more than gunicorn's, so that gunicorn's own timeout answers first.
        "TIMEOUT": str(settings.timeout + 5),
    }
    return render(template_path().read_text(), values)


def mark_ready(state_dir: Path | None) -> None:
    """Create the readiness marker (no-op without a state folder, i.e. without nginx)."""
    if state_dir is not None:
        (state_dir / READY_MARKER).touch()
