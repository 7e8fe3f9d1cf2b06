"""Content negotiation rules: request types, Accept preference, top_k and verbose."""

from __future__ import annotations

import pytest

from serve import content_types as ct
from serve.errors import BadRequest, NotAcceptable, UnsupportedMediaType
from serve.negotiation import (
    DEFAULT_VERBOSE_TOP_K,
    custom_attributes,
    output_options,
    parse_media_type,
    request_type,
    response_type,
)

RESPONSES = ct.RESPONSE_TYPES


def test_parse_media_type_lowercases_and_splits_parameters() -> None:
    assert parse_media_type('Application/JSON; Verbose="true"') == (ct.JSON, {"verbose": "true"})


@pytest.mark.parametrize("header", [None, "", "text/csv", "image/gif"])
def test_request_type_refuses_unsupported_with_the_list(header) -> None:
    with pytest.raises(UnsupportedMediaType, match="supported: application/x-image"):
        request_type(header, ct.REQUEST_TYPES)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, ct.JSON),
        ("", ct.JSON),
        ("*/*", ct.JSON),
        ("application/*", ct.JSON),
        (ct.JSONLINES, ct.JSONLINES),
        ("text/html, application/jsonlines;q=0.9, */*;q=0.1", ct.JSONLINES),
        ("application/json;q=0.2, application/jsonlines", ct.JSONLINES),
    ],
)
def test_response_type_follows_accept_preferences(accept, expected) -> None:
    assert response_type(accept, RESPONSES, ct.JSON)[0] == expected


def test_response_type_uses_the_configured_default() -> None:
    assert response_type("*/*", RESPONSES, ct.JSONLINES)[0] == ct.JSONLINES


@pytest.mark.parametrize("accept", ["text/csv", "image/*", "application/json;q=0"])
def test_response_type_refuses_what_it_cannot_write(accept) -> None:
    with pytest.raises(NotAcceptable, match="application/jsonlines"):
        response_type(accept, RESPONSES, ct.JSON)


def test_custom_attributes_accept_commas_and_semicolons() -> None:
    assert custom_attributes("top_k=3; Verbose=true,junk") == {"top_k": "3", "verbose": "true"}


def options(accept=None, query=None, attributes=None):
    return output_options(accept, query or {}, attributes, supported=RESPONSES, default=ct.JSON)


def test_plain_request_has_no_top_k() -> None:
    assert options().top_k is None


def test_verbose_in_accept_gives_the_default_top_k() -> None:
    assert options("application/json; verbose=true").top_k == DEFAULT_VERBOSE_TOP_K


def test_query_top_k_wins_over_custom_attributes() -> None:
    assert options(query={"top_k": "2"}, attributes="top_k=7").top_k == 2
    assert options(attributes="top_k=7").top_k == 7


@pytest.mark.parametrize("value", ["0", "-1", "three"])
def test_invalid_top_k_is_a_bad_request(value) -> None:
    with pytest.raises(BadRequest, match="top_k"):
        options(query={"top_k": value})
