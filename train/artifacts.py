"""The model directory contract, shared by the trainer and the server.

The layout is the built-in algorithm's, so its tooling (and its models) keep working:
``image-classification-symbol.json``, ``image-classification-NNNN.params`` (4-digit epoch) and
``model-shapes.json``. This product adds ``classes.json`` (class names, label mode), the
resolved ``hyperparameters.json``, ``model-metadata.json`` (the input convention: see
``train.formats.metadata``) and ``model.onnx`` (the final model for ONNX Runtime: see
``train.formats.onnx``).
Every file is written atomically and durably (synced before and after its rename): neither a
crash nor a power loss leaves a half-written or empty file under a final name.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_PREFIX = "image-classification"
SYMBOL_FILE = f"{MODEL_PREFIX}-symbol.json"
SHAPES_FILE = "model-shapes.json"
CLASSES_FILE = "classes.json"
HYPERPARAMETERS_FILE = "hyperparameters.json"
METADATA_FILE = "model-metadata.json"  # input convention (train.formats.metadata)
ONNX_FILE = "model.onnx"  # the same model for ONNX Runtime (train.formats.onnx)
# The training report (train.insight.page), in output/data and beside the model, where the
# server's try-it page links it (serve.try_it).
REPORT_FILE = "report.html"
TMP_SUFFIX = ".tmp"
PARAMS_PATTERN = re.compile(rf"^{re.escape(MODEL_PREFIX)}-(\d{{4}})\.params$")


def params_file(epoch: int) -> str:
    """``image-classification-0003.params`` for epoch 3 (1-based, as the built-in numbers them)."""
    return f"{MODEL_PREFIX}-{epoch:04d}.params"


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    """Flush ``path``'s entries (a rename into it) to the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` then rename the temp file over ``path`` in one step.

    The temp file (``.<name>.XXXX.tmp``) sits in the same folder so the rename is atomic on
    POSIX file systems; its data is synced before the rename and the folder after it, so that
    after a power loss ``path`` holds either the old content or the new.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        # mkstemp creates 0600 files: give the model the usual 0644, so that a server running
        # as another user (compose's OIC_UID, a non-root container) can read it.
        os.chmod(tmp_path, 0o644)
        fsync_file(tmp_path)
        os.replace(tmp_path, path)
        fsync_directory(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temp files an interrupted :func:`atomic_write` left in ``directory`` or its
    sub-folders (a killed run's, which would otherwise end up in model.tar.gz or be synced to
    S3 with the checkpoints); returns their paths."""
    if not directory.is_dir():
        return []
    stale = sorted(p for p in directory.rglob(f".*{TMP_SUFFIX}") if p.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def params_epochs(model_dir: Path) -> list[int]:
    """Epoch numbers of every ``image-classification-NNNN.params`` file, ascending."""
    if not model_dir.is_dir():
        return []
    found = (PARAMS_PATTERN.match(p.name) for p in model_dir.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


@dataclass(frozen=True)
class ModelFiles:
    """Where the files of one saved model are, and what the server needs to know about it."""

    symbol: Path
    params: Path
    shapes: Path
    image_shape: tuple[int, int, int]
    classes: list[str] | None
    multi_label: bool


class MissingModelFiles(FileNotFoundError):
    """The model directory lacks required files; the message lists them."""


def locate_model(model_dir: Path) -> ModelFiles:
    """Find the newest params file and read the metadata of a model directory.

    Works on this product's models and on the built-in algorithm's (no ``classes.json``: class
    names are then indices). The input convention is decided by ``train.formats``.

    Raises:
        MissingModelFiles: naming every expected file that is absent.
    """
    missing = [name for name in (SYMBOL_FILE, SHAPES_FILE) if not (model_dir / name).is_file()]
    epochs = params_epochs(model_dir)
    if not epochs:
        missing.append(f"{MODEL_PREFIX}-NNNN.params")
    if missing:
        raise MissingModelFiles(
            f"model directory {model_dir} is missing: {', '.join(missing)} "
            f"(expected the files written by training: {SYMBOL_FILE}, "
            f"{MODEL_PREFIX}-NNNN.params, {SHAPES_FILE})"
        )
    image_shape = read_image_shape(model_dir / SHAPES_FILE)
    classes, multi_label = read_classes(model_dir / CLASSES_FILE)
    return ModelFiles(
        symbol=model_dir / SYMBOL_FILE,
        params=model_dir / params_file(epochs[-1]),
        shapes=model_dir / SHAPES_FILE,
        image_shape=image_shape,
        classes=classes,
        multi_label=multi_label,
    )


def shapes_document(image_shape: tuple[int, int, int], batch_size: int) -> list[dict[str, Any]]:
    """The ``model-shapes.json`` content: MXNet data descriptors, as the built-in writes them."""
    return [{"name": "data", "shape": [batch_size, *image_shape]}]


def read_image_shape(path: Path) -> tuple[int, int, int]:
    """``(channels, height, width)`` from a ``model-shapes.json`` file."""
    shapes = json.loads(path.read_text())
    data = next((d for d in shapes if d.get("name") == "data"), shapes[-1])
    channels, height, width = (int(v) for v in data["shape"][-3:])
    return channels, height, width


def read_classes(path: Path) -> tuple[list[str] | None, bool]:
    """Class names and label mode from ``classes.json``; ``(None, False)`` when absent."""
    if not path.is_file():
        return None, False
    doc = json.loads(path.read_text())
    return list(doc["classes"]), bool(doc.get("multi_label", False))


def classes_document(classes: list[str], multi_label: bool) -> dict[str, Any]:
    """The ``classes.json`` content."""
    return {"classes": classes, "multi_label": multi_label}
