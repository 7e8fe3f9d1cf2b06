"""Generated, learnable image data sets for the tests and benchmarks (no downloads).

Each class is a distinct colour and a distinct stripe orientation, with noise, random size and
aspect ratio, so that a small ResNet learns it in a few epochs on the CPU.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PALETTE = [
    (220, 40, 40),
    (40, 200, 60),
    (50, 80, 230),
    (230, 200, 40),
    (200, 60, 210),
    (40, 210, 210),
    (250, 140, 30),
    (120, 120, 120),
]


def make_image(label: int, rng: random.Random, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """An RGB uint8 image of class ``label``: a tinted background with class-specific stripes."""
    width, height = size
    np_rng = np.random.default_rng(rng.randrange(2**32))
    base = np.array(PALETTE[label % len(PALETTE)], dtype=np.float32)
    img = np.empty((height, width, 3), dtype=np.float32)
    img[:] = base * rng.uniform(0.7, 1.0)
    period = 6 + 2 * (label % 4)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = ((xx if label % 2 else yy) // (period // 2)) % 2 == 0
    img[stripes] *= 0.45
    img += np_rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_jpeg(path: Path, image_rgb: np.ndarray, quality: int = 90) -> None:
    """Write an RGB image as JPEG (creating folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(
        str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )


@dataclass(frozen=True)
class Item:
    """One generated image: its .lst index, label and path relative to the channel root."""

    index: int
    label: int
    relpath: str


def make_class_folders(
    root: Path,
    num_classes: int,
    per_class: int,
    *,
    seed: int = 0,
    size_range: tuple[int, int] = (40, 72),
) -> list[Item]:
    """Write ``root/class_<k>/img_<i>.jpg`` images and return them as items."""
    rng = random.Random(seed)
    items = []
    index = 0
    for label in range(num_classes):
        for i in range(per_class):
            size = (rng.randint(*size_range), rng.randint(*size_range))
            rel = f"class_{label}/img_{i:04d}.jpg"
            write_jpeg(root / rel, make_image(label, rng, size))
            items.append(Item(index, label, rel))
            index += 1
    return items


def write_lst(path: Path, items: list[Item], *, float_labels: bool = False) -> None:
    """Write an im2rec ``.lst`` file: ``index<TAB>label<TAB>relpath``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "{:f}" if float_labels else "{}"
    lines = [f"{it.index}\t{fmt.format(it.label)}\t{it.relpath}" for it in items]
    path.write_text("\n".join(lines) + "\n")


def make_sagemaker_tree(
    base: Path,
    *,
    num_classes: int = 3,
    train_per_class: int = 32,
    val_per_class: int = 8,
    hyperparameters: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """A SageMaker ``/opt/ml`` tree with the four channels of the built-in's .lst format.

    Returns ``base``. ``hyperparameters`` are written as strings to hyperparameters.json.
    """
    import json

    data = base / "input" / "data"
    train_items = make_class_folders(data / "train", num_classes, train_per_class, seed=seed)
    val_items = make_class_folders(data / "validation", num_classes, val_per_class, seed=seed + 1)
    write_lst(data / "train_lst" / "train.lst", train_items)
    write_lst(data / "validation_lst" / "validation.lst", val_items, float_labels=True)
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    hps = {"num_classes": str(num_classes), "num_training_samples": str(len(train_items))}
    hps.update(hyperparameters or {})
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    channels = {
        name: {"ContentType": "application/x-image", "TrainingInputMode": "File"}
        for name in ("train", "validation", "train_lst", "validation_lst")
    }
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    return base
