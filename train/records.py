"""Pack ``.lst`` + images into RecordIO once, in parallel, with a cache keyed by content.

Decoding happens here, in worker threads (OpenCV releases the GIL); training reads the packed
file with MXNet's C++ ``ImageRecordIter`` or the PyTorch engine's loader. The file is written by
:mod:`train.inputs.recordio`, byte for byte as MXNet's writer wrote it (the cache is shared).
Training images are stored as JPEG at the ``resize`` size; validation images as lossless PNG,
so that validation sees exactly the pixels the server computes with the same
:mod:`train.presets` code. Unreadable images are skipped and counted; the job fails when too
many are. A stop request (SIGTERM) ends packing within about one image's decoding time; the
cache entry is only renamed into place, with its manifest, once it is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train import artifacts, images, presets
from train.errors import ClientError, TrainingInterrupted
from train.inputs import recordio
from train.lst import Entry

logger = logging.getLogger(__name__)

CACHE_VERSION = "1"
REC_FILE = "data.rec"
IDX_FILE = "data.idx"
MANIFEST_FILE = "manifest.json"
MAX_NAMED = 10  # bad files named in a message
# The OpenCV 3.4.2 linked into libmxnet 1.9.1 caps images at 2**30 pixels at compile time
# (OpenCV 4 reads OPENCV_IO_MAX_IMAGE_PIXELS; 3.4.2 has no such variable).
MXNET_OPENCV_MAX_PIXELS = 1 << 30


@dataclass(frozen=True)
class PackSettings:
    """What changes the packed bytes (and therefore the cache key)."""

    resize: int | None
    lossless: bool
    min_size: tuple[int, int]  # (height, width) every image must reach after resizing
    max_pixels: int


@dataclass(frozen=True)
class PackedSet:
    """A packed RecordIO file and what is known about it."""

    rec: Path
    idx: Path
    count: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _cache_key(entries: list[Entry], root: Path, settings: PackSettings) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, settings.__dict__], default=list).encode())
    for e in entries:
        try:
            stat = (root / e.relpath).stat()
            sig = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            sig = "missing"
        digest.update(f"{e.index}\t{e.labels}\t{e.relpath}\t{sig}\n".encode())
    return digest.hexdigest()[:24]


def _load(entry: Entry, root: Path, settings: PackSettings) -> tuple[bytes | None, str]:
    """Read, check, resize and re-encode one image; returns (record bytes, problem)."""
    path = root / entry.relpath
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "file not found"
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    return prepare_image(data, settings)


def prepare_image(data: bytes, settings: PackSettings) -> tuple[bytes | None, str]:
    """Decode, check, resize and re-encode one image's bytes; returns (encoded, problem)."""
    try:
        rgb = images.decode_image(data, max_pixels=settings.max_pixels)
    except images.BadImage as exc:
        return None, str(exc)
    rgb = presets.prepare_for_eval(rgb, settings.resize)
    height, width = rgb.shape[:2]
    if height < settings.min_size[0] or width < settings.min_size[1]:
        return None, f"too small: {width}x{height} after resize"
    encoded = images.encode_png(rgb) if settings.lossless else images.encode_jpeg(rgb)
    return encoded, ""


def _iter_loaded(
    entries: list[Entry], root: Path, settings: PackSettings, workers: int, stop: threading.Event
) -> Iterator[tuple[Entry, bytes | None, str]]:
    """Load images in ``workers`` threads, in order, with a few per thread in flight: a stop
    request waits only for those, never for the rest of the data set."""
    window = 4 * workers
    todo = iter(entries)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[Entry, Future]] = deque()
        while True:
            while len(pending) < window and (entry := next(todo, None)) is not None:
                pending.append((entry, pool.submit(_load, entry, root, settings)))
            if not pending:
                return
            if stop.is_set():
                for _, future in pending:
                    future.cancel()
                raise TrainingInterrupted("stop requested while packing images")
            entry, future = pending.popleft()
            data, problem = future.result()
            yield entry, data, problem


def _write(
    entries: list[Entry],
    root: Path,
    settings: PackSettings,
    out_dir: Path,
    workers: int,
    progress: bool,
    stop: threading.Event,
) -> tuple[int, list[tuple[str, str]], list[str]]:
    from tqdm import tqdm

    count, skipped, too_small = 0, [], []
    loaded = _iter_loaded(entries, root, settings, workers, stop)
    with recordio.IndexedWriter(out_dir / IDX_FILE, out_dir / REC_FILE) as writer:
        for entry, data, problem in tqdm(
            loaded, total=len(entries), disable=not progress, desc="packing", unit="img"
        ):
            if data is None:
                if problem.startswith("too small"):
                    too_small.append(entry.relpath)
                else:
                    skipped.append((entry.relpath, problem))
                continue
            writer.write(entry.index, recordio.pack_labels(entry.index, entry.labels, data))
            count += 1
    for written in (out_dir / REC_FILE, out_dir / IDX_FILE):
        artifacts.fsync_file(written)
    return count, skipped, too_small


