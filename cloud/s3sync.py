"""Upload a data folder to S3 in the built-in algorithm's channel layout, skipping what is there.

Two local layouts are understood:

- the output of ``oic prepare``: class folders plus ``train.lst`` / ``validation.lst``. The
  images of each list go to ``<prefix>/train/`` and ``<prefix>/validation/``, the lists to
  ``<prefix>/train_lst/`` and ``<prefix>/validation_lst/`` (with ``classes.json``);
- channel folders, as ``docker compose`` reads them (``train/``, ``validation/``,
  ``train_lst/``, ``validation_lst/``, ``model/``, ``pretrained/``): mirrored as they are.

An object is skipped when one with the same key, size and SHA-256 (stored in the object's
metadata, or an MD5 ETag for single-part uploads made by other tools) is already there. With
``prune``, objects under a channel's prefix that the channel does not list are deleted, so the
prefix holds exactly the channel's files (a prefix the job reads whole, as a transform job does).
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from cloud.errors import CliError
from cloud.prepare import TRAIN_LST, VALIDATION_LST
from train.artifacts import CLASSES_FILE
from train.lst import read_lst

CHANNELS = ("train", "validation", "train_lst", "validation_lst", "model", "pretrained")
IMAGE = "application/x-image"
RECORDIO = "application/x-recordio"
MODEL = "application/x-sagemaker-model"
AUGMENTED_MANIFEST = "AugmentedManifestFile"
SHA256_KEY = "sha256"  # user metadata: x-amz-meta-sha256


@dataclass(frozen=True)
class Upload:
    """One local file and the key it goes to; ``data``, when given, is sent instead of the
    file's bytes (a manifest rewritten to point at the uploaded images)."""

    path: Path
    key: str
    data: bytes | None = None


@dataclass(frozen=True)
class Channel:
    """One training channel: its name, S3 prefix, content type and files.

    An augmented-manifest channel (``data_type`` ``AugmentedManifestFile``) points at its one
    uploaded file, the manifest, and streams the attributes ``attribute_names`` in Pipe mode.
    """

    name: str
    prefix: str
    content_type: str
    uploads: tuple[Upload, ...]
    input_mode: str = "File"
    data_type: str = "S3Prefix"
    attribute_names: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The S3 key the channel's ``S3Uri`` names: the prefix, or the manifest's key."""
        return self.uploads[0].key if self.data_type == AUGMENTED_MANIFEST else self.prefix


def _content_type(name: str, files: Iterable[Path]) -> str:
    if name == "model":
        return MODEL
    return RECORDIO if any(p.suffix == ".rec" for p in files) else IMAGE


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _channel(name: str, prefix: str, files: list[tuple[Path, str]]) -> Channel:
    key_prefix = f"{prefix}/{name}/"
    uploads = tuple(Upload(path, key_prefix + rel) for path, rel in files)
    return Channel(name, key_prefix, _content_type(name, (p for p, _ in files)), uploads)


def _from_lists(data: Path, prefix: str) -> list[Channel]:
    channels = []
    for name, lst in (("train", TRAIN_LST), ("validation", VALIDATION_LST)):
        entries = read_lst(data / lst, multi_label=False, num_classes=None)
        missing = [e.relpath for e in entries if not (data / e.relpath).is_file()]
        if missing:
            raise CliError(
                f"{data / lst} names {len(missing)} missing files (first: {missing[0]}): "
                f"run `oic prepare {data}` again"
            )
        channels.append(_channel(name, prefix, [(data / e.relpath, e.relpath) for e in entries]))
        lst_files = [(data / lst, lst)]
        if name == "train" and (data / CLASSES_FILE).is_file():
            lst_files.append((data / CLASSES_FILE, CLASSES_FILE))
        channels.append(_channel(f"{name}_lst", prefix, lst_files))
    return channels


def plan_channels(data: Path, prefix: str) -> list[Channel]:
    """The channels to upload from ``data`` under the key prefix ``prefix``.

    Raises:
        CliError: ``data`` holds neither layout.
    """
    if (data / TRAIN_LST).is_file() and (data / VALIDATION_LST).is_file():
        return _from_lists(data, prefix)
    folders = [name for name in CHANNELS if (data / name).is_dir()]
    if "train" not in folders:
        raise CliError(
            f"{data} has neither train.lst/validation.lst nor a train/ channel folder: run "
            f"`oic prepare {data}` on a folder of class sub-folders, or lay it out as channels "
            "(train/, validation/, train_lst/, validation_lst/)"
        )
    return [
        _channel(
            name, prefix, [(p, p.relative_to(data / name).as_posix()) for p in _files(data / name)]
        )
        for name in folders
    ]


def digests(path: Path) -> tuple[str, str]:
    """SHA-256 and MD5 of a file, in one pass."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _size_and_digests(upload: Upload) -> tuple[int, str, str]:
    if upload.data is None:
        return (upload.path.stat().st_size, *digests(upload.path))
    data = upload.data
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return len(data), hashlib.sha256(data).hexdigest(), md5


