"""Optional TensorBoard logging of a training run (``delusive train --log tensorboard``; the ``tensorboard``
extra). TensorBoard is imported only when asked for, so the package never needs it otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXTRA_HINT = "pip install 'delusive[tensorboard]' (or pip install tensorboard)"


def require_tensorboard() -> None:
    """Fail before any work when TensorBoard logging is asked for but the extra is not installed."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as e:
        raise ValueError(f"--log tensorboard: the tensorboard package is not installed ({e}); {EXTRA_HINT}") from None


def write_run(log_dir: str | Path, history: list[dict[str, Any]], metrics: dict[str, Any]) -> Path:
    """One scalar per numeric history column per epoch (train loss/accuracy, lr, per-epoch test and validation
    accuracies) and the final metrics at the last epoch, under ``log_dir`` (``tensorboard --logdir``)."""
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for row in history:
            epoch = int(row["epoch"])
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                    writer.add_scalar(f"epoch/{key}", float(value), epoch)
        last = int(history[-1]["epoch"]) if history else 0
        for key in ("natural_accuracy", "robust_accuracy", "train_time_s"):
            if isinstance(metrics.get(key), int | float):
                writer.add_scalar(f"final/{key}", float(metrics[key]), last)
    finally:
        writer.close()
    return log_dir
