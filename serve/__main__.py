"""``python -m serve``: the production server (what the container's ``serve`` runs).

``python -m serve --env-table`` prints the environment variables it reads, as Markdown.
"""

from __future__ import annotations

import argparse
import logging
import sys

from serve import supervisor
from serve.settings import Settings, SettingsError, env_table_markdown

logger = logging.getLogger("serve")


def build_parser() -> argparse.ArgumentParser:
    """The command line: no options needed; the environment configures the server."""
    parser = argparse.ArgumentParser(
        prog="python -m serve",
        description="Serve the model in $SAGEMAKER_BASE_DIR/model (default /opt/ml/model) "
        "on port 8080 (or $SAGEMAKER_BIND_TO_PORT): nginx -> gunicorn -> Flask.",
    )
    parser.add_argument(
        "--env-table",
        action="store_true",
        help="print the environment variables the server reads, and exit",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the environment, run the stack, return the exit code."""
    args = build_parser().parse_args(argv)
    if args.env_table:
        print(env_table_markdown())
        return 0
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        return supervisor.run(settings)
    except (SettingsError, supervisor.ProxyUnavailable) as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
