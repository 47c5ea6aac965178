"""Save and load fitted models as a single ``.npz`` file, without pickle.

The file holds the arrays plus one ``__meta__`` entry: UTF-8 JSON (as uint8) describing the object tree,
each object by its registered class name, its ``__init__`` parameters and its fitted state. Loading
only instantiates classes registered by :class:`~mlmodels.core.base.Component`, so a file cannot run
code, and ``np.load(path, allow_pickle=False)`` reads it.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from mlmodels.core.base import Component, registered_class
from mlmodels.core.exceptions import ModelFormatError

FORMAT = "mlmodels.core/npz"
FORMAT_VERSION = 1
_META_KEY = "__meta__"

PathOrFile = str | os.PathLike[str] | IO[bytes]


def save_model(model: Component, file: PathOrFile, *, metadata: dict[str, Any] | None = None) -> None:
    """Write ``model`` (any registered component) and optional JSON-serializable ``metadata``."""
    if not isinstance(model, Component):
        raise TypeError(f"cannot save {type(model).__name__}: not an mlmodels component")
    arrays: dict[str, NDArray[Any]] = {}
    tree = _encode(model, arrays)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "model": tree, "metadata": metadata or {}}
    payload = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
    np.savez_compressed(file, **{_META_KEY: np.frombuffer(payload, dtype=np.uint8)}, **arrays)  # type: ignore[arg-type]


def load_model(file: PathOrFile) -> Any:
    """Rebuild a model written by :func:`save_model`; raises :class:`ModelFormatError` if it is not one."""
    return _read(file)[0]


def load_metadata(file: PathOrFile) -> dict[str, Any]:
    """The ``metadata`` dict stored next to the model."""
    return _read(file)[1]


def model_to_bytes(model: Component, *, metadata: dict[str, Any] | None = None) -> bytes:
    buffer = io.BytesIO()
    save_model(model, buffer, metadata=metadata)
    return buffer.getvalue()


def model_from_bytes(data: bytes) -> Any:
    return load_model(io.BytesIO(data))


def _read(file: PathOrFile) -> tuple[Any, dict[str, Any]]:
    try:
        with np.load(file, allow_pickle=False) as archive:
            if _META_KEY not in archive.files:
                raise ModelFormatError("not an mlmodels model file: no metadata entry")
            meta = json.loads(archive[_META_KEY].tobytes().decode("utf-8"))
            arrays = {name: archive[name] for name in archive.files if name != _META_KEY}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        if isinstance(error, ModelFormatError):
            raise
        raise ModelFormatError(f"cannot read model file: {error}") from error
    if meta.get("format") != FORMAT:
        raise ModelFormatError(f"unexpected format {meta.get('format')!r}")
    if meta.get("version", 0) > FORMAT_VERSION:
        raise ModelFormatError(f"model file version {meta['version']} is newer than this library supports")
    return _decode(meta["model"], arrays), meta.get("metadata", {})


def _encode(value: Any, arrays: dict[str, NDArray[Any]]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        if value.dtype.kind == "O":
            # Object arrays need pickle; strings and numbers round-trip through JSON instead.
            return {"__kind__": "object_array", "values": [_encode(v, arrays) for v in value.tolist()]}
        arrays[key] = value
        return {"__kind__": "ndarray", "key": key}
    if isinstance(value, np.dtype):
        return {"__kind__": "dtype", "name": value.name}
    if isinstance(value, type) and issubclass(value, np.generic):
        return {"__kind__": "dtype", "name": np.dtype(value).name}
    if isinstance(value, tuple):
        return {"__kind__": "tuple", "items": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return {
                "__kind__": "pairs",
                "items": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()],
            }
        return {"__kind__": "dict", "items": {k: _encode(v, arrays) for k, v in value.items()}}
    if isinstance(value, Component):
        return {
            "__kind__": "component",
            "class": type(value)._registry_name,
            "params": {k: _encode(v, arrays) for k, v in value.get_params(deep=False).items()},
            "state": {k: _encode(v, arrays) for k, v in value._get_state().items()},
        }
    raise TypeError(f"cannot save a value of type {type(value).__name__}")


def _decode(node: Any, arrays: dict[str, NDArray[Any]]) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if not isinstance(node, dict) or "__kind__" not in node:
        raise ModelFormatError("malformed model description")
    kind = node["__kind__"]
    if kind == "ndarray":
        try:
            return arrays[node["key"]]
        except KeyError:
            raise ModelFormatError(f"array {node['key']!r} missing from model file") from None
    if kind == "object_array":
        return np.array([_decode(v, arrays) for v in node["values"]], dtype=object)
    if kind == "dtype":
        return node["name"]
    if kind == "tuple":
        return tuple(_decode(v, arrays) for v in node["items"])
    if kind == "dict":
        return {k: _decode(v, arrays) for k, v in node["items"].items()}
    if kind == "pairs":
        return {_freeze(_decode(k, arrays)): _decode(v, arrays) for k, v in node["items"]}
    if kind == "component":
        cls = registered_class(node["class"])
        params = {k: _decode(v, arrays) for k, v in node["params"].items()}
        try:
            obj = cls(**params)
        except TypeError as error:
            raise ModelFormatError(f"cannot rebuild {node['class']}: {error}") from error
        obj._set_state({k: _decode(v, arrays) for k, v in node["state"].items()})
        return obj
    raise ModelFormatError(f"unknown node kind {kind!r}")


def _freeze(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key
