"""Decoders and encoders, directly (no HTTP)."""

from __future__ import annotations

import base64
import io
import json

import cv2
import numpy as np
import pytest

from serve import content_types as ct
from serve.codecs import DECODERS, ENCODERS, decode_json, decode_jsonlines, decode_npy
from serve.errors import BadRequest, PayloadTooLarge

MAX = 10_000_000
PROBS = np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]], dtype=np.float32)
LABELS = ("a", "b", "c")


def encoded(color=(10, 20, 30)) -> bytes:
    return cv2.imencode(".png", np.full((8, 6, 3), color, np.uint8))[1].tobytes()


def test_every_request_and_response_type_has_a_codec() -> None:
    assert set(DECODERS) == set(ct.REQUEST_TYPES)
    assert set(ENCODERS) == set(ct.RESPONSE_TYPES)


def test_png_decodes_to_rgb() -> None:
    decoded = DECODERS[ct.PNG](encoded((10, 20, 30)), MAX)  # OpenCV colours are BGR
    assert not decoded.batch
    assert decoded.images[0][0, 0].tolist() == [30, 20, 10]


def test_npy_grayscale_becomes_three_channels() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.full((5, 7), 9, np.uint8))
    (image,) = decode_npy(buffer.getvalue(), MAX).images
    assert image.shape == (5, 7, 3)


def test_npy_of_a_wrong_shape_is_refused() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((5, 7, 2), np.uint8))
    with pytest.raises(BadRequest, match="shape"):
        decode_npy(buffer.getvalue(), MAX)


def test_npy_batch_over_the_pixel_limit_is_too_large() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 20, 20, 3), np.uint8))
    with pytest.raises(PayloadTooLarge):
        decode_npy(buffer.getvalue(), 100)


def test_json_single_string_is_not_a_batch() -> None:
    decoded = decode_json(json.dumps(base64.b64encode(encoded()).decode()).encode(), MAX)
    assert not decoded.batch and len(decoded.images) == 1


def test_json_empty_list_is_refused() -> None:
    with pytest.raises(BadRequest, match="no images"):
        decode_json(b"[]", MAX)


def test_jsonlines_skips_blank_lines_and_names_bad_lines() -> None:
    good = json.dumps(base64.b64encode(encoded()).decode())
    assert len(decode_jsonlines(f"{good}\n\n{good}\n".encode(), MAX).images) == 2
    with pytest.raises(BadRequest, match="line 2"):
        decode_jsonlines(f"{good}\n{{oops\n".encode(), MAX)


def test_json_encoder_matches_the_builtin_format() -> None:
    assert json.loads(ENCODERS[ct.JSON](PROBS[:1], LABELS, False, None)) == pytest.approx(
        PROBS[0].tolist()
    )
    assert np.allclose(json.loads(ENCODERS[ct.JSON](PROBS, LABELS, True, None)), PROBS)


def test_verbose_json_batch_is_a_list_of_records() -> None:
    records = json.loads(ENCODERS[ct.JSON](PROBS, LABELS, True, 2))
    assert [r["predicted_label"] for r in records] == ["b", "a"]
    assert [c["label"] for c in records[1]["top_k"]] == ["a", "b"]  # ties keep class order


def test_top_k_larger_than_the_classes_lists_them_all() -> None:
    record = json.loads(ENCODERS[ct.JSON](PROBS[:1], LABELS, False, 10))
    assert len(record["top_k"]) == 3


def test_jsonlines_encoder_writes_one_line_per_image() -> None:
    lines = ENCODERS[ct.JSONLINES](PROBS, LABELS, True, None).decode().splitlines()
    assert np.allclose([json.loads(line)["prediction"] for line in lines], PROBS)
