"""A CPU-side stand-in for a CUDA device, to catch on the CPU the bugs a first GPU run would meet.

Tensors live on PyTorch's ``meta`` device (shapes and dtypes, no data), which, like CUDA, refuses to mix with
CPU tensors other than 0-dim scalars. :class:`DeviceGuard`, a dispatch mode, watches every aten op:

- an op whose tensors sit on two devices raises :class:`DeviceMixError` naming the delusive line;
- a host synchronisation — reading a device value (``.item()``, ``float()``, ``bool()``, ``.tolist()``),
  ``nonzero`` (its output size depends on the data) or a device-to-host copy (``.cpu()``, ``.numpy()``) —
  raises :class:`HostSyncError` at its line in strict mode, or is recorded (and answered with a placeholder:
  0, or all rows) when ``allow_syncs`` is set, so a path can be counted rather than stopped;
- host-to-device copies are counted (``copies``), so a test can require none per training step.

:func:`device_generators` patches ``delusive.runtime`` so that a generator asked for on the meta device is a
marked CPU generator whose draws are made directly on the meta device (what a CUDA generator does), while draws
from ordinary CPU generators stay on the CPU and must be moved — and are counted — like on a GPU.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from delusive import runtime

DEVICE = torch.device("meta")
aten = torch.ops.aten
_SYNC_OPS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.is_nonzero.default,
             aten.equal.default, aten.masked_select.default}
_COPY_OPS = {aten._to_copy.default, aten.copy_.default}


class DeviceMixError(RuntimeError):
    """An op received tensors on two devices (CUDA raises here too)."""


class HostSyncError(RuntimeError):
    """A read of a device value inside a path that must not synchronise with the host."""


def delusive_line() -> str:
    """``file:line (function)`` of the innermost frame in delusive's sources or the tests."""
    for f in reversed(traceback.extract_stack()[:-2]):
        path = f.filename.replace("\\", "/")
        if ("/delusive/" in path or "/tests/" in path) and not path.endswith("/cuda_proxy.py"):
            return f"{path.split('/src/')[-1].split('/tests/')[-1]}:{f.lineno} ({f.name})"
    return "?"


def _devices(args: Any, kwargs: Any) -> set[torch.device]:
    flat, _ = tree_flatten((args, kwargs))
    return {t.device for t in flat if isinstance(t, torch.Tensor) and not (t.device.type == "cpu" and t.dim() == 0)}


class DeviceGuard(TorchDispatchMode):
    """Raise on device mixes; raise on (or record) host syncs of device tensors; count host-to-device copies."""

    def __init__(self, allow_syncs: bool = False) -> None:
        super().__init__()
        self.allow_syncs = allow_syncs
        self.syncs: list[str] = []
        self.copies: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        devs = _devices(args, kwargs)
        if func in _COPY_OPS:
            src = args[1] if func is aten.copy_.default else args[0]
            dst = args[0].device if func is aten.copy_.default else kwargs.get("device") or src.device
            if src.device.type == "meta" and torch.device(dst).type != "meta":
                return self._sync(f"device-to-host copy at {delusive_line()}",
                                  lambda: torch.zeros(args[0].shape if func is aten.copy_.default else src.shape,
                                                      dtype=kwargs.get("dtype") or src.dtype))
            if src.device.type != "meta" and torch.device(dst).type == "meta" and src.dim() > 0:
                self.copies.append(f"host-to-device copy of {tuple(src.shape)} at {delusive_line()}")
                if func is aten._to_copy.default:
                    return torch.empty(src.shape, dtype=kwargs.get("dtype") or src.dtype, device=DEVICE)
                return args[0]
        elif len(devs) > 1:
            raise DeviceMixError(f"{func} mixes devices {sorted(map(str, devs))} at {delusive_line()}")
        if func in _SYNC_OPS and any(d.type == "meta" for d in devs):
            first = next(t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor))
            if func is aten.nonzero.default:  # as if every row were selected
                fake = lambda: torch.arange(first.numel(), device=DEVICE).reshape(-1, 1)  # noqa: E731
            elif func is aten._local_scalar_dense.default:
                fake = lambda: False if first.dtype == torch.bool else 0  # noqa: E731
            else:
                fake = lambda: True  # noqa: E731
            return self._sync(f"{func} (reads the device) at {delusive_line()}", fake)
        return func(*args, **kwargs)

    def _sync(self, what: str, fake):  # type: ignore[no-untyped-def]
        if not self.allow_syncs:
            raise HostSyncError(f"host synchronisation: {what}")
        self.syncs.append(what)
        return fake()


_DEVICE_GENS: dict[int, torch.Generator] = {}


@contextlib.contextmanager
def device_generators(monkeypatch: Any) -> Iterator[None]:
    """Patch ``delusive.runtime`` so that meta-device generators exist and draw on the meta device."""
    real_gen = runtime.generator

    def generator(seed: int, device: Any = None) -> torch.Generator:
        if device is not None and torch.device(device).type == "meta":
            g = real_gen(seed)
            _DEVICE_GENS[id(g)] = g
            return g
        return real_gen(seed, device)

    def drawer(name: str, dtype_default: torch.dtype | None):  # type: ignore[no-untyped-def]
        real = getattr(runtime, name)

        def draw(*args: Any, **kwargs: Any) -> torch.Tensor:
            gen = kwargs.get("generator")
            if gen is None:
                gen = next((a for a in args if isinstance(a, torch.Generator)), None)
            if gen is None or id(gen) not in _DEVICE_GENS:
                return real(*args, **kwargs)
            if name in ("rand", "randn"):
                shape, dtype = args[0], kwargs.get("dtype", args[3] if len(args) > 3 else torch.float32)
            elif name == "randint":
                shape, dtype = args[2], torch.long
            else:
                shape, dtype = int(args[0]), torch.long
            t = torch.empty(runtime._shape(shape), dtype=dtype, device=DEVICE)
            device = kwargs.get("device", args[{"rand": 2, "randn": 2, "randint": 4, "randperm": 2}[name]]
                                if len(args) > {"rand": 2, "randn": 2, "randint": 4, "randperm": 2}[name] else None)
            return t if device is None else t.to(device)

        return draw

    monkeypatch.setattr(runtime, "generator", generator)
    for name in ("rand", "randn", "randint", "randperm"):
        monkeypatch.setattr(runtime, name, drawer(name, None))
    try:
        yield
    finally:
        _DEVICE_GENS.clear()
