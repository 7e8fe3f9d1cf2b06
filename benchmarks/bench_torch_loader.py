"""Loader throughput: MXNet's ``ImageRecordIter`` vs the PyTorch engine's loader on one file.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_torch_loader.py --torch-python .venv-torch/bin/python

For each size (112 px crops of 128 px JPEGs, 224 px crops of 256 px JPEGs) it packs a
training set once, then times a few epochs of ``augmentation_type=crop`` (random crop and
mirror) and of ``crop_color_transform`` with the same number of decoding threads: MXNet's
iterator in this venv, the torch loader (threads and worker processes) in ``--torch-python``.
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZES = {112: (128, 512), 224: (256, 256)}  # crop: (stored shorter side, images)
AUGMENTATIONS = ("crop", "crop_color_transform")


def make(directory: Path, crop: int) -> Path:
    from tests.datagen import make_image
    from train.inputs import recordio

    side, count = SIZES[crop]
    rec = directory / f"train{crop}.rec"
    rng = __import__("random").Random(crop)
    with recordio.IndexedWriter(rec.with_suffix(".idx"), rec) as writer:
        for i in range(count):
            image = make_image(i % 8, rng, (side + 16 * (i % 3), side))[:, :, ::-1]
            encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            writer.write(i, recordio.pack_labels(i, [float(i % 8)], encoded))
    return rec


def _time(epochs) -> float:
    """Images per second over ``epochs``, an iterable of per-epoch batch sizes."""
    start, seen = time.perf_counter(), 0
    for batches in epochs:
        seen += sum(batches)
    return seen / (time.perf_counter() - start)


def bench_mxnet(rec: Path, crop: int, augmentation: str, threads: int, epochs: int) -> float:
    import mxnet as mx

    from train import presets

    it = mx.io.ImageRecordIter(
        path_imgrec=str(rec),
        path_imgidx=str(rec.with_suffix(".idx")),
        data_shape=(3, crop, crop),
        batch_size=32,
        preprocess_threads=threads,
        prefetch_buffer=4,
        shuffle=True,
        round_batch=True,
        **presets.train_augmentation(augmentation),
    )
    next(iter(it))  # warm up

    def run():
        for _ in range(epochs):
            it.reset()
            yield (b.data[0].shape[0] for b in it)

    return _time(run())


def bench_torch(rec: Path, crop: int, augmentation: str, threads: int, epochs: int, kind: str):
    from train.engines.torch import augment, data

    settings = augment.AugmentSettings.for_training(augmentation, (3, crop, crop), None)
    loader = data.RecordLoader(
        rec,
        rec.with_suffix(".idx"),
        settings,
        batch_size=32,
        training=True,
        workers=threads,
        processes=kind == "processes",
    )
    next(iter(loader.epoch(0)))  # warm up (starts worker processes)

    def run():
        for e in range(epochs):
            yield (b.data.shape[0] for b in loader.epoch(e + 1))

    return _time(run())


def _torch_round(args, rec: Path) -> list[dict]:
    cmd = [args.torch_python, __file__, "--side", "torch", "--rec", str(rec)]
    cmd += ["--threads", str(args.threads), "--epochs", str(args.epochs)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch-python", default=str(ROOT / ".venv-torch/bin/python"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", choices=["mxnet", "torch"], default="mxnet")
    parser.add_argument("--rec")
    args = parser.parse_args()
    if args.side == "torch":
        rec, crop = Path(args.rec), int(Path(args.rec).stem.removeprefix("train"))
        for augmentation in AUGMENTATIONS:
            for kind in ("threads", "processes"):
                rate = bench_torch(rec, crop, augmentation, args.threads, args.epochs, kind)
                row = dict(loader=f"torch-{kind}", crop=crop, aug=augmentation, rate=rate)
                print(json.dumps(row))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for crop in SIZES:
            rec = make(Path(tmp), crop)
            for _ in range(args.rounds):  # back to back, in rounds: the machine is shared
                for augmentation in AUGMENTATIONS:
                    rate = bench_mxnet(rec, crop, augmentation, args.threads, args.epochs)
                    rows.append(dict(loader="mxnet", crop=crop, aug=augmentation, rate=rate))
                rows += _torch_round(args, rec)
    for crop in SIZES:
        for augmentation in AUGMENTATIONS:
            median = {
                loader: float(
                    np.median(
                        [
                            r["rate"]
                            for r in rows
                            if r["loader"] == loader
                            and r["crop"] == crop
                            and r["aug"] == augmentation
                        ]
                    )
                )
                for loader in ("mxnet", "torch-threads", "torch-processes")
            }
            ratio = {k: round(v / median["mxnet"], 2) for k, v in median.items()}
            print(
                json.dumps(
                    dict(
                        crop=crop,
                        aug=augmentation,
                        threads=args.threads,
                        images_per_sec={k: round(v) for k, v in median.items()},
                        vs_mxnet=ratio,
                    )
                )
            )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
