"""Safe decoding: unusual images become 8-bit RGB, broken ones and bombs are refused."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import BOMB_SIDE, png_bomb
from train import images
from train.images import BadImage, ImageTooLarge, decode_image

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name", ["grayscale.png", "grayscale.jpg", "cmyk.jpg", "gray16.png", "rgba.png", "palette.png"]
)
def test_unusual_images_decode_to_rgb8(unusual_images, name):
    out = decode_image(unusual_images[name])
    assert out.shape == (40, 48, 3)
    assert out.dtype == np.uint8
    assert out.std() > 10  # the picture survived, not a blank array


def test_grayscale_becomes_three_equal_channels(unusual_images):
    out = decode_image(unusual_images["grayscale.png"])
    assert np.array_equal(out[:, :, 0], out[:, :, 1])
    assert np.array_equal(out[:, :, 1], out[:, :, 2])


def test_cmyk_jpeg_keeps_its_colours():
    pixel = (200, 30, 60)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), pixel).convert("CMYK").save(buffer, "JPEG", quality=100)
    out = decode_image(buffer.getvalue())
    assert np.abs(out[8, 8].astype(int) - pixel).max() <= 6


def test_16_bit_png_keeps_the_high_byte():
    gray16 = np.full((6, 6), 0xABCD, np.uint16)
    rgb16 = np.zeros((6, 6, 3), np.uint16)
    rgb16[..., 2] = 0xFF00  # OpenCV is BGR: this is red
    for array, expected in [(gray16, (0xAB, 0xAB, 0xAB)), (rgb16, (0xFF, 0, 0))]:
        ok, png = cv2.imencode(".png", array)
        assert ok
        assert tuple(decode_image(png.tobytes())[0, 0]) == expected


def test_alpha_is_composited_on_white(unusual_images):
    out = decode_image(unusual_images["rgba.png"])
    assert (out[:, :24] == 255).all()  # transparent half
    assert not (out[:, 24:] == 255).all()  # opaque half keeps its pixels
    half = np.zeros((2, 2, 4), np.uint8)
    half[..., 2] = 255  # red in BGRA
    half[..., 3] = 128
    ok, png = cv2.imencode(".png", half)
    assert ok
    assert tuple(decode_image(png.tobytes())[0, 0]) == (255, 127, 127)


def test_palette_png_is_expanded():
    image = Image.new("P", (8, 8))
    image.putpalette([10, 20, 30] * 256)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    assert tuple(decode_image(buffer.getvalue())[3, 3]) == (10, 20, 30)


def test_rgb_channel_order_is_rgb_not_bgr():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buffer, "PNG")
    assert tuple(decode_image(buffer.getvalue())[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("empty.jpg", "empty file"),
        ("truncated.jpg", "truncated JPEG"),
        ("truncated.png", "truncated PNG"),
        ("not_an_image.jpg", "not a recognised image format"),
    ],
)
def test_broken_files_are_refused_with_a_reason(broken_images, name, fragment):
    with pytest.raises(BadImage, match=fragment):
        decode_image(broken_images[name])


def test_image_bomb_is_refused_from_its_header_before_decoding(bomb_png, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("the decoder must not run on an image bomb")

    monkeypatch.setattr(images.cv2, "imdecode", no_decoding)
    monkeypatch.setattr(images, "_decode_with_pillow", no_decoding)
    with pytest.raises(ImageTooLarge, match="too large"):
        decode_image(bomb_png)
    assert len(bomb_png) < 200_000


def test_the_callers_limit_applies_above_pillows_own_cap(monkeypatch):
    """Pillow refuses over 179 MP by default; entry points lift that cap so that
    max_image_pixels / SERVE_MAX_IMAGE_PIXELS decides (header only: nothing is decoded)."""
    header = png_bomb(side=15_000)[:64]  # 225 megapixels
    # Pillow's default cap (179 MP refused): set here, since a job run earlier in this process
    # may have lifted it, as every entry point does.
    monkeypatch.setattr(images.Image, "MAX_IMAGE_PIXELS", 178956970 // 2)
    with pytest.raises(ImageTooLarge):  # without the entry point's set-up, Pillow's cap
        images.image_size(header)
    images.lift_pillow_limit()
    assert images.image_size(header) == (15_000, 15_000)
    with pytest.raises(ImageTooLarge, match="over the limit of 200 megapixels"):
        decode_image(header, max_pixels=200_000_000)


_OPENCV_CAP_CHECK = """
import sys
import cv2
import numpy as np
from train.images import decode_image
png = cv2.imencode(".png", np.full((40, 50, 3), 7, np.uint8))[1]
try:
    cv2.imdecode(png, cv2.IMREAD_UNCHANGED)
    print("opencv decoded")
