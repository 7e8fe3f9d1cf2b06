"""Shared fixtures: image files of every awkward kind, an in-process training job runner, and
built-in-style models trained independently of the product (``tests.builtin_models``)."""

from __future__ import annotations

import io
import logging
import signal
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

BOMB_SIDE = 30_000


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_bomb(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit grayscale PNG of ``side`` x ``side`` pixels: about 110 kB on disk, 900
    megapixels (2.7 GB as RGB) once decoded. The zero rows are compressed in a stream."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row * 1000) for _ in range(side // 1000))
    data += compressor.compress(row * (side % 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def _pil_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _photo(width: int = 48, height: int = 40) -> np.ndarray:
    """A smooth RGB uint8 test picture (gradients compress and re-encode predictably)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack(
        [xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), np.full_like(xx, 90)],
        axis=-1,
    ).astype(np.uint8)


@pytest.fixture(scope="session")
def unusual_images() -> dict[str, bytes]:
    """Unusual but valid images, 48x40, that must be converted to 8-bit RGB (not refused)."""
    rgb = _photo()
    pil = Image.fromarray(rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:, :24, 3] = 0  # left half fully transparent
    gray16 = (rgb[:, :, 0].astype(np.uint16) * 257).astype(np.uint16)
    ok16, png16 = cv2.imencode(".png", gray16)
    assert ok16
    return {
        "grayscale.png": _pil_bytes(pil.convert("L"), "PNG"),
        "grayscale.jpg": _pil_bytes(pil.convert("L"), "JPEG", quality=95),
        "cmyk.jpg": _pil_bytes(pil.convert("CMYK"), "JPEG", quality=95),
        "gray16.png": png16.tobytes(),
        "rgba.png": _pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"),
        "palette.png": _pil_bytes(pil.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
    }


@pytest.fixture(scope="session")
def broken_images() -> dict[str, bytes]:
    """Files that are not usable images, each of a different kind."""
    noisy = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    jpeg = _pil_bytes(Image.fromarray(noisy), "JPEG", quality=95)
    png = _pil_bytes(Image.fromarray(noisy), "PNG")
    return {  # cut in the middle of the pixel data, as an interrupted upload is
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) * 2 // 3],
        "truncated.png": png[: len(png) * 2 // 3],
        "not_an_image.jpg": b"<html><body>404 Not Found</body></html>\n" * 20,
    }


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    """A 30000x30000 PNG (see :func:`png_bomb`)."""
    return png_bomb()


@dataclass(frozen=True)
class JobResult:
    """What ``train.main.run()`` left behind: exit code, output/failure text, log text."""

    code: int
    failure: str | None
    log: str
    base: Path


@pytest.fixture
def run_job(monkeypatch, caplog) -> Iterator[Callable[[Path], JobResult]]:
    """Run ``train.main.run([])`` in-process on the SageMaker tree at ``base``.

    The job's own logging set-up (``basicConfig(force=True)``) would remove pytest's capture
    handler, so it is replaced by ``caplog`` at INFO; the SIGTERM handler and Pillow's pixel cap
    (which the job lifts) are restored after.
    """
    from train import main

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)

    monkeypatch.delenv("IC_SCRATCH_DIR", raising=False)
    monkeypatch.delenv("TRAINING_JOB_NAME", raising=False)
    monkeypatch.setattr(main, "configure_logging", lambda: None)
    caplog.set_level(logging.INFO)
    previous = signal.getsignal(signal.SIGTERM)

    def run(base: Path) -> JobResult:
        monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
        caplog.clear()
        code = main.run([])
        failure = base / "output" / "failure"
        return JobResult(
            code, failure.read_text() if failure.is_file() else None, caplog.text, base
        )

    yield run
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def interop_data(tmp_path_factory):
    """The generated square-PNG data set the built-in-style models learn (300 validation)."""
    from tests.builtin_models import make_dataset

    return make_dataset(tmp_path_factory.mktemp("interop") / "data")


@pytest.fixture(scope="session")
def builtin_model(tmp_path_factory, interop_data):
    """``builtin_model(variant)``: that variant (``tests.builtin_models.SMALL``, ``IMAGENET``,
    ...) trained on ``interop_data``, once per session whoever asks."""
    from tests.builtin_models import train_builtin_model

    trained = {}

    def get(variant):
        if variant.name not in trained:
            folder = tmp_path_factory.mktemp(f"builtin_{variant.name}")
            trained[variant.name] = train_builtin_model(variant, interop_data, folder)
        return trained[variant.name]

    return get