def _check_outcome(
    name: str,
    total: int,
    count: int,
    skipped: list[tuple[str, str]],
    too_small: list[str],
    settings: PackSettings,
    max_bad: float,
) -> None:
    if too_small:
        h, w = settings.min_size
        raise ClientError(
            f"{len(too_small)} {name} images are smaller than image_shape {h}x{w} after "
            f"resizing, e.g. {', '.join(too_small[:MAX_NAMED])}. Set 'resize' to at least "
            f"{max(h, w)} (it resizes the shorter side) or remove these images."
        )
    listed = "; ".join(f"{p} ({why})" for p, why in skipped[:MAX_NAMED])
    if skipped:
        logger.warning(
            "Skipped %d of %d %s images that cannot be used: %s%s",
            len(skipped),
            total,
            name,
            listed,
            " ..." if len(skipped) > MAX_NAMED else "",
        )
    if total and len(skipped) / total > max_bad:
        raise ClientError(
            f"{len(skipped)} of {total} {name} images ({len(skipped) / total:.1%}) cannot be "
            f"used, more than max_bad_image_fraction={max_bad}: {listed}. Check that the .lst "
            f"paths are relative to the {name} channel root and the files are images."
        )
    if count == 0:
        raise ClientError(f"no usable {name} images")


def pack(
    entries: list[Entry],
    root: Path,
    *,
    name: str,
    settings: PackSettings,
    cache_dir: Path,
    workers: int,
    max_bad: float,
    stop: threading.Event | None = None,
    progress: bool = False,
) -> PackedSet:
    """Pack ``entries`` (paths relative to ``root``) into a RecordIO file, or reuse the cache.

    Raises:
        TrainingInterrupted: ``stop`` was set; nothing is left in the cache.
        ClientError: images too small for ``image_shape``, or more unusable images than
            ``max_bad`` allows.
    """
    key = _cache_key(entries, root, settings)
    final = cache_dir / f"{name}-{key}"
    manifest_path = final / MANIFEST_FILE
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        logger.info(
            "Using cached record file for %s (%d images): %s", name, manifest["count"], final
        )
        skipped = [tuple(s) for s in manifest["skipped"]]
        _check_outcome(name, len(entries), manifest["count"], skipped, [], settings, max_bad)
        return PackedSet(final / REC_FILE, final / IDX_FILE, manifest["count"], skipped)
    logger.info("Creating record files for %s (%d images, %d threads)", name, len(entries), workers)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir))
    try:
        stop = stop or threading.Event()
        count, skipped, too_small = _write(entries, root, settings, tmp, workers, progress, stop)
        _check_outcome(name, len(entries), count, skipped, too_small, settings, max_bad)
        artifacts.atomic_write_json(tmp / MANIFEST_FILE, {"count": count, "skipped": skipped})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        artifacts.fsync_directory(cache_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Done creating record files for %s: %d images", name, count)
    return PackedSet(final / REC_FILE, final / IDX_FILE, count, skipped)


def pack_record(index: int, labels: tuple[float, ...], encoded: bytes) -> bytes:
    """One record as ``ImageRecordIter`` reads it: MXNet's ``IRHeader`` (one label inline, or
    several before the image) and the encoded image."""
    return recordio.pack_labels(index, labels, encoded)


def count_records(
    rec: Path, *, max_pixels: int | None = None, stop: threading.Event | None = None
) -> tuple[int, int]:
    """Number of records in a RecordIO file and the label width of the first one.

    With ``max_pixels``, every record's image size is read from its header: MXNet's
    ``ImageRecordIter`` decodes these records itself, with no limit but its own.

    Raises:
        ClientError: a record's image is over ``max_pixels`` or over MXNet's own cap.
        TrainingInterrupted: ``stop`` was set.
    """
    count, width = 0, 1
    for item in recordio.read_file(rec):
        header, payload = recordio.unpack(item)
        if count == 0:
            width = max(1, int(header.flag))
        if max_pixels is not None:
            _check_record_size(rec, header.id, payload, max_pixels)
        count += 1
        if stop is not None and count % 256 == 0 and stop.is_set():
            raise TrainingInterrupted(f"stop requested while reading {rec.name}")
    return count, width


def _check_record_size(rec: Path, record_id: int, payload: bytes, max_pixels: int) -> None:
    try:
        width, height = images.image_size(payload)
    except images.ImageTooLarge:
        width, height = max_pixels + 1, 1  # over Pillow's own cap, so over ours too
    except images.BadImage:
        return  # ImageRecordIter reports undecodable records itself
    if width * height > max_pixels:
        raise ClientError(
            f"record {record_id} of {rec.name} holds a {width}x{height} image, more than "
            f"max_image_pixels={max_pixels}; downscale it, or raise max_image_pixels"
        )
    if width * height > MXNET_OPENCV_MAX_PIXELS:
        raise ClientError(
            f"record {record_id} of {rec.name} holds a {width}x{height} image: MXNet's "
            f"ImageRecordIter cannot decode images over {MXNET_OPENCV_MAX_PIXELS} pixels (a "
            f"fixed limit of the OpenCV inside MXNet). Give the images with a .lst file "
            f"instead: they are then resized once while packing"
        )


def read_labels(rec: Path) -> np.ndarray:
    """Every record's label(s), as an (N, width) array (for class-frequency loss weights)."""
    labels = [
        np.atleast_1d(np.asarray(recordio.unpack(item)[0].label, dtype=np.float32))
        for item in recordio.read_file(rec)
    ]
    return np.stack(labels)
