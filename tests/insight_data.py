"""Generated image sets for the data audit: distinct synthetic pictures, and planted problems
(copies, near-copies, label conflicts, a rare class) at known positions."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import cv2
import numpy as np

from tests import datagen
from train import images, presets

SIZE = 48


def picture(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A distinct RGB picture: a colour gradient and a few random shapes, lightly noisy."""
    ramp = np.linspace(0, 1, size)[None, :, None]
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    image = (a + (b - a) * ramp).repeat(size, axis=0)
    image = np.ascontiguousarray(image.astype(np.uint8))
    if rng.random() < 0.5:
        image = np.ascontiguousarray(image.transpose(1, 0, 2))
    for _ in range(int(rng.integers(6, 12))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(size // 12, size // 3, 2))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x, y), (x + w, y + h), color, -1)
        else:
            cv2.ellipse(image, (x, y), (w, h), float(rng.integers(0, 180)), 0, 360, color, -1)
    texture = cv2.resize(rng.normal(0, 20, (6, 6, 3)), (size, size), interpolation=cv2.INTER_CUBIC)
    noise = texture + rng.normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def reencoded(image: np.ndarray) -> np.ndarray:
    """The same picture through a low-quality JPEG."""
    return images.decode_image(images.encode_jpeg(image, quality=40))


def resized(image: np.ndarray) -> np.ndarray:
    """The same picture stored at 60% size (packing brings it back to the shared size)."""
    h, w = image.shape[:2]
    return cv2.resize(image, (int(w * 0.6), int(h * 0.6)), interpolation=cv2.INTER_AREA)


def cropped(image: np.ndarray) -> np.ndarray:
    """The same picture with about 6% cut from two sides."""
    h, w = image.shape[:2]
    return image[h * 6 // 100 :, : w - w * 6 // 100]


def packed_train(image: np.ndarray, resize: int = 40) -> bytes:
    """A training record's image as packing stores it (shorter side resized, JPEG)."""
    return images.encode_jpeg(presets.prepare_for_eval(image, resize))


def packed_validation(image: np.ndarray, resize: int = 40) -> bytes:
    """A validation record's image as packing stores it (shorter side resized, PNG)."""
    return images.encode_png(presets.prepare_for_eval(image, resize))


@dataclass
class PlantedSet:
    """Packed train/validation images and labels, and where the planted problems are."""

    train: list[bytes] = field(default_factory=list)
    train_labels: list[int] = field(default_factory=list)
    validation: list[bytes] = field(default_factory=list)
    validation_labels: list[int] = field(default_factory=list)
    copies: list[int] = field(default_factory=list)  # validation positions
    near_copies: list[int] = field(default_factory=list)  # validation positions
    conflicts: list[int] = field(default_factory=list)  # train positions (both sides)
    rare_class: int = -1


def planted_set(seed: int = 0, per_class: int = 80, classes: int = 5) -> PlantedSet:
    """``classes`` classes of ``per_class`` training images plus a rare class of 3, a
    validation set of a quarter that size, and each kind of problem planted a few times."""
    rng = np.random.default_rng(seed)
    out = PlantedSet(rare_class=classes)
    sources = []
    for label in [*range(classes)] * per_class + [classes] * 3:
        source = picture(rng)
        sources.append(source)
        out.train.append(packed_train(source))
        out.train_labels.append(label)
    for label in [*range(classes)] * (per_class // 4):
        out.validation.append(packed_validation(picture(rng)))
        out.validation_labels.append(label)
    for k in range(6):  # validation copies of training images
        out.copies.append(len(out.validation))
        out.validation.append(packed_validation(sources[k]))
        out.validation_labels.append(out.train_labels[k])
    for k, change in enumerate([reencoded, resized, cropped] * 3):
        source = sources[10 + k]
        out.near_copies.append(len(out.validation))
        out.validation.append(packed_validation(change(source)))
        out.validation_labels.append(out.train_labels[10 + k])
    for k, change in enumerate([None, None, reencoded, resized, cropped]):
        index = 30 + k
        source = sources[index] if change is None else change(sources[index])
        out.conflicts += [index, len(out.train)]
        out.train.append(packed_train(source))
        out.train_labels.append((out.train_labels[index] + 1) % classes)
    return out


def clean_set(seed: int = 1, per_class: int = 80, classes: int = 5) -> PlantedSet:
    """A set of the same size as :func:`planted_set` with nothing planted."""
    rng = np.random.default_rng(seed)
    out = PlantedSet()
    for label in [*range(classes)] * (per_class + 1):
        out.train.append(packed_train(picture(rng)))
        out.train_labels.append(label)
    for label in [*range(classes)] * (per_class // 4 + 3):
        out.validation.append(packed_validation(picture(rng)))
        out.validation_labels.append(label)
    return out


def datagen_set(classes: int = 4, train_per: int = 60, val_per: int = 15) -> PlantedSet:
    """tests/datagen's pictures (one colour and stripe pattern per class, differing only by
    noise, brightness and size) stored as a job stores them: JPEG files, packed at
    ``resize`` 36. Clean: no image is a copy of another."""
    out = PlantedSet()
    for per, seed, pack, images_, labels in (
        (train_per, 0, packed_train, out.train, out.train_labels),
        (val_per, 1, packed_validation, out.validation, out.validation_labels),
    ):
        rng = random.Random(seed)
        for label in range(classes):
            for _ in range(per):
                size = (rng.randint(40, 72), rng.randint(40, 72))
                on_disk = images.encode_jpeg(datagen.make_image(label, rng, size), quality=90)
                images_.append(pack(images.decode_image(on_disk), 36))
                labels.append(label)
    return out
