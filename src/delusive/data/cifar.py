"""CIFAR-10 python batches (``cifar-10-batches-py``) read through a restricted unpickler.

The official batches are pickles written by Python 2's cPickle (protocol 2): a dict with byte-string keys
(``b'data'``: uint8 N×3072, rows are R, G, B planes of 32×32; ``b'labels'``: list of int). A pickle can run
arbitrary code, so the unpickler here builds only plain containers, bytes, str, numbers and numpy arrays:
``find_class`` answers a short allow-list with *guarded stand-ins* (numpy's array rebuilding helpers,
``numpy.dtype`` for non-object dtypes, the latin-1 ``_codecs.encode`` that Python 3 uses to write bytes in
protocol 2), and refuses every other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, …)
before anything is called.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from delusive.data.errors import DataError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

try:  # numpy >= 2 keeps the helpers in numpy._core; numpy 1.x in numpy.core
    from numpy._core.multiarray import _reconstruct as _np_reconstruct  # type: ignore[attr-defined]
    from numpy._core.numeric import _frombuffer as _np_frombuffer  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct  # type: ignore[attr-defined,no-redef]
    from numpy.core.numeric import _frombuffer as _np_frombuffer  # type: ignore[attr-defined,no-redef]


class _NdarrayToken:
    """Stands in for the ``numpy.ndarray`` class: it can be passed to ``_reconstruct`` but not called."""


_NDARRAY = _NdarrayToken()


def _plain_dtype(dt: Any) -> np.dtype:
    if not isinstance(dt, np.dtype) or dt.hasobject:
        raise pickle.UnpicklingError(f"refusing dtype {dt!r}: only plain (non-object) dtypes are allowed")
    return dt


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype`` for a type code such as ``'u1'`` (str or bytes), never an object dtype."""
    if not isinstance(spec, str | bytes):
        raise pickle.UnpicklingError(f"refusing dtype spec of type {type(spec).__name__}")
    code = spec.decode("ascii") if isinstance(spec, bytes) else spec
    return _plain_dtype(np.dtype(code, bool(align), bool(copy)))


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` for a plain ndarray; the real shape and data arrive later via ``__setstate__``."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("refusing _reconstruct of anything but numpy.ndarray")
    return _np_reconstruct(np.ndarray, (0,), typecode)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's protocol-5 array rebuilder, for plain dtypes over an in-band buffer."""
    if not isinstance(buf, bytes | bytearray | pickle.PickleBuffer):
        raise pickle.UnpicklingError(f"refusing _frombuffer over {type(buf).__name__}")
    return _np_frombuffer(buf, _plain_dtype(dtype), tuple(int(s) for s in shape), str(order))


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
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


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
            return RestrictedUnpickler(f, encoding="bytes").load()
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
