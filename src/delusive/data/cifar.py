"""CIFAR-10 python batches (``cifar-10-batches-py``) read through a restricted unpickler.

The official batches are pickles written by Python 2's cPickle (protocol 2): a dict with byte-string keys
(``b'data'``: uint8 N×3072, rows are R, G, B planes of 32×32; ``b'labels'``: list of int). A pickle can run
arbitrary code, so the unpickler here builds only plain containers, bytes, str, numbers and numpy arrays.

``find_class`` answers a short allow-list (the names numpy's pickles use: ``numpy.core.multiarray.
_reconstruct``, ``numpy.ndarray``, ``numpy.dtype``, protocol 5's ``_frombuffer``; and ``_codecs.encode`` /
``bytes``, which Python 3 uses to write bytes in protocol 2) with inert stand-ins of our own, and refuses
every other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, …) before anything is called.
Array and dtype states are checked and turned into native-endian numeric arrays here; numpy's own
``__setstate__`` never sees the file's bytes, and no numpy callable is ever handed to the pickle.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from delusive.data.errors import DataError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_PLAIN_KINDS = "biufc"  # bool, signed, unsigned, float, complex: numbers only, never objects or structs


class _Frozen:
    """Base of the objects ``find_class`` hands out: a pickle's BUILD opcode cannot change them."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"refusing to set the state of {type(self).__name__}")


class _NdarrayToken(_Frozen):
    """Stands in for the ``numpy.ndarray`` class: it can be passed to ``_reconstruct`` but not called."""

    __slots__ = ()


class _Guarded(_Frozen):
    """One allowed callable, wrapped so that the pickle can call it but not modify it."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Any) -> None:
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, name: str, value: Any) -> None:
        raise pickle.UnpicklingError("refusing to modify an allowed callable")

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


_NDARRAY = _NdarrayToken()


class _DtypeStub:
    """Inert stand-in for ``numpy.dtype(code, align, copy)``; its pickled state is checked here, never handed
    to numpy (``dtype.__setstate__`` would accept attacker-chosen flags, e.g. mark ``u8`` as holding objects)."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.endian = "="

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] != 3:
            raise pickle.UnpicklingError("refusing dtype state: expected a version-3 state tuple")
        endian = state[1].decode("ascii") if isinstance(state[1], bytes) else state[1]
        if endian not in ("<", ">", "|", "=") or any(v is not None for v in state[2:5]) or (
                len(state) == 9 and state[8] is not None) or state[7] != 0:
            raise pickle.UnpicklingError("refusing dtype state: only plain numeric dtypes are allowed")
        self.endian = endian

    def resolve(self) -> np.dtype:
        dt = np.dtype(self.code)
        return dt.newbyteorder(self.endian) if self.endian in "<>" and dt.itemsize > 1 else dt


class _ArrayStub:
    """Inert stand-in for an ndarray being unpickled; ``__setstate__`` checks the state, ``array`` builds it."""

    def __init__(self) -> None:
        self._array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise pickle.UnpicklingError("refusing ndarray state: expected (version, shape, dtype, fortran, data)")
        shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DtypeStub):
            raise pickle.UnpicklingError("refusing ndarray state: dtype was not built by numpy.dtype")
        self._array = _array_from(raw, dtype.resolve(), shape, "F" if fortran else "C")

    def array(self) -> np.ndarray:
        if self._array is None:
            raise pickle.UnpicklingError("an ndarray was never given its data")
        return self._array


