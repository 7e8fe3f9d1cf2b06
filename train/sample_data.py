"""A small generated sample data set, so that the very first ``docker compose up`` has data.

``python -m train.sample_data DIR`` (in the image: ``docker run IMAGE sample-data DIR``) writes
``DIR/train/<class>/*.jpg`` and ``DIR/validation/<class>/*.jpg`` unless ``DIR`` already holds
images, in which case it leaves everything alone. Each class is a colour with a stripe direction,
plus noise and a random size, so that a ResNet learns it within a few epochs even on a CPU.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".rec", ".lst")

# (class name, RGB colour, stripes run horizontally?)
CLASSES = (
    ("red-horizontal", (220, 40, 40), True),
    ("green-vertical", (40, 200, 60), False),
    ("blue-horizontal", (50, 80, 230), True),
    ("yellow-vertical", (230, 200, 40), False),
)
TRAIN_PER_CLASS = 24
VALIDATION_PER_CLASS = 8
SIZE_RANGE = (96, 160)


def make_image(colour: tuple[int, int, int], horizontal: bool, rng: random.Random) -> Image.Image:
    """One striped, noisy RGB image of a random size in :data:`SIZE_RANGE`."""
    width, height = rng.randint(*SIZE_RANGE), rng.randint(*SIZE_RANGE)
    np_rng = np.random.default_rng(rng.randrange(2**32))
    pixels = np.empty((height, width, 3), dtype=np.float32)
    pixels[:] = np.array(colour, dtype=np.float32) * rng.uniform(0.7, 1.0)
    period = rng.randint(8, 16)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = ((yy if horizontal else xx) // (period // 2)) % 2 == 0
    pixels[stripes] *= 0.45
    pixels += np_rng.normal(0, 12, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def has_data(root: Path) -> bool:
    """Whether ``root`` already holds any image, RecordIO or .lst file (at any depth)."""
    if not root.is_dir():
        return False
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.rglob("*") if p.is_file())


def write_sample(root: Path, *, seed: int = 0) -> int:
    """Write the sample data set under ``root`` and return the number of images written."""
    rng = random.Random(seed)
    count = 0
    for channel, per_class in (("train", TRAIN_PER_CLASS), ("validation", VALIDATION_PER_CLASS)):
        for name, colour, horizontal in CLASSES:
            folder = root / channel / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                make_image(colour, horizontal, rng).save(folder / f"{i:04d}.jpg", quality=90)
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m train.sample_data [--force] DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "root",
        type=Path,
        nargs="?",
        default=Path("/opt/ml/input/data"),
        help="the data folder (default: /opt/ml/input/data)",
    )
    parser.add_argument("--force", action="store_true", help="write even if DIR has data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if has_data(args.root) and not args.force:
        logger.info("%s already holds data: no sample data written", args.root)
        return 0
    count = write_sample(args.root)
    logger.info(
        "Wrote a sample data set of %d images (%d classes) to %s/{train,validation}",
        count,
        len(CLASSES),
        args.root,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
