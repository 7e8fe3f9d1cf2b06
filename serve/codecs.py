"""Request decoders and response encoders, keyed by media type.

Decoders turn a request body into RGB images (``HxWx3`` uint8), through the same safe decoder the
trainer uses; encoders turn a batch of class probabilities into a response body. Both are pure
functions selected from :data:`DECODERS` / :data:`ENCODERS`, so adding a format is one function
and one dict entry.

Request formats:

- ``application/x-image``, ``image/jpeg``, ``image/png``: one encoded image (the built-in's).
- ``application/x-npy``: a NumPy ``.npy`` array, ``HxWx3`` (one image) or ``NxHxWx3`` (a batch)
  uint8 RGB; ``HxW`` / ``HxWx1`` grayscale is accepted too.
- ``application/json``: a base64 string or ``{"b64": ...}`` (one image), or a list of those, or
  ``{"instances": [...]}`` (a batch).
- ``application/jsonlines``: one base64 string or ``{"b64": ...}`` per line (a batch).

Response formats:

- ``application/json``: the built-in's: a list of class probabilities, or a list of such lists
  for a batch. With a top-k request, per image ``{"prediction": [...], "predicted_label": name,
  "top_k": [{"index": i, "label": name, "probability": p}, ...]}``.
- ``application/jsonlines``: one ``{"prediction": [...]}`` line per image (plus the top-k keys).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serve import content_types as ct
from serve.errors import BadRequest, PayloadTooLarge
from train import json_input
from train.images import BadImage, ImageTooLarge, decode_image

# Keys under which a JSON object may carry a base64 image.
_B64_KEYS = ("b64", "image")


@dataclass(frozen=True)
class Decoded:
    """The images of one request, and whether the request was a batch (list-shaped answer)."""

    images: list[np.ndarray]
    batch: bool


def _decode_one(data: bytes, max_pixels: int, where: str = "") -> np.ndarray:
    prefix = f"{where}: " if where else ""
    try:
        return decode_image(data, max_pixels=max_pixels)
    except ImageTooLarge as exc:
        raise PayloadTooLarge(f"{prefix}{exc}") from exc
    except BadImage as exc:
        # Chained, so the log's traceback shows where decoding failed (never the response).
        raise BadRequest(f"{prefix}{exc}") from exc


def decode_encoded_image(body: bytes, max_pixels: int) -> Decoded:
    """One JPEG/PNG/... file as the whole body."""
    if not body:
        raise BadRequest("empty request body: send the image file's bytes")
    return Decoded([_decode_one(body, max_pixels)], batch=False)


def _as_rgb(array: np.ndarray, where: str) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3) or min(array.shape[:2]) < 1:
        raise BadRequest(f"{where}: expected HxWx3 (or HxW grayscale), got shape {array.shape}")
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def decode_npy(body: bytes, max_pixels: int) -> Decoded:
    """A ``.npy`` uint8 array: ``HxWx3`` / ``HxW`` (one image) or ``NxHxWx3`` (a batch)."""
    if not body:
        raise BadRequest("empty request body: send a .npy array (numpy.save)")
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadRequest(f"not a valid .npy array ({exc})") from None
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise BadRequest(f"expected a uint8 array, got {getattr(array, 'dtype', type(array))}")
    if array.ndim == 4:
        if array.shape[1] * array.shape[2] > max_pixels:
            raise PayloadTooLarge(f"images of {array.shape[2]}x{array.shape[1]} exceed the limit")
        return Decoded([_as_rgb(a, f"image {i}") for i, a in enumerate(array)], batch=True)
    return Decoded([_as_rgb(array, "array")], batch=False)


def _b64_bytes(item: Any, where: str) -> bytes:
    if isinstance(item, dict):
        item = next((item[k] for k in _B64_KEYS if k in item), None)
    if not isinstance(item, str):
        raise BadRequest(f'{where}: expected a base64 string or {{"b64": "<base64>"}}')
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}: invalid base64") from None


def _decode_items(items: Sequence[Any], max_pixels: int) -> list[np.ndarray]:
    if not items:
        raise BadRequest("the request holds no images")
    return [
        _decode_one(_b64_bytes(item, f"image {i}"), max_pixels, f"image {i}")
        for i, item in enumerate(items)
    ]


def decode_json(body: bytes, max_pixels: int) -> Decoded:
    """Base64 images in JSON: one (string or object), a list, or ``{"instances": [...]}``."""
    try:
        doc = json_input.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"invalid JSON ({exc})") from None
    if isinstance(doc, dict) and "instances" in doc:
        doc = doc["instances"]
    if isinstance(doc, list):
        return Decoded(_decode_items(doc, max_pixels), batch=True)
    return Decoded(_decode_items([doc], max_pixels), batch=False)


def decode_jsonlines(body: bytes, max_pixels: int) -> Decoded:
    """One base64 image (string or ``{"b64": ...}``) per line."""
    items = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json_input.loads(line))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"line {number}: invalid JSON ({exc})") from None
    return Decoded(_decode_items(items, max_pixels), batch=True)


Decoder = Callable[[bytes, int], Decoded]
DECODERS: dict[str, Decoder] = {
    ct.X_IMAGE: decode_encoded_image,
    ct.JPEG: decode_encoded_image,
    ct.PNG: decode_encoded_image,
    ct.NPY: decode_npy,
    ct.JSON: decode_json,
    ct.JSONLINES: decode_jsonlines,
}


def top_classes(probabilities: np.ndarray, labels: Sequence[str], k: int) -> dict[str, Any]:
    """The verbose record of one image: all probabilities plus the ``k`` best classes."""
    order = np.argsort(-probabilities, kind="stable")[: min(k, len(probabilities))]
    best = [
        {"index": int(i), "label": labels[i], "probability": float(probabilities[i])} for i in order
    ]
    return {
        "prediction": probabilities.tolist(),
        "predicted_label": best[0]["label"],
        "top_k": best,
    }


def _records(probabilities: np.ndarray, labels: Sequence[str], top_k: int | None) -> list[Any]:
    if top_k is None:
        return [{"prediction": row} for row in probabilities.tolist()]
    return [top_classes(row, labels, top_k) for row in probabilities]


def encode_json(
    probabilities: np.ndarray, labels: Sequence[str], batch: bool, top_k: int | None
) -> bytes:
    """The built-in's JSON: a list of probabilities (one image) or a list of lists (a batch)."""
    rows = probabilities.tolist() if top_k is None else _records(probabilities, labels, top_k)
    return json.dumps(rows if batch else rows[0]).encode()


def encode_jsonlines(
    probabilities: np.ndarray, labels: Sequence[str], batch: bool, top_k: int | None
) -> bytes:
    """One ``{"prediction": [...]}`` JSON line per image."""
    del batch  # every image is a line either way
    lines = (json.dumps(record) for record in _records(probabilities, labels, top_k))
    return ("\n".join(lines) + "\n").encode()


Encoder = Callable[[np.ndarray, Sequence[str], bool, "int | None"], bytes]
ENCODERS: dict[str, Encoder] = {
    ct.JSON: encode_json,
    ct.JSONLINES: encode_jsonlines,
}
