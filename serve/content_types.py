"""The media types the server reads and writes, as constants (no string literals elsewhere)."""

from __future__ import annotations

X_IMAGE = "application/x-image"
JPEG = "image/jpeg"
PNG = "image/png"
NPY = "application/x-npy"
JSON = "application/json"
JSONLINES = "application/jsonlines"
ANY = "*/*"

# One encoded image per request: the built-in algorithm's request types.
SINGLE_IMAGE_TYPES = (X_IMAGE, JPEG, PNG)
# Types that may carry several images (batch transform, clients sending many at once).
BATCH_TYPES = (NPY, JSON, JSONLINES)
REQUEST_TYPES = SINGLE_IMAGE_TYPES + BATCH_TYPES
RESPONSE_TYPES = (JSON, JSONLINES)
