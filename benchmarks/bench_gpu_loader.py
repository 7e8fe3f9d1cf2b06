"""On a GPU machine: the PyTorch engine's GPU input path against its CPU path.

Usage: ``python3 benchmarks/bench_gpu_loader.py OUT_DIR`` (torch with CUDA, torchvision,
OpenCV; no MXNet). Packs synthetic JPEG training sets (128 px for 112 px crops, 256 px for 224
px crops), then

- compares the GPU path's batches with the CPU path's for the same draws (nvJPEG vs libjpeg,
  torch vs OpenCV interpolation): max / mean absolute difference, share of values off by > 1;
- times both (images/s): the CPU path with one thread per core, the GPU path with batch 256.

Writes ``gpu_loader.json`` to OUT_DIR and prints it.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.modules["mxnet"] = None  # type: ignore[assignment] - the engine never has it

from tests.datagen import make_image  # noqa: E402
from train.engines.torch import augment, data, gpu  # noqa: E402
from train.inputs import recordio  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"  # without a GPU: a quick smoke run of the same code
SETS = {112: (128, 2048), 224: (256, 1024)} if CUDA else {112: (128, 128), 224: (256, 64)}
BATCH = 256 if CUDA else 32


def sync() -> None:
    if CUDA:
        sync()


def make(directory: Path, crop: int) -> Path:
    side, count = SETS[crop]
    rec = directory / f"train{crop}.rec"

    def encode(i: int) -> bytes:
        image = make_image(i % 8, random.Random(i), (side + 16 * (i % 3), side))[:, :, ::-1]
        return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()

    with (
        ThreadPoolExecutor(os.cpu_count()) as pool,
        recordio.IndexedWriter(rec.with_suffix(".idx"), rec) as writer,
    ):
        for i, encoded in enumerate(pool.map(encode, range(count))):
            writer.write(i, recordio.pack_labels(i, [float(i % 8)], encoded))
    return rec


def loader(rec: Path, crop: int, aug: str | None, **kw) -> data.RecordLoader:
    settings = augment.AugmentSettings.for_training(aug, (3, crop, crop), None)
    return data.RecordLoader(
        rec, rec.with_suffix(".idx"), settings, batch_size=BATCH, training=True, seed=3, **kw
    )


def rate(source, epochs: int) -> float:
    next(iter(source.epoch(0)))  # warm up: workers, CUDA context, nvJPEG
    sync()
    start, seen = time.perf_counter(), 0
    for e in range(1, epochs + 1):
        for batch in source.epoch(e):
            seen += batch.data.shape[0]
    sync()
    return round(seen / (time.perf_counter() - start), 1)


def main(out_dir: str) -> None:
    cores = os.cpu_count() or 1
    results: dict = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if CUDA else "cpu",
        "cores": cores,
        "compare": [],
        "rates": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        recs = {crop: make(Path(tmp), crop) for crop in SETS}
        for aug in (None, "crop", "crop_color_transform"):
            cpu_loader = loader(recs[224], 224, aug, workers=cores)
            on_gpu = gpu.GpuBatches(loader(recs[224], 224, aug, workers=8), DEVICE)
            cpu = torch.cat([b.data for b in cpu_loader.epoch(0)][:2]).int()
            got = torch.cat([b.data.cpu() for b in on_gpu.epoch(0)][:2]).int()
            diff = (cpu - got).abs()
            results["compare"].append(
                dict(
                    aug=aug,
                    max=int(diff.max()),
                    mean=round(float(diff.float().mean()), 4),
                    over1=round(float((diff > 1).float().mean()), 5),
                )
            )
            print(json.dumps(results["compare"][-1]), flush=True)
        for crop, rec in recs.items():
            for aug in ("crop", "crop_color_transform"):
                for path, source in (
                    ("cpu-threads", loader(rec, crop, aug, workers=cores)),
                    ("cpu-processes", loader(rec, crop, aug, workers=cores, processes=True)),
                    ("gpu", gpu.GpuBatches(loader(rec, crop, aug, workers=8), DEVICE)),
                ):
                    row = dict(crop=crop, aug=aug, path=path, images_per_sec=rate(source, 2))
                    results["rates"].append(row)
                    print(json.dumps(row), flush=True)
    Path(out_dir, "gpu_loader.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
