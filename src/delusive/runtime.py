"""Where and how numbers are computed: device, generators, tensor creation, precision and memory layout.

This is the one device-aware helper of the package (``../shared/DESIGN.md``): every tensor and every random
generator is created here, so a CPU-only generator or a CPU tensor cannot slip into a GPU path (a static test
keeps other modules from calling the raw ``torch`` constructors).

Devices: ``auto`` picks CUDA when available, else Apple's MPS, else the CPU. Random generators live on the
device they serve, so a random start on a GPU costs no host-to-device copy; the same seed on the same device
gives the same draws (docs/devices.md lists what is bit-exact where). Only the loader's epoch order and
augmentation are drawn on the CPU, once per epoch, so every device sees the same data order.

Precision: ``auto`` is bf16 autocast on CUDA devices that support it and on CPUs with native bf16 (AMX /
AVX512-BF16), fp32 elsewhere: measured on this project's 2-core CPUs without bf16, autocast was 1.3-2.2x
*slower* (``../shared/CPU-NOTES.md``). Losses, gradient normalisation and projections stay in fp32.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch

PRECISIONS = ("fp32", "bf16", "auto")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"

Shape = int | Sequence[int] | torch.Size


# --- devices ---------------------------------------------------------------------------------------------
def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The device for ``name`` (``auto``/None: CUDA, else MPS, else CPU); an unavailable device is an error."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: expected {DEVICE_CHOICES}, got {name!r}") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: this PyTorch ({torch.__version__}) sees no CUDA device; "
                             "use --device cpu or auto")
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {name!r}: MPS is not available here; use --device cpu or auto")
        return torch.device("mps")
    raise ValueError(f"device: expected {DEVICE_CHOICES}, got {name!r}")


def device_of(module_or_tensor: torch.nn.Module | torch.Tensor) -> torch.device:
    """The device a model's parameters (or a tensor) live on (CPU for a model without parameters)."""
    if isinstance(module_or_tensor, torch.Tensor):
        return module_or_tensor.device
    for p in module_or_tensor.parameters():
        return p.device
    for b in module_or_tensor.buffers():
        return b.device
    return torch.device("cpu")


def describe_device(device: torch.device) -> dict[str, Any]:
    """What a result record says about where it ran."""
    d: dict[str, Any] = {"device": str(device), "type": device.type}
    if device.type == "cuda":
        d["name"] = torch.cuda.get_device_name(device)
    return d


def set_deterministic(device: torch.device, enabled: bool = True) -> None:
    """The process-wide CUDA switches of a run (no-op elsewhere: CPU runs are repeatable either way).

    ``enabled`` (``--deterministic``): cuDNN picks deterministic kernels without benchmark autotuning and TF32
    is off, so fp32 means fp32 and a rerun on the same GPU repeats its bits. Otherwise (the default, "fast"):
    cuDNN autotunes its kernels for each shape (``benchmark``) and fp32 matmuls/convolutions may use TF32
    tensor cores, as the reference code did; runs are then close but not bit-identical."""
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = bool(enabled)
        torch.backends.cudnn.benchmark = not enabled
        torch.backends.cuda.matmul.allow_tf32 = not enabled
        torch.backends.cudnn.allow_tf32 = not enabled
        if enabled:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


