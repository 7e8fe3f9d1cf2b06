"""``oic prepare``: train/validation ``.lst`` files from class sub-folders, like im2rec.

Labels are the sorted folder indices (``im2rec --list --recursive``), the split is random with a
seed and stratified per class, every class must keep at least one image on each side, and the
training list is shuffled (as im2rec does), so that each host of a multi-host job sees all classes.
Writes ``train.lst``, ``validation.lst`` and ``classes.json`` (the trainer reads class names
from it) into the data folder, beside the class folders, and prints the per-class counts.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cloud.errors import CliError
from train.artifacts import CLASSES_FILE, atomic_write_json, classes_document
from train.lst import Entry, list_class_folders, split_entries, write_lst

TRAIN_LST = "train.lst"
VALIDATION_LST = "validation.lst"


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` wrote."""

    classes: list[str]
    train: list[Entry]
    validation: list[Entry]
    out: Path


def check_counts(classes: list[str], entries: list[Entry], min_per_class: int) -> None:
    """Fail, naming every class with fewer than ``min_per_class`` images."""
    if len(classes) < 2:
        raise CliError(
            f"found {len(classes)} class folder(s); image classification needs at least 2: "
            "put each class's images in its own sub-folder (DATA/<class>/*.jpg)"
        )
    counts = Counter(e.label for e in entries)
    short = [
        f"{name!r} ({counts[i]})" for i, name in enumerate(classes) if counts[i] < min_per_class
    ]
    if short:
        raise CliError(
            f"too few images for a train/validation split in class {', '.join(short)}: every "
            f"class needs at least {min_per_class} images (one or more on each side). Add images "
            "to those folders or remove them."
        )


def scan(data: Path, min_per_class: int) -> tuple[list[Entry], list[str]]:
    """The images of the class folders of ``data``, checked for the split."""
    if not data.is_dir():
        raise CliError(f"data folder {data} does not exist")
    entries, classes = list_class_folders(data)
    check_counts(classes, entries, max(min_per_class, 2))
    return entries, classes


def shuffled(entries: list[Entry], seed: int) -> list[Entry]:
    """The entries in a seeded random order, as ``im2rec --list`` writes them.

    Record files are packed in list order and multi-host training gives each host a contiguous
    part of them: a list sorted by class would give each host only some of the classes.
    """
    out = list(entries)
    random.Random(seed).shuffle(out)
    return out


def prepare(data: Path, fraction: float, seed: int, min_per_class: int) -> Prepared:
    """Split the class folders of ``data`` and write the lists and class names beside them."""
    entries, classes = scan(data, min_per_class)
    train, validation = split_entries(entries, fraction, seed)
    out = data
    write_lst(out / TRAIN_LST, shuffled(train, seed))
    write_lst(out / VALIDATION_LST, validation)
    atomic_write_json(out / CLASSES_FILE, classes_document(classes, multi_label=False))
    return Prepared(classes, train, validation, out)


def report(prepared: Prepared) -> str:
    """A per-class table of the split."""
    train = Counter(e.label for e in prepared.train)
    val = Counter(e.label for e in prepared.validation)
    width = max(len(c) for c in prepared.classes)
    rows = [f"{'label':>5}  {'class':<{width}}  {'train':>6}  {'validation':>10}"]
    rows += [
        f"{i:>5}  {name:<{width}}  {train[i]:>6}  {val[i]:>10}"
        for i, name in enumerate(prepared.classes)
    ]
    rows.append(
        f"{'':>5}  {'total':<{width}}  {len(prepared.train):>6}  {len(prepared.validation):>10}"
    )
    return "\n".join(rows)


def command(args: argparse.Namespace) -> int:
    """Run ``oic prepare``."""
    if not 0 < args.validation_fraction < 1:
        raise CliError("--validation-fraction must be between 0 and 1 (e.g. 0.2)")
    out = args.data
    if args.dry_run:
        scan(args.data, args.min_per_class)
        print(f"would write {out / TRAIN_LST}, {out / VALIDATION_LST}, {out / CLASSES_FILE}")
        return 0
    prepared = prepare(args.data, args.validation_fraction, args.seed, args.min_per_class)
    print(report(prepared))
    print(f"wrote {out / TRAIN_LST}, {out / VALIDATION_LST} and {out / CLASSES_FILE}")
    print(f"next: oic train --data {args.data}")
    return 0
