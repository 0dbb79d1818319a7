"""What the reference checks of our attacks share: their command line, loading the trained model of a
``delusive train --out`` folder, the threat model, the test images, and torchattacks (Kim, 2020) imported from
a throwaway folder — it is never a dependency of the project (``pip install torchattacks`` would pull another
torch). Used by ``apgd_reference_check.py`` (APGD-CE) and ``fab_square_reference_check.py`` (FAB-T, Square)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from delusive import runtime
from delusive.data import load_dataset
from delusive.models import load_model
from delusive.threat import L2Ball, LinfBall, ThreatModel, default_budget, make_threat
from delusive.utils import read_json


@dataclass
class Setup:
    """A loaded check: torchattacks, the model in eval mode on its device, the threat, the test images."""

    ta: Any
    device: torch.device
    model: torch.nn.Module
    meta: dict[str, Any]
    dataset: str
    threat: ThreatModel
    x: torch.Tensor
    y: torch.Tensor

    def clean_logits(self, batch_size: int) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self.model(self.x[i : i + batch_size].to(self.device)).cpu()
                              for i in range(0, int(self.y.shape[0]), batch_size)])

    def torchattacks_norm(self) -> str:
        return "Linf" if isinstance(self.threat, LinfBall) else "L2"


def parser(description: str) -> argparse.ArgumentParser:
    """The options every check takes; a check adds its own (steps, queries, which attacks)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("run_dir", type=Path, help="a delusive train --out folder (model.safetensors + model.json)")
    p.add_argument("--torchattacks-path", required=True, type=Path,
                   help="folder holding the torchattacks package (pip install --no-deps --target DIR ...)")
    p.add_argument("--dataset", default=None, help="test set to use (default: the run's dataset, else fashion-mnist)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--limit", type=int, default=None, help="first N test images only (default: all)")
    p.add_argument("--norm", choices=("linf", "l2"), default=None)
    p.add_argument("--eps", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--tolerance", type=float, default=1.5, help="allowed |ours - theirs| in points (default 1.5)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    return p


def threat_of(args: argparse.Namespace, run_dir: Path, dataset: str) -> ThreatModel:
    """``--norm/--eps``, else the run's evaluation threat (config.json), else its defense's, else the dataset's
    default budget."""
    norm, eps = args.norm, args.eps
    config_path = run_dir / "config.json"
    if (norm is None or eps is None) and config_path.is_file():
        config = read_json(config_path)
        section = config.get("eval") or {}
        if not section.get("eps"):
            section = (config.get("defense") or {}).get("threat") or {}
        norm = norm or section.get("norm")
        eps = eps or section.get("eps_text") or section.get("eps")
    d_norm, d_eps = default_budget(dataset)
    return make_threat(norm or d_norm, str(eps or d_eps))


def load(p: argparse.ArgumentParser, args: argparse.Namespace, what: str) -> Setup:
    """Import torchattacks from ``--torchattacks-path`` and load everything a check compares on; a usage error
    (exit 2) names what is missing. ``what`` names the compared attacks in that error."""
    if not (args.torchattacks_path / "torchattacks").is_dir():
        p.error(f"--torchattacks-path {args.torchattacks_path}: no torchattacks package there; run "
                f"pip install --no-deps --target {args.torchattacks_path} torchattacks==3.5.1")
    sys.path.insert(0, str(args.torchattacks_path))
    import torchattacks as ta  # from the throwaway folder: never a project dependency

    device = runtime.resolve_device(args.device)
    runtime.set_deterministic(device)
    model, meta = load_model(args.run_dir)
    model.to(device).eval()
    dataset = args.dataset or meta.get("dataset") or "fashion-mnist"
    threat = threat_of(args, args.run_dir, dataset)
    if not isinstance(threat, LinfBall | L2Ball):
        p.error(f"only ℓ∞ and ℓ2 threat models can be compared (torchattacks has no masked {what})")
    x, y = load_dataset(dataset, "test", root=args.data_root).tensors()
    if args.limit is not None:
        x, y = x[: args.limit], y[: args.limit]
    return Setup(ta, device, model, meta, dataset, threat, x, y)


def finish(result: dict[str, Any], within: bool, json_path: Path | None) -> int:
    """Write the numbers if asked, print PASS/FAIL, and return the exit status (1 on FAIL)."""
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("PASS" if within else "FAIL")
    return 0 if within else 1
