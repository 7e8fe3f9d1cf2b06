"""The Flask app: SageMaker's hosting contract (``/ping``, ``/invocations``,
``/execution-parameters``) over the decode -> preprocess -> predict -> encode stages, and, for
people, the try-it page (``/``) and the model's report (``/report``; see :mod:`serve.try_it`).

``create_app`` is the only way to get an app (``serve.wsgi`` calls it once per gunicorn worker).
The model is loaded there, once per worker, into a :class:`~serve.model_slot.ModelSlot` on
``app.extensions``; tests inject a fake predictor instead.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from serve import backends, negotiation, proxy, try_it
from serve.codecs import DECODERS, ENCODERS
from serve.errors import BadRequest, Overloaded, PayloadTooLarge, ServeError, Unhealthy
from serve.health import Progress, ReadinessWatch
from serve.model_slot import ModelSlot
from serve.predictor import Predictor, preprocess
from serve.settings import Settings
from train.images import ImageTooLarge

logger = logging.getLogger(__name__)

EXTENSION = "image_classification_serve"


@dataclass(frozen=True)
class ServeState:
    """What the request handlers share: the settings, the model slot and its model's progress."""

    settings: Settings
    model: ModelSlot
    progress: Progress


def _state() -> ServeState:
    return current_app.extensions[EXTENSION]


def create_app(
    settings: Settings | None = None,
    predictor: Predictor | None = None,
    progress: Progress | None = None,
) -> Flask:
    """Build the app; without ``predictor``, start loading ``settings.model_dir`` in the background.

    A model that cannot be loaded does not stop the app: ``/ping`` answers 503 and the log
    names the problem (see :class:`~serve.model_slot.ModelSlot`). ``/ping`` reads the model's
    progress from ``progress``, to which the loaded model's batcher reports (tests pass the
    one their ``predictor`` reports to). Behind nginx, a thread keeps the readiness file in
    step with it (see :mod:`serve.health`).
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    progress = progress or Progress(settings.ping_stall_s)
    if predictor is not None:
        slot = ModelSlot.holding(predictor)
    else:
        loader = functools.partial(_load_model, settings, progress)
        slot = ModelSlot(loader, retry_interval_s=settings.reload_interval_s)
        slot.start_loading()
    if settings.state_dir is not None:
        marker = settings.state_dir / proxy.READY_MARKER
        ReadinessWatch(progress, marker, lambda: slot.loaded).start()
    app.extensions[EXTENSION] = ServeState(settings, slot, progress)
    app.add_url_rule("/ping", view_func=ping, methods=["GET"])
    app.add_url_rule("/invocations", view_func=invocations, methods=["POST"])
    app.add_url_rule("/execution-parameters", view_func=execution_parameters, methods=["GET"])
    app.add_url_rule("/", view_func=try_it_page, methods=["GET"])
    app.add_url_rule("/report", view_func=model_report, methods=["GET"])
    app.register_error_handler(ServeError, _serve_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal_error)
    return app


def _load_model(settings: Settings, progress: Progress) -> Predictor:
    """Load the model of ``settings.model_dir`` (on the ``SERVE_BACKEND`` engine), reporting to
    ``progress``; tell nginx it is loaded."""
    predictor = backends.load_predictor(settings, progress)
    proxy.mark_ready(settings.state_dir)
    return predictor


def ping() -> Response:
    """200 with an empty body once the model is loaded and answering; 503 (JSON reason) before,
    and while images wait for a model that has ended no forward pass for too long."""
    state = _state()
    state.model.get()
    stalled_for = state.progress.stalled_for()
    if stalled_for is not None:
        raise Unhealthy(
            f"the model has ended no forward pass for {stalled_for:.0f} s while "
            f"{state.progress.owed_count} images wait for one (limit: SERVE_PING_STALL_SECONDS="
            f"{state.settings.ping_stall_s:g})"
        )
    return Response(status=200)


def invocations() -> Response:
    """Classify the image(s) in the body: decode -> preprocess -> predict -> encode."""
    state = _state()
    media_type = negotiation.request_type(request.content_type, DECODERS)
    options = negotiation.output_options(
        request.headers.get("Accept"),
        request.args,
        request.headers.get(negotiation.CUSTOM_ATTRIBUTES_HEADER),
        supported=ENCODERS,
        default=state.settings.default_accept,
    )
    predictor = state.model.get()
    decoded = DECODERS[media_type](request.get_data(cache=False), state.settings.max_image_pixels)
    probabilities = _classify(decoded.images, predictor, state)
    body = ENCODERS[options.media_type](
        probabilities, predictor.info.labels, decoded.batch, options.top_k
    )
    return Response(body, status=200, mimetype=options.media_type)


def _classify(images: list[np.ndarray], predictor: Predictor, state: ServeState) -> np.ndarray:
    """Preprocess and predict, a micro-batch at a time (a 100 MB batch-transform payload never
    becomes one giant float array)."""
    settings = state.settings
    step, outputs = settings.max_batch_size, []
    try:
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            batch = preprocess(
                chunk, predictor.info, max_pixels=settings.max_image_pixels, first_index=start
            )
            outputs.append(predictor.predict(batch))
    except ImageTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from exc
    except TimeoutError as exc:
        message = f"the model did not answer within {settings.timeout} s; retry later"
        raise Overloaded(message) from exc
    return np.concatenate(outputs)


def execution_parameters() -> Response:
    """Batch transform defaults (CreateTransformJob's own values take precedence)."""
    settings = _state().settings
    concurrency = settings.max_concurrent_transforms or settings.workers * settings.max_batch_size
    return jsonify(
        MaxConcurrentTransforms=concurrency,
        BatchStrategy=settings.batch_strategy,
        MaxPayloadInMB=settings.max_payload_mb,
    )


def try_it_page() -> Response:
    """The try-it page; it never waits for the model (while it loads, the page says so)."""
    state = _state()
    info = state.model.get().info if state.model.loaded else None
    return try_it.page_response(state.settings.model_dir, info)


def model_report() -> Response:
    """The training report saved beside the model (404 JSON without one)."""
    return try_it.report_response(_state().settings.model_dir)


def _json_error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def _serve_error(exc: ServeError) -> Response:
    # Client errors get one log line; a bad body also gets its traceback (never the response).
    logger.warning(
        "%s %s -> %d: %s",
        request.method,
        request.path,
        exc.status,
        exc.message,
        exc_info=isinstance(exc, BadRequest),
    )
    return _json_error(exc.status, exc.message)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 413:
        limit = _state().settings.max_payload_mb
        message = f"request body over the {limit} MiB limit (SAGEMAKER_MAX_PAYLOAD_IN_MB)"
    else:
        message = f"{exc.name}: {request.method} {request.path}"
    logger.warning("%s %s -> %d: %s", request.method, request.path, status, message)
    return _json_error(status, message)


def _internal_error(exc: Exception) -> Response:
    logger.exception("%s %s -> 500", request.method, request.path)
    return _json_error(500, f"internal server error ({type(exc).__name__}); see the server log")
