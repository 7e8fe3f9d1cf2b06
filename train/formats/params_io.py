"""MXNet's ``.params`` file (``mx.nd.save`` / ``mx.nd.load`` of a named NDArray list) with numpy
alone, so that a process without MXNet (the PyTorch engine) reads and writes model files.

:func:`save` writes the bytes ``mx.nd.save`` writes for CPU arrays of the same names, order and
dtypes; :func:`load` reads what any MXNet 1.x wrote (also GluonCV's files, whose names carry no
``arg:``/``aux:`` prefix, and arrays saved from a GPU: the device is not kept).

Layout (little-endian): ``u64 0x112``, ``u64 0``, ``u64 count``, each array, ``u64 count``, each
name as ``u64 length`` + UTF-8 bytes. An array: ``u32`` magic (V2 ``0xF993FAC9``; V3 ``…CA`` from
NumPy-shape mode; V1 ``…C8`` without the storage type; older files start with ``ndim``), ``i32``
storage type (0 = dense), ``u32 ndim`` + ``i64`` dims (``u32`` dims before V1), ``i32`` device
type + ``i32`` device id, ``i32`` mshadow type flag, the raw data in C order.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

_LIST_MAGIC = 0x112
_V1, _V2, _V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
_CPU = 1  # mshadow's device type for the CPU; device id 0
# mshadow type flags of the dtypes MXNet 1.9 saves (kFloat32 ... kBool).
_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("<f8"),
    2: np.dtype("<f2"),
    3: np.dtype("u1"),
    4: np.dtype("<i4"),
    5: np.dtype("i1"),
    6: np.dtype("<i8"),
    7: np.dtype("?"),
}
_FLAGS = {dtype: flag for flag, dtype in _DTYPES.items()}


class BadParamsFile(ValueError):
    """A file that is not a readable MXNet ``.params`` file; the message names the file."""


def save(path: Path | str, params: Mapping[str, np.ndarray]) -> None:
    """Write ``params`` as ``mx.nd.save(path, params)`` would (names in the mapping's order).

    Raises:
        ValueError: an array of a dtype MXNet cannot save, or a 0-d array (MXNet's legacy
            format reads it back as nothing: give it shape ``(1,)``).
    """
    Path(path).write_bytes(dumps(params))


def dumps(params: Mapping[str, np.ndarray]) -> bytes:
    """The bytes of :func:`save`."""
    parts = [struct.pack("<QQQ", _LIST_MAGIC, 0, len(params))]
    for name, value in params.items():
        array = np.asarray(value)
        flag = _FLAGS.get(array.dtype.newbyteorder("<"))
        if flag is None:
            raise ValueError(f"{name}: MXNet cannot save dtype {array.dtype}")
        if array.ndim == 0:
            raise ValueError(
                f"{name}: a 0-d array cannot be saved in MXNet's format; reshape to (1,)"
            )
        head = struct.pack(f"<IiI{array.ndim}q", _V2, 0, array.ndim, *array.shape)
        parts += [head, struct.pack("<iii", _CPU, 0, flag)]
        parts.append(np.ascontiguousarray(array, dtype=_DTYPES[flag]).tobytes())
    parts.append(struct.pack("<Q", len(params)))
    for name in params:
        encoded = name.encode()
        parts += [struct.pack("<Q", len(encoded)), encoded]
    return b"".join(parts)


def load(path: Path | str) -> dict[str, np.ndarray]:
    """The named arrays of an MXNet ``.params`` file, keys as stored (``arg:conv0_weight``,
    or GluonCV's unprefixed names), in file order.

    Raises:
        BadParamsFile: the file is truncated, corrupt, not a ``.params`` file, holds an
            unnamed list, or holds sparse arrays.
        OSError: the file cannot be read.
    """
    path = Path(path)
    return _Reader(path.read_bytes(), path).read_dict()


class _Reader:
    """A cursor over the file's bytes that names the file in every error."""

    def __init__(self, data: bytes, path: Path):
        self._data, self._path, self._pos = memoryview(data), path, 0

    def _fail(self, what: str) -> BadParamsFile:
        return BadParamsFile(f"{self._path} is not a usable MXNet .params file: {what}")

    def _take(self, size: int) -> memoryview:
        if size < 0 or self._pos + size > len(self._data):
            raise self._fail(
                f"truncated or corrupt (wanted {size} bytes at offset {self._pos}, "
                f"the file has {len(self._data)})"
            )
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def _unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))

    def read_dict(self) -> dict[str, np.ndarray]:
        magic, _reserved = self._unpack("<QQ")
        if magic != _LIST_MAGIC:
            raise self._fail(f"it does not start with MXNet's list magic 0x112 (found {magic:#x})")
        arrays = [self._array(i) for i in range(self._count("arrays"))]
        names = [
            self._take(self._count("name bytes")).tobytes() for _ in range(self._count("names"))
        ]
        if self._pos != len(self._data):
            raise self._fail(f"{len(self._data) - self._pos} unexpected bytes after the names")
        if len(names) != len(arrays):
            raise self._fail(
                f"{len(arrays)} arrays but {len(names)} names (an unnamed list is not a model's "
                "parameters)"
            )
        try:
            return dict(zip((n.decode() for n in names), arrays, strict=True))
        except UnicodeDecodeError:
            raise self._fail("a name is not UTF-8") from None

    def _count(self, what: str) -> int:
        (count,) = self._unpack("<Q")
        if count > len(self._data):
            raise self._fail(f"corrupt: {count} {what} announced in {len(self._data)} bytes")
        return count

    def _array(self, index: int) -> np.ndarray:
        (magic,) = self._unpack("<I")
        if magic in (_V2, _V3):
            (storage,) = self._unpack("<i")
            if storage != 0:
                raise self._fail(f"array {index} is sparse (storage type {storage})")
        if magic in (_V1, _V2, _V3):
            (ndim,) = self._unpack("<I")
            shape = self._unpack(f"<{ndim}q") if ndim < 64 else None
        else:  # before V1 the first word is ndim and dimensions are 32-bit
            ndim = magic
            shape = self._unpack(f"<{ndim}I") if ndim < 64 else None
        if shape is None or any(d < 0 for d in shape):
            raise self._fail(f"corrupt shape header for array {index}")
        if ndim == 0 and magic != _V3:  # MXNet's "none" array: nothing follows
            return np.zeros((0,), np.float32)
        _device_type, _device_id, flag = self._unpack("<iii")
        dtype = _DTYPES.get(flag)
        if dtype is None:
            raise self._fail(f"array {index} has unknown type flag {flag}")
        count = int(np.prod(shape, dtype=np.int64))
        raw = self._take(count * dtype.itemsize)
        return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
