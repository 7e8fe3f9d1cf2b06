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


def hls_jitter(rgb: torch.Tensor, dh: int, ds: int, dl: int) -> torch.Tensor:
    """:func:`augment.hls_jitter` in float32 tensor arithmetic (OpenCV's 8-bit formulas) for a
    (3, H, W) uint8 RGB image."""
    r, g, b = (rgb.float() * (1.0 / 255.0)).unbind(0)
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
    table = torch.stack([p2, p1, p1 + (p2 - p1) * (1 - frac), p1 + (p2 - p1) * frac])
    picks = SECTORS.to(rgb.device)[sector]  # (H, W, 3): B, G, R
    bgr = torch.gather(table, 0, picks.permute(2, 0, 1))
    bgr = torch.where((s8 == 0)[None], light[None].expand(3, -1, -1), bgr)
    return _round(bgr.flip(0) * 255).to(torch.uint8)


def warp(image: torch.Tensor, draws: augment.Draws) -> torch.Tensor:
    """:func:`augment.warp` with ``grid_sample``: the same matrix, white outside."""
    _, height, width = image.shape
    m = torch.from_numpy(
        augment.affine_matrix(width, height, draws.angle, draws.shear, draws.ratio)
    )
    inverse = torch.linalg.inv(torch.cat([m.double(), torch.tensor([[0.0, 0, 1]]).double()]))
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], -1).double() @ inverse[:2].T
    points = torch.round(points * WARP_STEPS) / WARP_STEPS  # OpenCV's 1/32-pixel positions
    size = torch.tensor([width, height], dtype=torch.float64)
    grid = (2 * points + 1) / size - 1
    shifted = image.float()[None] - augment.FILL_VALUE  # zero padding becomes the fill value
    out = F.grid_sample(shifted, grid[None].float().to(image.device), align_corners=False)
    return _round(out[0] + augment.FILL_VALUE).to(torch.uint8)


def transform(
    image: torch.Tensor, settings: augment.AugmentSettings, draws: augment.Draws
) -> torch.Tensor:
    """(C, H, W) uint8 RGB -> the augmented (C, h, w) uint8, :func:`augment.augment`'s steps."""
    channels, out_h, out_w = settings.image_shape
    if settings.resize:
        size = augment.resized_shape(image.shape[1], image.shape[2], settings.resize)
        image = _round(F.interpolate(image.float()[None], size=size, mode="bilinear")[0]).to(
            torch.uint8
        )
    if settings.affine:
        image = warp(image, draws)
    top, left = augment.crop_offsets(image.shape[1], image.shape[2], out_h, out_w, draws)
    image = image[:, top : top + out_h, left : left + out_w]
    if settings.color and channels == 3:
        image = hls_jitter(image, draws.dh, draws.ds, draws.dl)
    return image.flip(2) if draws.mirror else image


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
                data = torch.stack(
                    [transform(i, settings, d) for i, d in zip(images, draws, strict=True)]
                )
                label = torch.from_numpy(labels).to(self.device, non_blocking=True)
                yield Batch(data, label[:, 0] if labels.shape[1] == 1 else label, 0)
