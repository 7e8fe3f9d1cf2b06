"""Content negotiation: which decoder and encoder a request gets, and its output options.

Pure functions of header and query strings, so every rule is unit-tested without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from serve import content_types as ct
from serve.errors import BadRequest, NotAcceptable, UnsupportedMediaType

# SageMaker passes this header through InvokeEndpoint's CustomAttributes parameter.
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
# Top classes listed by a verbose response when the request gives no top_k.
DEFAULT_VERBOSE_TOP_K = 5
_TRUE = ("1", "true", "yes")


@dataclass(frozen=True)
class OutputOptions:
    """How the response is written: its media type, and the top classes wanted (None: no list)."""

    media_type: str
    top_k: int | None


def parse_media_type(header: str) -> tuple[str, dict[str, str]]:
    """``'Application/JSON; verbose=true'`` to ``('application/json', {'verbose': 'true'})``."""
    main, *params = header.split(";")
    parsed = {}
    for param in params:
        key, _, value = param.partition("=")
        if key.strip():
            parsed[key.strip().lower()] = value.strip().strip('"')
    return main.strip().lower(), parsed


def request_type(content_type: str | None, supported: Iterable[str]) -> str:
    """The media type of the request body.

    Raises:
        UnsupportedMediaType: missing or unsupported Content-Type, listing the supported ones.
    """
    supported = tuple(supported)
    media_type = parse_media_type(content_type or "")[0]
    if media_type not in supported:
        shown = media_type or "none"
        raise UnsupportedMediaType(
            f"unsupported Content-Type {shown!r}; supported: {', '.join(supported)}"
        )
    return media_type


def _accept_entries(accept: str) -> list[tuple[float, int, str, dict[str, str]]]:
    entries = []
    for position, item in enumerate(part for part in accept.split(",") if part.strip()):
        media_type, params = parse_media_type(item)
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 0.0
        if quality > 0:
            entries.append((-quality, position, media_type, params))
    return sorted(entries)


def response_type(
    accept: str | None, supported: Iterable[str], default: str
) -> tuple[str, dict[str, str]]:
    """The response media type and its parameters, by the Accept header's preference order.

    An absent Accept header, or ``*/*``, gives ``default``; ``application/*`` the first supported
    ``application/`` type.

    Raises:
        NotAcceptable: no acceptable type is supported, listing the supported ones.
    """
    supported = tuple(supported)
    if not accept or not accept.strip():
        return default, {}
    for _, _, media_type, params in _accept_entries(accept):
        if media_type in supported:
            return media_type, params
        if media_type == ct.ANY:
            return default, params
        if media_type.endswith("/*"):
            prefix = media_type[:-1]
            match = next((t for t in supported if t.startswith(prefix)), None)
            if match:
                return match, params
    raise NotAcceptable(f"unsupported Accept {accept!r}; supported: {', '.join(supported)}")


def custom_attributes(header: str | None) -> dict[str, str]:
    """``'top_k=3, verbose=true'`` (``,`` or ``;`` separated) to a dict; other text ignored."""
    attributes = {}
    for item in (header or "").replace(";", ",").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attributes[key.strip().lower()] = value.strip()
    return attributes


def _parse_top_k(raw: str, source: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BadRequest(f"{source} top_k={raw!r} is invalid: expected a positive integer")
    return value


def output_options(
    accept: str | None,
    query: Mapping[str, str],
    attributes_header: str | None,
    *,
    supported: Iterable[str],
    default: str,
) -> OutputOptions:
    """Combine the Accept header, the ``top_k`` / ``verbose`` query parameters and the SageMaker
    custom attributes into the response options (query first, then attributes, then Accept).

    Raises:
        NotAcceptable: see :func:`response_type`.
        BadRequest: ``top_k`` is not a positive integer.
    """
    media_type, params = response_type(accept, supported, default)
    attributes = custom_attributes(attributes_header)
    for source, values in (("query parameter", query), ("custom attribute", attributes)):
        if values.get("top_k"):
            return OutputOptions(media_type, _parse_top_k(values["top_k"], source))
    sources = (query.get("verbose", ""), attributes.get("verbose", ""), params.get("verbose", ""))
    verbose = any(value.lower() in _TRUE for value in sources)
    return OutputOptions(media_type, DEFAULT_VERBOSE_TOP_K if verbose else None)
