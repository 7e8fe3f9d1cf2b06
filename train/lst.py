"""MXNet ``.lst`` files (im2rec format): reading with validation, writing, and class folders.

A line is ``index<TAB>label<TAB>relative/path.jpg``; multi-label lines carry one 0/1 column per
class before the path. Labels may be written ``1`` or ``1.000000`` (im2rec writes floats).
Every problem is reported with the file and line, and paths may not leave the channel root.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from train.errors import ClientError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class Entry:
    """One image of a list: its index, labels (one, or one per class for multi-label) and path."""

    index: int
    labels: tuple[float, ...]
    relpath: str

    @property
    def label(self) -> int:
        """The class of a single-label entry."""
        return int(self.labels[0])


def _parse_label(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ClientError(f"{where}: label {text!r} is not a number") from None
    if not value.is_integer() or value < 0:
        raise ClientError(f"{where}: label {text!r} must be a whole number >= 0")
    return value


def _check_relpath(relpath: str, where: str) -> str:
    """Refuse absolute paths and paths that climb out of the channel root."""
    path = PurePosixPath(relpath.replace("\\", "/"))
    if path.is_absolute() or relpath.startswith(("/", "\\")) or ".." in path.parts:
        raise ClientError(
            f"{where}: path {relpath!r} leaves the channel root; .lst paths must be relative "
            f"to the image channel (e.g. class_a/img_001.jpg)"
        )
    return str(path)


def parse_line(line: str, where: str, *, multi_label: bool, num_classes: int | None) -> Entry:
    """Parse one ``.lst`` line (``where`` is ``file:line`` for messages)."""
    parts = line.rstrip("\r\n").split("\t")
    if multi_label:
        expected = f"{2 + num_classes}" if num_classes else "at least 3"
        ok = len(parts) == 2 + num_classes if num_classes else len(parts) >= 3
    else:
        expected, ok = "3", len(parts) == 3
    if not ok:
        raise ClientError(
            f"{where}: expected {expected} tab-separated columns (index, "
            f"{'one 0/1 column per class' if multi_label else 'label'}, path), found {len(parts)}"
        )
    try:
        index_value = float(parts[0])
    except ValueError:
        raise ClientError(f"{where}: index {parts[0]!r} is not a number") from None
    if not index_value.is_integer() or index_value < 0:
        raise ClientError(f"{where}: index {parts[0]!r} must be a whole number >= 0")
    index = int(index_value)
    labels = tuple(_parse_label(t, where) for t in parts[1:-1])
    if multi_label and any(v > 1 for v in labels):
        raise ClientError(f"{where}: multi-label columns must be 0 or 1")
    if not multi_label and num_classes is not None and labels[0] >= num_classes:
        raise ClientError(
            f"{where}: label {int(labels[0])} is not below num_classes={num_classes} "
            f"(labels are 0-based)"
        )
    return Entry(index, labels, _check_relpath(parts[-1], where))


def read_lst(path: Path, *, multi_label: bool, num_classes: int | None) -> list[Entry]:
    """Read and validate a whole ``.lst`` file.

    Raises:
        ClientError: bad columns, labels or paths (with file and line), duplicate indices, or
            an empty list.
    """
    entries: list[Entry] = []
    seen: dict[int, int] = {}
    text = path.read_text(encoding="utf-8-sig", errors="replace")  # Excel adds a BOM
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        entry = parse_line(line, where, multi_label=multi_label, num_classes=num_classes)
        if entry.index in seen:
            raise ClientError(
                f"{where}: index {entry.index} already used on line {seen[entry.index]}; "
                f"indices must be unique"
            )
        seen[entry.index] = number
        entries.append(entry)
    if not entries:
        raise ClientError(f"{path} has no entries")
    return entries


def write_lst(path: Path, entries: list[Entry]) -> None:
    """Write entries in im2rec's format (labels as ``%f``)."""
    lines = ["\t".join([str(e.index), *(f"{v:f}" for v in e.labels), e.relpath]) for e in entries]
    path.write_text("\n".join(lines) + "\n")


def find_images(folder: Path) -> list[Path]:
    """Image files below ``folder``, sorted, by extension (case-insensitive)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found.extend(
            Path(dirpath) / name
            for name in sorted(filenames)
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
        )
    return found


def list_class_folders(root: Path) -> tuple[list[Entry], list[str]]:
    """Entries for ``root/<class>/**/image`` with labels from sorted folder names, like
    ``im2rec --list --recursive``; also returns the class names."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    entries: list[Entry] = []
    for label, name in enumerate(classes):
        for image in find_images(root / name):
            rel = image.relative_to(root).as_posix()
            entries.append(Entry(len(entries), (float(label),), rel))
    return entries, classes


def split_entries(
    entries: list[Entry], fraction: float, seed: int
) -> tuple[list[Entry], list[Entry]]:
    """Deterministic, per-class (stratified) train/validation split.

    Every class with at least two images keeps at least one in each part.
    """
    by_class: dict[tuple[float, ...], list[Entry]] = defaultdict(list)
    for entry in entries:
        by_class[entry.labels].append(entry)
    rng = random.Random(seed)
    train, validation = [], []
    for key in sorted(by_class):
        group = sorted(by_class[key], key=lambda e: e.index)
        rng.shuffle(group)
        n_val = round(len(group) * fraction)
        if len(group) >= 2:
            n_val = min(max(n_val, 1), len(group) - 1)
        validation.extend(group[:n_val])
        train.extend(group[n_val:])
    return sorted(train, key=lambda e: e.index), sorted(validation, key=lambda e: e.index)


def infer_class_names(entries: list[Entry], num_classes: int) -> list[str]:
    """Folder names as class names when each label maps to exactly one top-level folder
    (lists made by ``im2rec --list --recursive``); otherwise ``"0"``, ``"1"``, ..."""
    folders: dict[int, set[str]] = defaultdict(set)
    for entry in entries:
        parts = PurePosixPath(entry.relpath).parts
        folders[entry.label].add(parts[0] if len(parts) > 1 else "")
    names = [
        next(iter(folders[k])) if len(folders.get(k, ())) == 1 else "" for k in range(num_classes)
    ]
    if all(names) and len(set(names)) == num_classes:
        return names
    return [str(k) for k in range(num_classes)]