except cv2.error:
    print("opencv refused")
image = decode_image(png.tobytes(), max_pixels=10**8)  # over OpenCV's cap: Pillow decodes
print(image.shape, int(image.max()))
"""


@pytest.mark.parametrize("limit, opencv", [(1999, "refused"), (2000, "decoded")])
def test_opencv_takes_its_cap_from_the_environment_the_server_gives_its_workers(limit, opencv):
    from serve.settings import Settings
    from serve.supervisor import child_environment

    settings = Settings.from_env({"SERVE_MAX_IMAGE_PIXELS": str(limit)})
    env = child_environment(settings, {**os.environ, "PYTHONPATH": str(REPO)})
    assert env["OPENCV_IO_MAX_IMAGE_PIXELS"] == str(limit)
    result = subprocess.run(
        [sys.executable, "-c", _OPENCV_CAP_CHECK], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == [f"opencv {opencv}", "(40, 50, 3) 7"]


def test_bomb_header_is_what_it_claims(bomb_png):
    assert bomb_png.startswith(b"\x89PNG")
    assert int.from_bytes(bomb_png[16:20], "big") == BOMB_SIDE


def test_max_pixels_limit_names_the_size(unusual_images):
    with pytest.raises(ImageTooLarge, match=r"48x40"):
        decode_image(unusual_images["grayscale.png"], max_pixels=48 * 40 - 1)
    assert decode_image(unusual_images["grayscale.png"], max_pixels=48 * 40).shape == (40, 48, 3)


def test_image_too_large_is_a_bad_image():
    assert issubclass(ImageTooLarge, BadImage)


def test_image_size_reads_the_header_only():
    header = png_bomb(side=2000)[:64]  # IHDR only: no pixel data at all
    assert images.image_size(header + b"garbage") == (2000, 2000)


def test_encode_png_is_lossless_and_encode_jpeg_is_close():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(images.encode_png(rgb)), rgb)
    smooth = np.full((16, 16, 3), (30, 140, 220), np.uint8)
    assert np.abs(decode_image(images.encode_jpeg(smooth)).astype(int) - smooth).max() <= 3


def _jpegs() -> dict[str, bytes]:
    rgb = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    pil = Image.fromarray(rgb)

    def save(image, **kwargs) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **kwargs)
        return buffer.getvalue()

    baseline = save(pil, quality=90)
    thumbnail = save(pil.resize((16, 12)))  # ends in its own end-of-image marker
    exif = b"Exif\0\0" + thumbnail
    app1 = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    _, restart = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])
    return {
        "baseline": baseline,
        "progressive": save(pil, quality=90, progressive=True),
        "grayscale": save(pil.convert("L")),
        "cmyk": save(pil.convert("CMYK")),
        "restart-markers": restart.tobytes(),
        "exif-thumbnail": baseline[:2] + app1 + baseline[2:],
    }


JPEGS = _jpegs()


@pytest.mark.parametrize("name", list(JPEGS))
def test_jpeg_with_data_after_its_end_marker_is_not_truncated(name):
    """Phone "Motion Photos" append a video after a complete JPEG: a valid photo."""
    motion_photo = JPEGS[name] + b"\x00\x00\x00\x18ftypmp42" + bytes(8000)
    assert decode_image(motion_photo).shape == (60, 80, 3)
    assert images._jpeg_end(motion_photo) == len(JPEGS[name])


@pytest.mark.parametrize("name", list(JPEGS))
def test_cut_jpeg_is_truncated_even_when_padded(name):
    cut = JPEGS[name][: len(JPEGS[name]) * 2 // 3]
    for data in (cut, cut + bytes(2000)):  # an interrupted copy, a preallocated download
        with pytest.raises(BadImage, match="truncated JPEG"):
            decode_image(data)
