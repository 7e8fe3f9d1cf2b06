"""Read a weights file into ``{name: numpy array}`` without PyTorch.

GluonCV refuses to import beside torch >= 2, so torch is never in this product's environment:
safetensors files are read by the ``safetensors`` package's numpy API; a ``.pth`` file written by
``torch.save`` (a zip holding ``data.pkl`` whose tensors point at raw storage files under
``data/``) is read by an unpickler that accepts only the handful of globals a state_dict needs and
maps each storage to a numpy array; GluonCV ``.params`` files are read by MXNet.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np

# torch storage class name -> numpy dtype (little-endian, as torch.save writes them).
_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class UnreadableWeights(ValueError):
    """The file is not a weights file this product can read; the message says why."""


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    """``torch._utils._rebuild_tensor_v2``: a strided view into a storage, copied out."""
    if not size:
        return np.array(storage[offset])
    itemsize = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, *_ignored):
    return data


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a torch state_dict; any global other than the few it needs is refused."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise UnreadableWeights(
            f"the .pth file needs {module}.{name}, which a plain state_dict does not: save "
            "model.state_dict() rather than the model, or convert the file to safetensors"
        )

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or storage_type not in _STORAGE_DTYPES:
            raise UnreadableWeights(f"unsupported storage {storage_type!r} in the .pth file")
        if key not in self._storages:
            dtype = _STORAGE_DTYPES[storage_type]
            if dtype == "bfloat16":
                raise UnreadableWeights("bfloat16 tensors are not supported; save float32")
            raw = self._archive.read(f"{self._prefix}data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=dtype)
        return self._storages[key]


def read_pth(path: Path) -> dict[str, np.ndarray]:
    """A ``torch.save``'d state_dict (zip format, torch >= 1.6) as numpy arrays."""
    if not zipfile.is_zipfile(path):
        raise UnreadableWeights(
            f"{path} is not a zip-format .pth file (torch >= 1.6 writes those); re-save it with "
            "a recent torch, or convert it to safetensors"
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise UnreadableWeights(f"{path} holds no single data.pkl: not a torch.save file")
        prefix = pickles[0][: -len("data.pkl")]
        with archive.open(pickles[0]) as f:
            state = _StateDictUnpickler(f, archive, prefix).load()
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UnreadableWeights(f"{path} holds a {type(state).__name__}, not a state_dict")
    return {k: v for k, v in state.items() if isinstance(v, np.ndarray)}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file as numpy arrays."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnreadableWeights(f"{path} is not a readable safetensors file: {exc}") from None


def read_params(path: Path) -> dict[str, np.ndarray]:
    """An MXNet/GluonCV ``.params`` file as numpy arrays (``arg:``/``aux:`` prefixes dropped)."""
    import mxnet as mx

    try:
        loaded = mx.nd.load(str(path))
    except mx.base.MXNetError as exc:
        reason = str(exc).strip().splitlines()[-1].removeprefix("MXNetError: ")
        raise UnreadableWeights(f"{path} is not an MXNet .params file: {reason}") from None
    if not isinstance(loaded, dict):
        raise UnreadableWeights(f"{path} holds unnamed arrays, not named parameters")
    return {k.split(":", 1)[-1]: v.asnumpy() for k, v in loaded.items()}


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """Any supported file, by its content: safetensors, a torch zip, or MXNet ``.params``."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK"):
        return read_pth(path)
    if path.suffix == ".safetensors" or (len(head) > 8 and head[8:9] == b"{"):
        return read_safetensors(path)
    return read_params(path)
