"""JSON from outside the product (request bodies, manifests, SageMaker's configuration files,
the CLI's files): one :func:`loads` whose every failure is a ``json.JSONDecodeError``.

``json.loads`` raises ``RecursionError`` (neither a ``ValueError`` nor a ``JSONDecodeError``)
for a document nested deeper than Python's recursion limit, e.g. 2,000 ``[``. Callers already
turn ``JSONDecodeError`` into their clear error (a 400, a ``ClientError``, a line's problem);
:func:`loads` makes the deep document one of those instead of an internal error.
"""

from __future__ import annotations

import json
from typing import Any


class NestedTooDeeply(json.JSONDecodeError):
    """A JSON document nested too deeply to parse (a ``JSONDecodeError``, so a ``ValueError``)."""

    def __init__(self, doc: str | bytes):
        message = "nested too deeply: no document this product reads has more than a few levels"
        ValueError.__init__(self, message)
        self.msg, self.doc, self.pos, self.lineno, self.colno = message, doc, 0, 1, 1

    def __reduce__(self) -> tuple[Any, ...]:  # JSONDecodeError's own passes three arguments
        return type(self), (self.doc,)


def loads(text: str | bytes) -> Any:
    """``json.loads``, raising :class:`NestedTooDeeply` for a document too deep to parse.

    Raises:
        json.JSONDecodeError: not JSON, or nested too deeply.
        UnicodeDecodeError: bytes that are not UTF-8/16/32 (a ``ValueError`` too).
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise NestedTooDeeply(text) from None
