"""Read NVIDIA network pickles (`*.pkl`) as data, without importing or executing their code.

NVIDIA's `torch_utils.persistence` pickles every network module as a call
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
``meta = {type: "class", version, module_src: <python source>, class_name, state: <module __dict__>}``;
unpickling it with the standard `pickle` would `exec` `module_src`. Here a restricted unpickler maps
that name to a function that only wraps `meta` into a `PersistentRecord` (the source is never
executed; only its SHA-256 is kept), and resolves no other global than a short allow-list of data
constructors: tensors as torch pickles them (`torch._utils._rebuild_tensor_v2`,
`torch._utils._rebuild_parameter`, storages through `torch.storage._load_from_bytes`, whose bytes are
read with `torch.load(weights_only=True)`), numpy arrays and scalars of non-object dtypes,
`collections.OrderedDict`, `set` and `dnnlib.util.EasyDict` (read as a plain dict). Anything else
raises `UnsafePickleError` naming the refused global.

A network pickle is a dict with keys `G`, `D`, `G_ema`, `augment_pipe`, `training_set_kwargs`
(and sometimes progress counters); each network is a tree of records whose `state` holds
`_parameters`, `_buffers`, `_modules`, `_non_persistent_buffers_set` and the constructor arguments
`_init_args` / `_init_kwargs`.
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import UserError

_NUMPY_CORE = getattr(np, "_core", None) or np.core


class UnsafePickleError(UserError):
    """The pickle asks for something outside the allow-list; nothing of it was executed."""


@dataclass(frozen=True)
class PersistentRecord:
    """One NVIDIA persistent module, as data.

    Attributes:
        class_name: e.g. "Generator", "MappingNetwork".
        version: the persistence format version (NVIDIA writes 6).
        module_src_sha256: SHA-256 of the embedded source (never executed).
        state: the module's pickled `__dict__` (tensors, numbers, strings, nested records).
    """

    class_name: str
    version: int
    module_src_sha256: str
    state: dict

    @property
    def init_kwargs(self) -> dict:
        """The constructor kwargs the module was built with (EasyDicts become dicts)."""
        return _plain(self.state.get("_init_kwargs", {}))

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args", ()))

    def child(self, name: str) -> PersistentRecord:
        """The submodule record `name` (e.g. "synthesis"); raises UserError when missing."""
        child = self.state.get("_modules", {}).get(name)
        if not isinstance(child, PersistentRecord):
            raise UserError(
                f"the {self.class_name} record has no submodule {name!r}; the network pickle is not a StyleGAN generator"
            )
        return child

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of the whole tree, under dotted names like
        `torch.nn.Module.state_dict` gives them (`mapping.fc0.weight`, ...)."""
        tensors: dict[str, torch.Tensor] = {}
        non_persistent = set(self.state.get("_non_persistent_buffers_set", ()))
        for group in ("_parameters", "_buffers"):
            for name, value in self.state.get(group, {}).items():
                if value is None or name in non_persistent:
                    continue
                if not isinstance(value, torch.Tensor):
                    raise UserError(
                        f"{self.class_name}.{name} is a {type(value).__name__}, not a tensor; the network pickle is corrupt"
                    )
                tensors[name] = value.detach()
        for child_name, child in self.state.get("_modules", {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise UserError(
                    f"submodule {child_name!r} of {self.class_name} is not a persistent record; refusing it"
                )
            tensors.update({f"{child_name}.{key}": value for key, value in child.state_dict().items()})
        return tensors


class EasyDictData(dict):
    """Stand-in for `dnnlib.util.EasyDict` (a dict subclass): keeps the items, adds nothing."""


def _record_from_meta(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict):
        raise UnsafePickleError(f"persistent record metadata is a {type(meta).__name__}, expected a dict")
    expected = {"type", "version", "module_src", "class_name", "state"}
    if set(meta) != expected or meta["type"] != "class":
        raise UnsafePickleError(f"unexpected persistent record with keys {sorted(meta)} and type {meta.get('type')!r}")
    if not isinstance(meta["module_src"], str) or not isinstance(meta["class_name"], str):
        raise UnsafePickleError("persistent record has a non-string module_src or class_name")
    state = meta["state"] if meta["state"] is not None else {}
    if not isinstance(state, dict):
        raise UnsafePickleError(f"persistent record state is a {type(state).__name__}, expected a dict")
    digest = hashlib.sha256(meta["module_src"].encode()).hexdigest()
    return PersistentRecord(meta["class_name"], int(meta["version"]), digest, dict(state))


def _load_storage_from_bytes(data: bytes) -> Any:
    if not isinstance(data, bytes):
        raise UnsafePickleError("a tensor storage is not stored as bytes")
    return torch.load(io.BytesIO(data), weights_only=True)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if backward_hooks:
        raise UnsafePickleError("a tensor in the pickle carries backward hooks; refusing it")
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafePickleError(f"tensor storage is a {type(storage).__name__}, expected a torch storage")
    return torch._utils._rebuild_tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, torch.Tensor) or backward_hooks:
        raise UnsafePickleError("a parameter in the pickle is not plain tensor data; refusing it")
    return data


def _numpy_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError("numpy arrays of Python objects are not data; refusing them")
    return dtype


def _numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError("numpy array of a subclass; refusing it")
    return _NUMPY_CORE.multiarray._reconstruct(np.ndarray, shape, dtype_code)


def _numpy_scalar(dtype: np.dtype, data: bytes = b"") -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafePickleError("numpy scalar that is not plain data; refusing it")
    return _NUMPY_CORE.multiarray.scalar(dtype, data)


def _torch_dtype(name: str) -> torch.dtype | None:
    value = getattr(torch, name, None)
    return value if isinstance(value, torch.dtype) else None


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _record_from_meta,
    ("dnnlib.util", "EasyDict"): EasyDictData,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None and module == "torch":
            allowed = _torch_dtype(name)
        if allowed is None:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: only NVIDIA network records, tensors and plain data are read "
                "from network pickles (nothing in them is executed)"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("the pickle uses persistent ids, which NVIDIA network pickles do not; refusing it")


def read_network_pickle(path: str | Path) -> Any:
    """Unpickle `path` with the restricted unpickler; returns plain data with `PersistentRecord`s
    in place of NVIDIA's modules (for a network pickle: a dict with `G`, `D`, `G_ema`, ...).

    Raises:
        UnsafePickleError: the file asks for a global outside the allow-list.
        UserError: the file is not a readable pickle.
    """
    with open(path, "rb") as handle:
        try:
            return _RestrictedUnpickler(handle).load()
        except UserError:
            raise
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
            RuntimeError,
        ) as error:
            raise UserError(f"{path} is not a readable network pickle ({type(error).__name__}: {error})") from None


def _plain(value: Any) -> Any:
    """EasyDicts/OrderedDicts -> dict, tuples -> list, numpy scalars -> python numbers (recursively)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