# --- generators and tensors ------------------------------------------------------------------------------
def generator(seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """A generator seeded with ``seed`` on ``device`` (CPU by default). Same seed, same device: same draws."""
    dev = torch.device("cpu") if device is None else torch.device(device)
    if dev.type == "mps":  # MPS generators arrived after torch 2.1; draw on the CPU and move
        dev = torch.device("cpu")
    return torch.Generator(device=dev).manual_seed(int(seed))


def _shape(shape: Shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


def _draw_device(gen: torch.Generator | None, device: torch.device | str | None) -> torch.device | None:
    """Where a draw happens: on the generator's device (its stream defines the draw), else on ``device``."""
    if gen is not None:
        return gen.device
    return None if device is None else torch.device(device)


def rand(shape: Shape, generator: torch.Generator | None = None, device: torch.device | str | None = None,
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """U[0, 1) draws of ``shape`` made on the generator's device, returned on ``device``."""
    t = torch.rand(_shape(shape), generator=generator, dtype=dtype, device=_draw_device(generator, device))
    return t if device is None else t.to(device)


def randn(shape: Shape, generator: torch.Generator | None = None, device: torch.device | str | None = None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, 1) draws of ``shape`` made on the generator's device, returned on ``device``."""
    t = torch.randn(_shape(shape), generator=generator, dtype=dtype, device=_draw_device(generator, device))
    return t if device is None else t.to(device)


def randint(low: int, high: int, shape: Shape, generator: torch.Generator | None = None,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Integers uniform in [low, high) (int64), drawn on the generator's device, returned on ``device``."""
    t = torch.randint(int(low), int(high), _shape(shape), generator=generator,
                      device=_draw_device(generator, device))
    return t if device is None else t.to(device)


def randperm(n: int, generator: torch.Generator | None = None,
             device: torch.device | str | None = None) -> torch.Tensor:
    """A random permutation of 0..n-1 (int64), drawn on the generator's device, returned on ``device``."""
    t = torch.randperm(int(n), generator=generator, device=_draw_device(generator, device))
    return t if device is None else t.to(device)


def zeros(shape: Shape, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.zeros(_shape(shape), dtype=dtype, device=device)


def ones(shape: Shape, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.ones(_shape(shape), dtype=dtype, device=device)


def full(shape: Shape, value: float | int | bool, device: torch.device | str | None = None,
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.full(_shape(shape), value, dtype=dtype, device=device)


def arange(n: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.long) -> torch.Tensor:
    return torch.arange(int(n), dtype=dtype, device=device)


def as_tensor(data: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``data`` (a numpy array, list or tensor) as a tensor on ``device`` (numpy arrays share memory on CPU)."""
    return torch.as_tensor(data, dtype=dtype, device=device)


# --- precision and layout --------------------------------------------------------------------------------
def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str | None = None) -> str:
    """``auto`` → ``bf16`` where the device computes it natively (CUDA with bf16, CPUs with AMX/AVX512-BF16,
    MPS), else ``fp32``; ``fp32``/``bf16`` are taken as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    dev = torch.device("cpu") if device is None else torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if dev.type == "mps":
        return "fp32"  # bf16 autocast on MPS needs macOS 14 + torch >= 2.5; fp32 is the safe choice
    return "bf16" if _cpu_has_bf16() else "fp32"


def autocast(precision: str, device: torch.device | str | None = None) -> contextlib.AbstractContextManager[None]:
    """Autocast context for ``precision`` on ``device``'s type (``fp32``: a no-op)."""
    dev = torch.device("cpu") if device is None else torch.device(device)
    if resolve_precision(precision, dev) == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format_for(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 else torch.contiguous_format


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images N×C×H×W in channels_last layout (the fast layout for CPU and tensor-core convolutions)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def prepare_model(model: torch.nn.Module, device: torch.device, channels_last: bool = True) -> torch.nn.Module:
    """Move ``model`` to ``device`` (in place) and, for conv nets, to the channels_last layout."""
    model.to(device)
    if channels_last and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
    return model


def maybe_compile(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``torch.compile(model)`` when asked and available (torch >= 2.0); otherwise the model unchanged.
    Measured here: compilation costs 5-19 s and was slower on these CPUs, so it is off by default."""
    if not enabled:
        return model
    compile_fn = getattr(torch, "compile", None)
    if compile_fn is None:  # pragma: no cover - torch < 2.0 is below the package's floor
        raise ValueError("--compile needs torch >= 2.0")
    return compile_fn(model)


@contextlib.contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Temporarily stop parameters requiring grad: attacks need input gradients only (1.15-1.45x faster)."""
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run with the model in eval mode (BN running stats, no dropout), restoring its mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def to_cpu(obj: Any) -> Any:
    """``obj`` (nested dicts/lists/tuples of tensors) with every tensor detached and moved to the CPU: how
    checkpoints are saved, so a file written on a GPU loads anywhere."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


# --- distributed data parallel (torchrun) ----------------------------------------------------------------
# ``torchrun --nproc-per-node N -m delusive train ...`` starts N processes with RANK, LOCAL_RANK and WORLD_SIZE
# set; these helpers are the only place the package touches torch.distributed (docs/scale.md). Without those
# variables every helper is the single-process identity (rank 0 of 1), so callers need no special case.
def distributed_requested() -> bool:
    """Whether this process was started by torchrun (or another launcher) as one rank of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    """Whether a process group is initialised with more than one rank."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(device: torch.device | str | None = None) -> bool:
    """Join the process group described by torchrun's environment (idempotent); return whether this run is
    distributed. The backend is nccl for CUDA and gloo for the CPU; on CUDA each rank uses ``cuda:LOCAL_RANK``
    (call this before :func:`resolve_device`, so ``auto`` picks that device)."""
    import torch.distributed as dist

    if not distributed_requested():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = None if device is None or str(device) == "auto" else torch.device(device)
    use_cuda = torch.cuda.is_available() and (dev is None or dev.type == "cuda")
    if use_cuda:
        if dev is not None and dev.index is not None and dev.index != local:
            raise ValueError(f"distributed run: rank with LOCAL_RANK {local} was given device {dev}; every rank "
                             f"uses cuda:LOCAL_RANK (start the process group before choosing the device)")
        torch.cuda.set_device(local)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_world_size() > 1


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes checkpoints, metrics and progress."""
    return rank() == 0


def shard_slice(n: int) -> slice:
    """This rank's contiguous part of a global batch of ``n`` examples (ranks take sizes differing by at most
    one, in rank order), so the ranks' parts of every batch are disjoint and together the whole batch."""
    w, r = world_size(), rank()
    base, extra = divmod(int(n), w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over all ranks, in place (the identity in a single process)."""
    if is_distributed():
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """Sum every parameter's gradient over the ranks, in one flat buffer (data-parallel SGD: each rank's loss
    is pre-weighted by its share of the global batch, so the sum is the global batch's mean gradient)."""
    if not is_distributed():
        return
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    all_reduce_sum(flat)
    offset = 0
    for p in params:
        k = p.numel()
        p.grad.copy_(flat[offset:offset + k].view_as(p.grad))
        offset += k


def broadcast_module(model: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (the same start everywhere)."""
    if not is_distributed():
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            buf = t.detach().contiguous()  # collectives want dense tensors; channels_last weights are not
            dist.broadcast(buf, src)
            t.copy_(buf)


def barrier() -> None:
    """Wait for every rank (the identity in a single process)."""
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()
