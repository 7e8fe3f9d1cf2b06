"""Errors a request can end in, each with the HTTP status it maps to.

Handlers raise these; the app turns them into a JSON ``{"error": message}`` response. The
message is written for the client: it says what was wrong and what is accepted, never carries a
traceback (that goes to the log).
"""

from __future__ import annotations


class ServeError(Exception):
    """Base class: an error with an HTTP status and a client-facing message."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ServeError):
    """The body cannot be used: empty, not an image, truncated, malformed JSON or array."""

    status = 400


class NotFound(ServeError):
    """The path names something the server does not have (e.g. a model without a report)."""

    status = 404


class PayloadTooLarge(ServeError):
    """The body, or an image it declares, is larger than the server accepts."""

    status = 413


class UnsupportedMediaType(ServeError):
    """The request's Content-Type is not one the server reads."""

    status = 415


class NotAcceptable(ServeError):
    """None of the types in the request's Accept header is one the server writes."""

    status = 406


class ModelNotReady(ServeError):
    """No model is loaded (still loading, missing or broken model directory)."""

    status = 503


class Overloaded(ServeError):
    """The model did not answer in time (the server is overloaded); retry later."""

    status = 503


class Unhealthy(ServeError):
    """The model has stopped answering: requests wait and none completed for too long."""

    status = 503
