"""Augmented manifests (SageMaker Ground Truth output): labels, streams and ``.manifest`` files.

A manifest line is a JSON object such as ``{"source-ref": "s3://b/img.jpg", "class": "3",
"class-metadata": {...}}``. In Pipe mode SageMaker streams one RecordIO record per attribute
listed in ``AttributeNames``, in that order: the image's bytes (for the ``-ref`` attribute),
then the label's text. Labels come as ``3``, ``"3"`` or ``3.0`` (single-label), as a multi-hot
list ``[1, 0, 1]``, or as class ids ``[0, 2]`` when the channel's content type says
``label-format=class-id``; quotes and spacing vary, so all of these are accepted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from train import json_input
from train.errors import ClientError
from train.inputs.recordio import MAGIC_BYTES, is_image, is_packed_record
from train.lst import Entry, _check_relpath

ATTRIBUTE_HINT = (
    "AttributeNames must list exactly two attributes, the image first and its label second, "
    'e.g. ["source-ref", "class"] (not the -metadata attribute), with RecordWrapperType '
    "RecordIO"
)
SNIPPET = 60


@dataclass(frozen=True)
class LabelFormat:
    """How label text becomes the label vector of a record."""

    multi_label: bool
    num_classes: int | None
    class_ids: bool = False  # ``label-format=class-id``

    @property
    def width(self) -> int:
        return (self.num_classes or 0) if self.multi_label else 1


def describe(data: bytes) -> str:
    """What a record looks like, for error messages."""
    if not data:
        return "it is empty"
    if is_image(data):
        return "it is an image"
    if is_packed_record(data):
        return "it is an im2rec record (a .rec file's record), not a manifest attribute"
    if data.startswith(MAGIC_BYTES):
        return "it is a whole RecordIO file wrapped in one record"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"it is {len(data)} bytes of binary data starting {data[:8].hex()}"
    shown = text if len(text) <= SNIPPET else text[:SNIPPET] + "..."
    try:
        json_input.loads(text)
    except ValueError:
        return f"it is text `{shown}`"
    return f"it looks like JSON text `{shown}`"


def _loads(text: str):
    """JSON value of a label; a JSON string is parsed again (``"3"``, ``"[0, 2]"``)."""
    value = json_input.loads(text.strip())
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json_input.loads(value.strip())
    return value


def _class(value, fmt: LabelFormat) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{value!r} is not a class number (0-based)")
    if not float(value).is_integer():
        raise ValueError(f"{value!r} is not a whole class number")
    if fmt.num_classes is not None and value >= fmt.num_classes:
        raise ValueError(f"class {int(value)} is not below num_classes={fmt.num_classes}")
    return int(value)


def _multi_hot(ids: list[int], fmt: LabelFormat) -> tuple[float, ...]:
    hot = [0.0] * (fmt.num_classes or 0)
    for k in ids:
        hot[k] = 1.0
    return tuple(hot)


def label_vector(value, fmt: LabelFormat) -> tuple[float, ...]:
    """The label(s) of one record from its JSON value.

    Raises:
        ValueError: the value does not fit ``fmt`` (the message says why and what would).
    """
    if fmt.multi_label and fmt.num_classes is None:
        raise ValueError("multi_label=1 needs the num_classes hyperparameter")
    if not isinstance(value, list):
        k = _class(value, fmt)
        if not fmt.multi_label:
            return (float(k),)
        if fmt.class_ids:
            return _multi_hot([k], fmt)
        raise ValueError(f"{value!r} is one class but multi_label=1 expects a list")
    if not fmt.multi_label:
        if len(value) == 1:
            return (float(_class(value[0], fmt)),)
        raise ValueError(f"{value!r} is a list: set multi_label=1 for multi-label data")
    if fmt.class_ids:
        return _multi_hot([_class(v, fmt) for v in value], fmt)
    if any(v not in (0, 1) for v in value) or len(value) != fmt.num_classes:
        raise ValueError(
            f"{value!r} is not a multi-hot list of num_classes={fmt.num_classes} 0/1 values; "
            f"for class ids (e.g. [0, 2]) add '; label-format=class-id' to the ContentType"
        )
    return tuple(float(v) for v in value)


def parse_label(data: bytes, fmt: LabelFormat) -> tuple[float, ...]:
    """The label(s) carried by a label record of a Pipe-mode stream."""
    try:
        value = _loads(data.decode("utf-8"))
    except ValueError:
        raise ValueError(f"{describe(data)}, not a label") from None
    return label_vector(value, fmt)


def _file_label(value, fmt: LabelFormat) -> tuple[float, ...]:
    """The label(s) of a manifest line's label attribute (a JSON string, number or list)."""
    if isinstance(value, str):
        try:
            value = _loads(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a class number (0-based)") from None
    return label_vector(value, fmt)


def pair_records(
    records: Iterable[bytes], where: str, fmt: LabelFormat, first: int = 0
) -> Iterator[tuple[int, bytes, tuple[float, ...]]]:
    """(record number, image bytes, labels) for each image/label pair of a manifest stream.

    Raises:
        ClientError: the stream does not alternate image and label; the message says what
            arrived instead and what ``AttributeNames`` must be.
    """
    stream = iter(records)
    number = first
    for image in stream:
        if not is_image(image):
            raise ClientError(
                f"record {number} of {where} is not an image: {describe(image)}. {ATTRIBUTE_HINT}"
            )
        label = next(stream, None)
        if label is None:
            raise ClientError(
                f"{where} ends with an image (record {number}) without its label: the label "
                f"attribute is missing. {ATTRIBUTE_HINT}"
            )
        if is_image(label):
            raise ClientError(
                f"record {number + 1} of {where} is an image where the label of record {number} "
                f"was expected: the label attribute is missing. {ATTRIBUTE_HINT}"
            )
        try:
            labels = parse_label(label, fmt)
        except ValueError as exc:
            raise ClientError(
                f"record {number + 1} of {where}: label {exc}. {ATTRIBUTE_HINT}"
            ) from None
        yield number, image, labels
        number += 2


def _attributes(doc: dict, where: str) -> tuple[str, str]:
    refs = [k for k in doc if k.endswith("-ref")]
    labels = [k for k in doc if not k.endswith(("-ref", "-metadata"))]
    if not refs:
        raise ClientError(f"{where}: no image attribute (a key ending in -ref, e.g. source-ref)")
    if len(labels) != 1:
        found = ", ".join(labels) or "none"
        raise ClientError(
            f"{where}: expected one label attribute besides {refs[0]} and -metadata keys, "
            f"found {found}; keep one label attribute per line"
        )
    return ("source-ref" if "source-ref" in refs else refs[0]), labels[0]


def _local_path(ref: str, root: Path, where: str) -> str:
    """A ``source-ref`` as a path relative to the channel: a relative path as it is; an S3 URI
    as the longest tail of its key that exists in the channel (the images were copied beside
    the manifest, with or without their prefixes)."""
    if not ref.startswith("s3://"):
        return _check_relpath(ref, where)
    parts = PurePosixPath(ref[len("s3://") :]).parts[1:]
    tails = [PurePosixPath(*parts[i:]).as_posix() for i in range(len(parts))]
    return next((t for t in tails if (root / t).is_file()), tails[0] if tails else ref)


def read_manifest(path: Path, root: Path, fmt: LabelFormat) -> list[Entry]:
    """The images and labels of a File-mode ``.manifest`` (paths relative to ``root``).

    Raises:
        ClientError: a file that is not UTF-8 text, a line that is not a JSON object, lacks
            the image or label attribute, or has a bad label (with file and line).
    """
    entries: list[Entry] = []
    attributes = None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ClientError(
            f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start}): a manifest is "
            "JSON Lines, one object per image"
        ) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            doc = json_input.loads(line)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ClientError(f"{where}: not a JSON object (one manifest line per image)")
        image_key, label_key = _attributes(doc, where)
        if attributes is not None and (image_key, label_key) != attributes:
            raise ClientError(
                f"{where}: image attribute {image_key!r} and label attribute {label_key!r} "
                f"differ from the first line's {attributes[0]!r} and {attributes[1]!r}"
            )
        attributes = image_key, label_key
        value = doc[label_key]
        try:
            labels = _file_label(value, fmt)
        except ValueError as exc:
            raise ClientError(f"{where}: label {label_key}={value!r}: {exc}") from None
        relpath = _local_path(str(doc[image_key]), root, where)
        entries.append(Entry(len(entries), labels, relpath))
    if not entries:
        raise ClientError(f"{path} has no entries")
    return entries