def existing_sizes(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    """``{key: size}`` of the objects under ``prefix``."""
    sizes: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        sizes.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return sizes


def is_same(s3: Any, bucket: str, upload: Upload, sha256: str, md5: str) -> bool:
    """True when the object already holds this file's bytes."""
    try:
        head = s3.head_object(Bucket=bucket, Key=upload.key)
    except ClientError:
        return False
    stored = head.get("Metadata", {}).get(SHA256_KEY)
    if stored:
        return stored == sha256
    return head.get("ETag", "").strip('"') == md5


@dataclass
class SyncReport:
    """How many files were uploaded, skipped and deleted (``prune``), and the uploaded bytes."""

    uploaded: int = 0
    skipped: int = 0
    uploaded_bytes: int = 0
    deleted: int = 0


def sync(
    s3: Any,
    bucket: str,
    channels: list[Channel],
    progress: Callable[[str], None] = print,
    prune: bool = False,
) -> SyncReport:
    """Upload every file of ``channels`` whose key is not already there with the same bytes;
    with ``prune``, delete the objects under each channel's prefix that it does not list."""
    report = SyncReport()
    for channel in channels:
        sizes = existing_sizes(s3, bucket, channel.prefix)
        if prune:
            report.deleted += _delete(s3, bucket, set(sizes) - {u.key for u in channel.uploads})
        for upload in channel.uploads:
            size, sha256, md5 = _size_and_digests(upload)
            if sizes.get(upload.key) == size and is_same(s3, bucket, upload, sha256, md5):
                report.skipped += 1
                continue
            extra = {"Metadata": {SHA256_KEY: sha256}, "ContentType": _mime(upload.path)}
            if upload.data is None:
                s3.upload_file(str(upload.path), bucket, upload.key, ExtraArgs=extra)
            else:
                s3.put_object(Bucket=bucket, Key=upload.key, Body=upload.data, **extra)
            report.uploaded += 1
            report.uploaded_bytes += size
        progress(
            f"  {channel.name:<15} s3://{bucket}/{channel.prefix}  ({len(channel.uploads)} files)"
        )
    return report


def _delete(s3: Any, bucket: str, keys: set[str]) -> int:
    """Delete ``keys`` (DeleteObjects takes at most 1000 a request); returns how many."""
    ordered = sorted(keys)
    for start in range(0, len(ordered), 1000):
        batch = [{"Key": key} for key in ordered[start : start + 1000]]
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise CliError(
                f"could not delete s3://{bucket}/{first['Key']} ({first.get('Code')}: "
                f"{first.get('Message')}), left from an earlier upload: delete it, or check "
                "that your credentials allow s3:DeleteObject"
            )
    return len(ordered)


def _mime(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"
