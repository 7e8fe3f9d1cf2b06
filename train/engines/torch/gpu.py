"""Training batches decoded and augmented on the GPU: the CPU only reads records.

A ResNet-50 step on an H100/H200 needs thousands of images a second, more than a few OpenCV
workers decode. Here worker threads only read each batch's records and draw its random numbers
(:class:`~train.engines.torch.data.BatchMaker`'s draws, so both paths draw the same); the JPEG
payloads of a batch go to ``torchvision.io.decode_jpeg`` in one call (nvJPEG on CUDA), other
formats (PNG, ...) are decoded with OpenCV on the CPU, and resize, affine, crop, HLS jitter and
mirror run as tensor operations on ``device``. The steps and numbers are
:mod:`.augment`'s; the interpolations are torch's (bilinear, like OpenCV's INTER_LINEAR but
rounded differently: pixels may differ by a few levels, and nvJPEG's IDCT from libjpeg's by
about one). Validation stays on the CPU path, which is MXNet's pixel for pixel.

Everything here also runs with ``device="cpu"``, which is how the tests check it without a GPU.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from train.engines.torch import augment
from train.engines.torch.data import Batch, RecordLoader, labels_of
from train.engines.torch.plan import Slot
from train.inputs import recordio

JPEG = b"\xff\xd8\xff"
WARP_STEPS = 32  # OpenCV's warpAffine rounds source positions to 1/32 pixel (INTER_BITS 5)
# OpenCV's HLS2BGR: which of (p2, p1, falling, rising) each of B, G, R takes, per 60-degree sector
SECTORS = torch.tensor([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])


def _round(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x).clamp_(0, 255)


def hls_jitter(rgb: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """:func:`augment.hls_jitter` in float32 tensor arithmetic (OpenCV's 8-bit formulas) for
    (..., 3, H, W) uint8 RGB images and (..., 3) integer (dh, ds, dl) offsets, one per image."""
    dh, ds, dl = (v[..., None, None] for v in offsets.to(rgb.device).float().unbind(-1))
    r, g, b = (rgb.float() * (1.0 / 255.0)).unbind(-3)
    vmax, vmin = torch.maximum(torch.maximum(r, g), b), torch.minimum(torch.minimum(r, g), b)
    diff, total = vmax - vmin, vmax + vmin
    light = total / 2
    grey = diff <= torch.finfo(torch.float32).eps
    step = 60 / torch.where(grey, torch.ones_like(diff), diff)
    sat = torch.where(light < 0.5, diff / total, diff / ((2 - vmax) - vmin))
    hue = torch.where(
        vmax == r,
        (g - b) * step,
        torch.where(vmax == g, (b - r) * step + 120, (r - g) * step + 240),
    )
    hue = torch.where(hue < 0, hue + 360, hue)
    hue, sat = torch.where(grey, 0, hue), torch.where(grey, 0, sat)
    h8 = (_round(hue * 0.5) + dh).clamp_(0, 180)
    l8 = (_round(light * 255) + dl).clamp_(0, 255)
    s8 = (_round(sat * 255) + ds).clamp_(0, 255)
    hue, light, sat = h8 * (6.0 / 180.0), l8 * (1.0 / 255.0), s8 * (1.0 / 255.0)
    p2 = torch.where(light <= 0.5, light * (1 + sat), light + sat - light * sat)
    p1 = 2 * light - p2
    hue = torch.where(hue >= 6, hue - 6, hue)
    sector = hue.floor().long().clamp_(0, 5)
    frac = hue - sector
    table = torch.stack([p2, p1, p1 + (p2 - p1) * (1 - frac), p1 + (p2 - p1) * frac], -3)
    picks = SECTORS.to(rgb.device)[sector].movedim(-1, -3)  # (..., 3, H, W): B, G, R
    bgr = torch.gather(table, -3, picks)
    bgr = torch.where((s8 == 0).unsqueeze(-3), light.unsqueeze(-3), bgr)
    return _round(bgr.flip(-3) * 255).to(torch.uint8)


def warp(image: torch.Tensor, draws: augment.Draws) -> torch.Tensor:
    """:func:`augment.warp` with ``grid_sample``: the same matrix, white outside."""
    _, height, width = image.shape
    m = augment.affine_matrix(width, height, draws.angle, draws.shear, draws.ratio)
    inverse = np.linalg.inv(np.vstack([m.astype(np.float64), [0, 0, 1]]))[:2]
    device, f64 = image.device, torch.float64
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=f64),
        torch.arange(width, device=device, dtype=f64),
        indexing="ij",
    )
    points = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ torch.from_numpy(inverse.T).to(device)
    points = torch.round(points * WARP_STEPS) / WARP_STEPS  # OpenCV's 1/32-pixel positions
    grid = (2 * points + 1) / torch.tensor([width, height], dtype=f64, device=device) - 1
    shifted = image.float()[None] - augment.FILL_VALUE  # zero padding becomes the fill value
    out = F.grid_sample(shifted, grid[None].float(), align_corners=False)
    return _round(out[0] + augment.FILL_VALUE).to(torch.uint8)


def crop(image: torch.Tensor, settings: augment.AugmentSettings, draws: augment.Draws):
    """(C, H, W) uint8 -> (C, h, w): :func:`augment.augment`'s resize, affine and crop."""
    _, out_h, out_w = settings.image_shape
    if settings.resize:
        size = augment.resized_shape(image.shape[1], image.shape[2], settings.resize)
        resized = F.interpolate(image.float()[None], size=size, mode="bilinear")[0]
        image = _round(resized).to(torch.uint8)
    if settings.affine:
        image = warp(image, draws)
    top, left = augment.crop_offsets(image.shape[1], image.shape[2], out_h, out_w, draws)
    return image[:, top : top + out_h, left : left + out_w]


def transform(
    images: list[torch.Tensor], settings: augment.AugmentSettings, draws: list[augment.Draws]
) -> torch.Tensor:
    """Decoded (C, H, W) uint8 RGB images -> the (B, C, h, w) batch: geometry per image (sizes
    differ), then colour and mirror on the whole batch."""
    batch = torch.stack([crop(i, settings, d) for i, d in zip(images, draws, strict=True)])
    if settings.color and settings.image_shape[0] == 3:
        offsets = torch.tensor([[d.dh, d.ds, d.dl] for d in draws])
        batch = hls_jitter(batch, offsets)
    mirror = torch.tensor([d.mirror for d in draws], device=batch.device)
    return torch.where(mirror[:, None, None, None], batch.flip(-1), batch)


def decode(payloads: list[bytes], channels: int, device: torch.device) -> list[torch.Tensor]:
    """(C, H, W) uint8 RGB (or gray) images on ``device``: JPEGs in one batched decode, the
    rest with OpenCV, as :func:`augment.decode` reads them."""
    from torchvision.io import ImageReadMode, decode_jpeg

    out: list[torch.Tensor | None] = [None] * len(payloads)
    jpegs = [k for k, p in enumerate(payloads) if p.startswith(JPEG)]
    if jpegs:
        mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
        data = [torch.frombuffer(bytearray(payloads[k]), dtype=torch.uint8) for k in jpegs]
        for k, image in zip(jpegs, decode_jpeg(data, mode=mode, device=device), strict=True):
            out[k] = image
    for k, payload in enumerate(payloads):
        if out[k] is None:
            image = augment.decode(payload, channels)
            image = image[:, :, ::-1] if channels == 3 else image
            out[k] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(device)
    return out  # type: ignore[return-value]


class GpuBatches:
    """A training :class:`RecordLoader`'s epochs, decoded and augmented on ``device``."""

    def __init__(self, loader: RecordLoader, device: str | torch.device = "cuda"):
        self.loader, self.device = loader, torch.device(device)

    def steps(self, epoch: int) -> int:
        return self.loader.steps(epoch)

    def _read(self, slots: list[Slot]) -> tuple[list[bytes], np.ndarray, list[augment.Draws]]:
        maker, payloads = self.loader.maker, []
        labels = np.zeros((len(slots), maker.label_width), np.float32)
        for k, slot in enumerate(slots):
            header, payload = recordio.unpack(maker.records.read(slot.record))
            labels[k] = labels_of(header, maker.label_width)
            payloads.append(payload)
        return payloads, labels, maker.draws(slots)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        settings = self.loader.maker.settings
        with ThreadPoolExecutor(self.loader.workers, thread_name_prefix="read") as pool:
            pending: deque = deque()
            batches = self.loader.plan.batches(epoch)
            while True:
                while len(pending) < self.loader.workers + self.loader.prefetch:
                    if (slots := next(batches, None)) is None:
                        break
                    pending.append(pool.submit(self._read, slots))
                if not pending:
                    return
                payloads, labels, draws = pending.popleft().result()
                images = decode(payloads, settings.image_shape[0], self.device)
                data = transform(images, settings, draws)
                label = torch.from_numpy(labels).to(self.device, non_blocking=True)
                yield Batch(data, label[:, 0] if labels.shape[1] == 1 else label, 0)