def _array_from(raw: Any, dt: np.dtype, shape: Any, order: str) -> np.ndarray:
    """A native-endian copy of ``raw`` viewed as ``dt`` and ``shape``, after checking all three."""
    if not isinstance(raw, bytes | bytearray):
        raise pickle.UnpicklingError(f"refusing ndarray data of type {type(raw).__name__}")
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise pickle.UnpicklingError(f"refusing ndarray shape {shape!r}")
    if dt.kind not in _PLAIN_KINDS or dt.hasobject:
        raise pickle.UnpicklingError(f"refusing dtype {dt}: only numbers are allowed")
    if math.prod(shape) * dt.itemsize != len(raw):
        raise pickle.UnpicklingError(f"ndarray data has {len(raw)} bytes, shape {shape} of {dt} needs "
                                     f"{math.prod(shape) * dt.itemsize}")
    arr = np.frombuffer(raw, dtype=dt).reshape(shape, order=order)
    return arr.astype(dt.newbyteorder("="), order="C", copy=True)


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> _DtypeStub:
    """``numpy.dtype('u1', False, True)`` as pickled: only a type code of a plain numeric dtype."""
    code = spec.decode("ascii") if isinstance(spec, bytes) else spec
    if not isinstance(code, str) or len(code) > 8:
        raise pickle.UnpicklingError(f"refusing dtype spec {spec!r}")
    try:
        dt = np.dtype(code)
    except TypeError as e:
        raise pickle.UnpicklingError(f"refusing dtype spec {spec!r}") from e
    if dt.kind not in _PLAIN_KINDS or dt.hasobject:
        raise pickle.UnpicklingError(f"refusing dtype {code!r}: only numbers are allowed")
    return _DtypeStub(code)


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _ArrayStub:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` as pickled: the data arrives in the state."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("refusing _reconstruct of anything but numpy.ndarray")
    return _ArrayStub()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's protocol-5 array rebuilder, over an in-band buffer only."""
    if not isinstance(dtype, _DtypeStub) or order not in ("C", "F"):
        raise pickle.UnpicklingError("refusing _frombuffer arguments")
    return _array_from(buf, dtype.resolve(), shape, order)


def _encode(obj: Any, encoding: Any = "latin1") -> bytes:
    """How Python 3 writes ``bytes`` in a protocol-2 pickle: ``_codecs.encode(text, 'latin1')``. Nothing else."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than str -> latin-1 bytes")
    return obj.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    """How Python 3 writes ``b''`` in a protocol-2 pickle: ``bytes()``."""
    if args:
        raise pickle.UnpicklingError("refusing bytes(...) with arguments")
    return b""


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Guarded(_dtype),
    ("numpy.core.multiarray", "_reconstruct"): _Guarded(_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _Guarded(_reconstruct),
    ("numpy.core.numeric", "_frombuffer"): _Guarded(_frombuffer),
    ("numpy._core.numeric", "_frombuffer"): _Guarded(_frombuffer),
    ("_codecs", "encode"): _Guarded(_encode),
    ("__builtin__", "bytes"): _Guarded(_empty_bytes),
    ("builtins", "bytes"): _Guarded(_empty_bytes),
}
_SCALARS = (bytes, bytearray, str, int, float, bool, type(None), np.ndarray)


def _materialise(obj: Any, seen: dict[int, Any]) -> Any:
    """Replace the stand-ins by real arrays and dtypes; anything but plain data is an error."""
    if isinstance(obj, _ArrayStub):
        return obj.array()
    if isinstance(obj, _DtypeStub):
        return obj.resolve()
    if isinstance(obj, _SCALARS):
        return obj
    if id(obj) in seen:
        return seen[id(obj)]
    if isinstance(obj, list):
        seen[id(obj)] = obj
        obj[:] = [_materialise(v, seen) for v in obj]
        return obj
    if isinstance(obj, dict):
        seen[id(obj)] = obj
        if not all(isinstance(k, bytes | str | int) for k in obj):
            raise pickle.UnpicklingError("dict keys must be bytes, str or int")
        items = [(k, _materialise(v, seen)) for k, v in obj.items()]
        obj.clear()
        obj.update(items)
        return obj
    if isinstance(obj, tuple):
        out = tuple(_materialise(v, seen) for v in obj)
        seen[id(obj)] = out
        return out
    if isinstance(obj, set | frozenset) and all(isinstance(v, _SCALARS) for v in obj):
        return obj
    raise pickle.UnpicklingError(f"unexpected {type(obj).__name__} in the pickle")


class RestrictedUnpickler(pickle.Unpickler):
    """Builds plain containers, bytes, str, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids")


def safe_unpickle(path: str | Path) -> Any:
    """Load a pickle through :class:`RestrictedUnpickler` (``encoding='bytes'``: Python 2 ``str`` -> bytes).

    Any failure, a refused global included, becomes a :class:`DataError` naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _materialise(RestrictedUnpickler(f, encoding="bytes").load(), {})
    except OSError as e:
        raise DataError(path, f"cannot read ({e})") from e
    except Exception as e:  # untrusted bytes: every decoding failure (EOF, bad opcode, refused global) is "malformed"
        raise DataError(path, f"not a plain CIFAR-10 batch pickle ({type(e).__name__}: {e})") from e


def _get(d: dict, key: str) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N×3×32×32 and int64 labels (0..9) of one batch file."""
    path = Path(path)
    obj = safe_unpickle(path)
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a dict, got {type(obj).__name__}")
    try:
        data, labels = _get(obj, "data"), _get(obj, "labels")
    except KeyError as e:
        raise DataError(path, f"missing key {e}") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(path, f"'data' must be a uint8 array N×3072, got {desc}")
    if not isinstance(labels, list | tuple | np.ndarray) or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in labels):
        raise DataError(path, "'labels' must be a list of integers")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if y.shape[0] != data.shape[0]:
        raise DataError(path, f"{y.shape[0]} labels for {data.shape[0]} images")
    if y.size and (y.min() < 0 or y.max() > 9):
        bad = int(np.flatnonzero((y < 0) | (y > 9))[0])
        raise DataError(path, f"label {int(y[bad])} at index {bad} is out of range [0, 10)")
    return data.reshape(-1, 3, 32, 32).copy(), y


def read_meta(path: str | Path) -> tuple[str, ...]:
    """Class names from ``batches.meta`` (``b'label_names'``)."""
    path = Path(path)
    obj = safe_unpickle(path)
    try:
        names = _get(obj, "label_names") if isinstance(obj, dict) else None
    except KeyError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise DataError(path, "expected a dict with 'label_names', a list of strings")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def read_cifar10(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``train`` (``data_batch_1..5``) or ``test`` (``test_batch``) split of a ``cifar-10-batches-py`` folder."""
    if split not in ("train", "test"):
        raise ValueError(f"split: CIFAR-10 has splits train, test, got {split!r}")
    files = TRAIN_FILES if split == "train" else TEST_FILES
    parts = [read_batch(Path(folder) / f) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
