"""L2C, the sixth attack of the paper's comparison (Sec. 5, Table 1 and Figure 7): Feng, Cai and Zhou,
NeurIPS 2019, "Learning to Confuse: Generating Training Time Adversarial Data with Auto-Encoder" (official
code kingfengji/DeepConfuse).

A generator g (``models/l2c_generator.py``, tanh output) maps each training image to δ(x) = Π_B(ε·g(x)), the
projection of ε·g(x) onto the threat model's ball (the identity under ℓ∞, where |ε·g(x)| ≤ ε already; a
rescaling under ℓ2). The poisoned set is clip(x + δ(x), 0, 1) with g, in eval mode, applied once to the
un-augmented training images. Labels never change.

g is trained by the authors' alternating scheme: f, an "imaginary victim" classifier, trains on data perturbed
by g, and g learns to raise f's loss on *clean* data along f's training trajectory:

    for each of ``trials`` trials:
        f ← a freshly initialised ``classifier``;  ĝ ← a frozen copy of g (eval mode)
        for ``classifier_epochs`` epochs, for every batch (x, y) of a seeded shuffle:
            θ' = θ − α·∇_θ CE(f_θ(clip(x + δ_g(x))), y)       pseudo-update of f, differentiable in g
            g  ← Adam step (``generator_lr``) on −CE(f_θ'(x), y)   clean loss after the pseudo-update
            θ  ← θ − α·∇_θ CE(f_θ(clip(x + δ_ĝ(x))), y)       f's real SGD step (α = ``classifier_lr``)

The pseudo-update is the authors' one-step unrolled SGD update: the gradient of the outer loss reaches g
through ∇_θ (second-order terms included, ``create_graph=True``), with f run on explicit parameter tensors
(``torch.func.functional_call``). f follows its own trajectory on the frozen ĝ's data, as in the authors'
code (``atkmodel`` / ``tgtmodel``), which they describe as decoupling the alternating updates for stability.

Where we differ from the authors' code, and why:

- The final generator is the last one. The authors keep the generator whose scratch-trained classifier has
  the lowest *clean test* accuracy after each trial; an attack here never sees test data.
- ℓ2 and region-masked budgets are supported by projecting ε·g(x) onto the ball (the authors use ℓ∞ only).
- ĝ's perturbations of the whole training set are computed once per trial rather than once per batch (ĝ is
  frozen and in eval mode within a trial, so they are the same perturbations): a speed-up.
- The pseudo-update's forward passes use copies of f's BatchNorm buffers; f stays in train mode throughout
  crafting, so its running statistics never enter any computation and the results are unaffected.
- Batches come from a seeded permutation per (trial, epoch), so a run is reproducible and resumable; the
  authors shuffle with the global RNG.
- The classifier and generator come from our registries: ``vgg11`` (BN, global pooling, one linear head)
  stands for the authors' VGG-11 variant; for 28×28 images the CPU defaults (``attacks/defaults.py``) use a
  small U-Net and ``small-cnn`` instead of the authors' MNIST auto-encoder and LeNet (docs/attacks.md).

Crafting checkpoints the whole training state (g, ĝ, f, Adam's moments, the step and the loss history)
into the artifact directory and resumes bit-for-bit after a kill. The trained generator is saved beside the
artifact (``generator.pt`` + ``generator.json``, loaded with ``weights_only=True``); passing its path as the
``generator`` parameter skips training.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from delusive import runtime
from delusive.attacks.base import ATTACKS, Attack, CraftResult
from delusive.attacks.resume import STATE, CraftCheckpoint, pack_tensors, unpack_tensors
from delusive.data import ArrayDataset
from delusive.models import (
    create_model,
    load_model,
    load_state_dict_file,
    model_hash,
    model_kind,
    model_names,
    save_model,
)
from delusive.threat import ThreatModel
from delusive.utils import config_hash, progress
from delusive.utils.seeding import derive_seed

GENERATOR_FILE = "generator.pt"
_SLOT_ARRAYS = ("f", "i")  # per checkpoint slot: the float32 and the int64 tensors, packed


@dataclass
class L2CResult(CraftResult):
    """What the other attacks return, plus ``extra`` (manifest entries: the generator's hash, architecture
    and training config; deterministic) and ``timing`` (seconds of ``train_generator_s`` and ``generate_s``,
    the split of the paper's Table 1; kept out of the manifest so equal seeds give identical bytes)."""

    extra: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    generator: nn.Module | None = None


# --- the pieces of one alternating update ----------------------------------------------------------------
def generator_delta(g: nn.Module, x: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """δ(x) = Π_B(ε·g(x)): inside the threat model's ball for any input, since |g(x)| ≤ 1 per pixel."""
    return threat.project_delta(threat.eps * g(runtime.to_channels_last(x)).float())


def pseudo_updated_clean_loss(classifier: nn.Module, g: nn.Module, threat: ThreatModel, x: torch.Tensor,
                              y: torch.Tensor, lr: float) -> torch.Tensor:
    """CE(f_θ'(x), y) on the clean batch, θ' = θ − lr·∇_θ CE(f_θ(clip(x + δ_g(x))), y): the authors'
    pseudo-update, differentiable in g's weights through the inner gradient (second order included)."""
    params = dict(classifier.named_parameters())
    buffers = {k: b.clone() for k, b in classifier.named_buffers()}
    xp = torch.clamp(x + generator_delta(g, x, threat), 0.0, 1.0)
    inner = F.cross_entropy(functional_call(classifier, {**params, **buffers}, (runtime.to_channels_last(xp),)), y)
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
    fast = {k: p - lr * gr for (k, p), gr in zip(params.items(), grads, strict=True)}
    buffers = {k: b.clone() for k, b in classifier.named_buffers()}
    return F.cross_entropy(functional_call(classifier, {**fast, **buffers}, (runtime.to_channels_last(x),)), y)


def generator_step(g: nn.Module, optimizer: torch.optim.Optimizer, classifier: nn.Module, threat: ThreatModel,
                   x: torch.Tensor, y: torch.Tensor, lr: float, precision: str = "fp32") -> torch.Tensor:
    """One update of g that *raises* the clean loss after f's pseudo-update; returns that loss before it (a
    detached device tensor: reading it would synchronise with the host every step)."""
    with runtime.autocast(precision, x.device):
        loss = pseudo_updated_clean_loss(classifier, g, threat, x, y, lr)
    params = list(g.parameters())
    grads = torch.autograd.grad(-loss, params)
    for p, gr in zip(params, grads, strict=True):
        p.grad = gr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def classifier_step(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float,
                    precision: str = "fp32") -> torch.Tensor:
    """f's plain SGD step θ ← θ − lr·∇_θ CE(f_θ(x), y) (the authors' optimiser: SGD without momentum); returns
    the loss before the step as a detached device tensor."""
    params = list(classifier.parameters())
    with runtime.autocast(precision, x.device):
        logits = classifier(runtime.to_channels_last(x))
    loss = F.cross_entropy(logits.float(), y)
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, gr in zip(params, grads, strict=True):
            p.sub_(gr, alpha=lr)
    return loss.detach()


def all_deltas(g: nn.Module, x: torch.Tensor, threat: ThreatModel, chunk: int = 1024) -> torch.Tensor:
    """δ(x) of every image (g in eval mode, no gradient), on g's device, in fixed chunks (same bytes on reruns)."""
    dev = runtime.device_of(g)
    parts = []
    with runtime.eval_mode(g), torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            parts.append(generator_delta(g, x[s:s + chunk].to(dev), threat).contiguous())
    return torch.cat(parts) if parts else torch.zeros_like(x, device=dev)


def poison_with_generator(g: nn.Module, x: torch.Tensor, threat: ThreatModel, chunk: int = 1024) -> np.ndarray:
    """clip(x + δ(x), 0, 1) for every image, as float32 N×C×H×W on the CPU."""
    out = np.empty(tuple(x.shape), dtype=np.float32)
    dev = runtime.device_of(g)
    with runtime.eval_mode(g), torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            xb = x[s:s + chunk].to(dev)
            out[s:s + chunk] = torch.clamp(xb + generator_delta(g, xb, threat), 0.0, 1.0).cpu().contiguous().numpy()
    return out


#: DeepConfuse's CIFAR-10 U-Net (CIFAR/models/unet.py) names its blocks; ``l2c-unet`` is the same network
UNET_KEYS = {"dconv_down1": "down.0", "dconv_down2": "down.1", "dconv_down3": "down.2", "dconv_down4": "down.3",
             "dconv_up3": "up.0", "dconv_up2": "up.1", "dconv_up1": "up.2", "conv_last": "head"}


def _authors_layout(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor], int]:
    """(our arch, the state dict under our key names, input channels) of one of the authors' generators."""
    if any(k.startswith("dconv_down1.") for k in state):
        renamed = {}
        for k, v in state.items():
            head, _, rest = k.partition(".")
            renamed[f"{UNET_KEYS.get(head, head)}.{rest}"] = v
        w = state.get("dconv_down1.0.weight")
        return "l2c-unet", renamed, int(w.shape[1]) if isinstance(w, torch.Tensor) and w.dim() == 4 else 3
    return "l2c-mnist-ae", dict(state), 1


def load_authors_generator(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The authors' released generators, bare ``torch.save(state_dict)`` files of kingfengji/DeepConfuse, read with
    ``weights_only=True`` (no pickled code runs) and loaded key for key: the MNIST autoencoder
    (MNIST/pretrained/atkmnist_best.pt, ε 0.3) into ``l2c-mnist-ae``, the CIFAR-10 U-Net
    (CIFAR/pretrained/atk.0.032.best.pth, ε 0.032; blocks ``dconv_down1``… renamed) into ``l2c-unet``."""
    p = Path(path)
    state = load_state_dict_file(p, "generator state dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"generator: {p} is not a state dict (a mapping of names to tensors)")
    arch, state, channels = _authors_layout(state)
    size = (28, 28) if arch == "l2c-mnist-ae" else (32, 32)
    g = create_model(arch, 10, channels, size, seed=0)
    expected = set(g.state_dict())
    # state dicts saved before torch 0.4.1 lack BatchNorm's num_batches_tracked counters; nothing reads them
    missing = {k for k in expected - set(state) if not k.endswith("num_batches_tracked")}
    unexpected = set(state) - expected
    if missing or unexpected:
        raise ValueError(f"generator: {p} is neither an L2C generator saved by delusive (no "
                         f"{p.with_suffix('.json').name} beside it) nor one of the authors' generators (their MNIST "
                         f"autoencoder or CIFAR-10 U-Net state dict; keys differ from {arch}'s: {len(missing)} "
                         f"missing, {len(unexpected)} unexpected, e.g. {sorted(missing | unexpected)[:3]})")
    try:
        g.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ValueError(f"generator: {p}: tensor shapes differ from the authors' {arch} "
                         f"({' '.join(str(e).split())[:200]})") from None
    g.eval()
    return g, {"arch": arch, "num_classes": 10, "in_channels": channels, "image_size": list(size),
               "format": "deepconfuse-state-dict"}


def load_generator(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A generator saved by L2C (``generator.pt``, or the artifact directory holding it), hash-checked and
    loaded with ``weights_only=True``; a model of another kind is refused. A ``.pt``/``.pth`` file with no
    description beside it is read as the authors' released generator (:func:`load_authors_generator`)."""
    p = Path(path)
    if p.is_dir() and (p / GENERATOR_FILE).exists():
        p = p / GENERATOR_FILE
    if p.is_file() and not p.with_suffix(".json").exists():
        return load_authors_generator(p)
    model, meta = load_model(p)
    kind = model_kind(meta["arch"])
    if kind != "generator":
        raise ValueError(f"generator: {p} holds a {kind} ({meta['arch']!r}), not an L2C generator")
    return model, meta


# --- checkpoint packing: every state tensor into one float32 and one int64 array -------------------------
def _state_tensors(g: nn.Module, snap: nn.Module, f: nn.Module, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    ts = [*g.state_dict().values(), *snap.state_dict().values(), *f.state_dict().values()]
    for p in g.parameters():
        st = opt.state[p]
        ts += [st["exp_avg"], st["exp_avg_sq"], st["step"]]
    return ts


def _init_adam_state(opt: torch.optim.Optimizer) -> None:
    """Adam's per-parameter state as its first step would create it, ready to be overwritten from a checkpoint."""
    for group in opt.param_groups:
        for p in group["params"]:
            opt.state[p] = {"step": runtime.zeros((), torch.device("cpu")),
                            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}


def _slot_names(slot: int) -> dict[str, str]:
    return {a: f"l2c{slot}_{a}" for a in _SLOT_ARRAYS}


# --- the attack ------------------------------------------------------------------------------------------
@ATTACKS.register("L2C")
class L2C(Attack):
    """Learning to Confuse (Feng et al. 2019): a trained generator's perturbations. Defaults: the authors'
    CIFAR-10 settings (``kingfengji/DeepConfuse`` CIFAR/train.py); ``attacks/defaults.py`` has the CPU ones.

    Set on the instance (not hyperparameters, not in the manifest): ``device`` (where to train when no model
    is passed; a model passed to :meth:`craft` is used only for its device), ``checkpoint_every_s`` and
    ``on_step`` (called with the number of finished steps after each step, e.g. for progress or to stop) and
    ``precision`` (fp32, bf16 or auto: autocast of the forward passes; a part of the generator's identity when
    not fp32). Training reads nothing from the device per step: the losses are summed there and checked for
    NaN every ``_CHECK_EVERY`` steps, at checkpoints and at the end of every trial.
    """

    name = "L2C"
    needs_model = False

    def __init__(self, trials: int = 1000, classifier_epochs: int = 20, batch_size: int = 256,
                 classifier_lr: float = 0.01, generator_lr: float = 1e-4, classifier: str = "vgg11",
                 generator_arch: str = "l2c-unet", generator: str | None = None) -> None:
        for key, value in (("trials", trials), ("classifier_epochs", classifier_epochs), ("batch_size", batch_size)):
            if int(value) < 1:
                raise ValueError(f"{key}: must be >= 1, got {value}")
        for key, value in (("classifier_lr", classifier_lr), ("generator_lr", generator_lr)):
            if not float(value) > 0 or not math.isfinite(float(value)):
                raise ValueError(f"{key}: must be a finite number > 0, got {value}")
        for key, value, kind in (("classifier", classifier, "classifier"), ("generator_arch", generator_arch,
                                                                            "generator")):
            try:
                actual = model_kind(value)
            except ValueError as e:
                raise ValueError(f"{key}: {e}") from None
            if actual != kind:
                raise ValueError(f"{key}: {value!r} is a {actual}, not a {kind} "
                                 f"({', '.join(model_names(kind))})")
        self.trials, self.classifier_epochs, self.batch_size = int(trials), int(classifier_epochs), int(batch_size)
        self.classifier_lr, self.generator_lr = float(classifier_lr), float(generator_lr)
        self.classifier, self.generator_arch = str(classifier), str(generator_arch)
        self.generator = None if generator is None else str(generator)
        self.device: str | torch.device = "cpu"
        self.precision = "fp32"  # autocast of every forward pass (``--precision``); part of the generator's identity
        self.checkpoint_every_s: float | None = None  # None: CraftCheckpoint's default ($DELUSIVE_CHECKPOINT_EVERY_S)
        self.on_step: Callable[[int], None] | None = None

    def train_config(self) -> dict[str, Any]:
        """The hyperparameters that define the trained generator (all but the ``generator`` path)."""
        return {k: v for k, v in self.params().items() if k != "generator"}

    def craft(self, train, threat, model, seed=0, work_dir=None):  # type: ignore[no-untyped-def]
        device = runtime.device_of(model) if model is not None else runtime.resolve_device(self.device)
        c, h, w = train.shape
        t0 = time.perf_counter()
        if self.generator is None:
            g, meta = self._train_generator(train, threat, int(seed), work_dir, device)
            train_s = float(meta.pop("train_s"))
        else:
            g, meta = load_generator(self.generator)
            if int(meta["in_channels"]) != c:
                raise ValueError(f"generator: {self.generator} was built for {meta['in_channels']}-channel images, "
                                 f"the training set has {c}")
            g = runtime.prepare_model(g, device)
            meta = {k: v for k, v in meta.items() if k not in ("arch", "num_classes", "in_channels", "image_size",
                                                                 "weights_sha256")}
            train_s = 0.0
        t1 = time.perf_counter()
        x, _ = train.tensors()
        poisoned = poison_with_generator(g, x, threat)
        generate_s = time.perf_counter() - t1
        arch = str(getattr(g, "arch", self.generator_arch))
        if work_dir is not None:
            save_model(g, Path(work_dir) / GENERATOR_FILE, {"arch": arch, "num_classes": train.num_classes,
                                                            "in_channels": c, "image_size": [h, w]}, meta)
        history = meta.get("history") or []
        extra = {"generator": {
            "arch": arch, "sha256": model_hash(g), "format": meta.get("format", "delusive"),
            "file": GENERATOR_FILE if work_dir is not None else None,
            "trained": self.generator is None, "source": self.generator,
            "train_config": meta.get("train_config"), "train_seed": meta.get("seed"),
            "train_threat": meta.get("threat"), "train_data_sha256": meta.get("data_sha256"),
            "last_trial": history[-1] if history else None,
        }}
        timing = {"train_generator_s": train_s, "load_generator_s": t1 - t0 if self.generator is not None else 0.0,
                  "generate_s": generate_s}
        return L2CResult(poisoned, extra=extra, timing=timing, generator=g)

    # --- training ----------------------------------------------------------------------------------------
    def _new_classifier(self, train: ArrayDataset, seed: int, trial: int, device: torch.device) -> nn.Module:
        c, h, w = train.shape
        f = create_model(self.classifier, train.num_classes, c, (h, w), seed=derive_seed(seed, "L2C", "f", trial))
        return runtime.prepare_model(f, device).train()

    def _train_generator(self, train: ArrayDataset, threat: ThreatModel, seed: int, work_dir: str | Path | None,
                         device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
        c, h, w = train.shape
        x_cpu, y_cpu = train.tensors()
        x_all, y_all = x_cpu.to(device), y_cpu.to(device)
        n = x_all.shape[0]
        bsz = min(self.batch_size, n)
        per_epoch = math.ceil(n / bsz)
        per_trial = self.classifier_epochs * per_epoch
        total = self.trials * per_trial
        g = runtime.prepare_model(create_model(self.generator_arch, train.num_classes, c, (h, w),
                                               seed=derive_seed(seed, "L2C", "generator")), device)
        snap = copy.deepcopy(g)
        f: nn.Module | None = None  # built at the start of every trial (or restored mid-trial)
        opt = torch.optim.Adam(g.parameters(), lr=self.generator_lr)
        precision = runtime.resolve_precision(self.precision, device)
        parts: list[object] = ["L2C", self.train_config(), threat.describe(), train.sha256(), seed]
        ident = config_hash(parts if precision == "fp32" else [*parts, precision])
        ckpt = CraftCheckpoint(work_dir, ident, every_s=self.checkpoint_every_s)
        start, slot, train_s_before = 0, 0, 0.0
        history: list[dict[str, float]] = []
        sums = _zero_sums(device)  # this trial: clean loss after the pseudo-update, f's poisoned loss, steps
        restored = ckpt.load()
        if restored is not None:
            arrays, state = restored
            where = Path(work_dir) / STATE  # type: ignore[arg-type]
            start, slot = state.get("step"), state.get("slot")
            # a step outside the schedule would silently give another artifact under the same manifest
            if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= total or slot not in (0, 1):
                raise ValueError(f"{where}: step {start!r} / slot {slot!r} outside this run's schedule (step 0 to "
                                 f"{total}, slot 0 or 1); delete it to start crafting afresh")
            f = self._new_classifier(train, seed, start // per_trial, device)
            _init_adam_state(opt)
            names = _slot_names(slot)
            try:
                unpack_tensors(_state_tensors(g, snap, f, opt), arrays[names["f"]], arrays[names["i"]],
                               "L2C checkpoint")
            except (KeyError, ValueError) as e:
                raise ValueError(f"{where}: {e}; delete it to start crafting afresh") from None
            history, train_s_before = list(state["history"]), float(state["train_s"])
            sums = _device_sums(list(state["sums"]), device)
        t0 = time.perf_counter()
        bar = progress(total=total, initial=start, desc="L2C generator", unit="step")
        perm: torch.Tensor | None = None
        snap_delta: torch.Tensor | None = None
        for step in range(start, total):
            trial, r = divmod(step, per_trial)
            epoch, b = divmod(r, per_epoch)
            if r == 0:
                if step > 0:
                    history.append(_trial_summary(trial - 1, _host_sums(sums)))
                    sums = _zero_sums(device)
                f = self._new_classifier(train, seed, trial, device)
                snap.load_state_dict(g.state_dict())
                snap_delta = None
            if snap_delta is None:
                snap_delta = all_deltas(snap, x_all, threat)
            if b == 0 or perm is None:
                order = runtime.generator(derive_seed(seed, "L2C", "order", trial, epoch))
                perm = runtime.randperm(n, order).to(device)
            idx = perm[b * bsz:(b + 1) * bsz]
            xb, yb = x_all[idx], y_all[idx]
            assert f is not None and snap_delta is not None
            g.train()
            clean_loss = generator_step(g, opt, f, threat, xb, yb, self.classifier_lr, precision)
            train_loss = classifier_step(f, torch.clamp(xb + snap_delta[idx], 0.0, 1.0), yb, self.classifier_lr,
                                         precision)
            sums = [sums[0] + clean_loss.to(sums[0].dtype), sums[1] + train_loss.to(sums[1].dtype), int(sums[2]) + 1]
            bar.update(1)
            done = step + 1
            save = done < total and ckpt.due()
            if save or done % _CHECK_EVERY == 0 or r + 1 == per_trial:  # one read of the sums, not one per step
                host = _host_sums(sums)
                if not (math.isfinite(host[0]) and math.isfinite(host[1])):
                    raise FloatingPointError(f"L2C: a loss became non-finite by step {done} of {total} (trial "
                                             f"{trial}: clean {host[0]}, poisoned {host[1]}); lower generator_lr "
                                             "or classifier_lr")
            if save:
                slot = 1 - slot
                fl, it = pack_tensors(_state_tensors(g, snap, f, opt))
                names = _slot_names(slot)
                ckpt.save({names["f"]: fl, names["i"]: it}, step=done, slot=slot, history=history,
                          sums=_host_sums(sums), train_s=train_s_before + time.perf_counter() - t0)
            if self.on_step is not None:
                self.on_step(done)
        if start < total:  # the trained generator, saved until the artifact is on disk and verified: a full disk
            slot = 1 - slot  # at generator.pt or images.npy then costs a rerun the generation, not the training
            fl, it = pack_tensors(_state_tensors(g, snap, f, opt))  # type: ignore[arg-type]
            names = _slot_names(slot)
            ckpt.save({names["f"]: fl, names["i"]: it}, step=total, slot=slot, history=history,
                      sums=_host_sums(sums), train_s=train_s_before + time.perf_counter() - t0)
        history.append(_trial_summary(self.trials - 1, _host_sums(sums)))
        bar.close()
        g.eval()
        meta = {"kind": "l2c-generator", "train_config": self.train_config(), "seed": seed,
                **({"precision": precision} if precision != "fp32" else {}),
                "threat": threat.describe(), "data_sha256": train.sha256(), "steps": total, "history": history,
                "train_s": train_s_before + time.perf_counter() - t0}
        return g, meta


_CHECK_EVERY = 100  # steps between reads of the summed losses (the NaN check)


def _sum_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _zero_sums(device: torch.device) -> list[Any]:
    return [runtime.zeros((), device, _sum_dtype(device)), runtime.zeros((), device, _sum_dtype(device)), 0]


def _device_sums(sums: list[Any], device: torch.device) -> list[Any]:
    """Checkpointed sums (floats) back on the device, in the dtype they are summed in."""
    return [runtime.full((), float(sums[0]), device, _sum_dtype(device)),
            runtime.full((), float(sums[1]), device, _sum_dtype(device)), int(sums[2])]


def _host_sums(sums: list[Any]) -> list[float]:
    a, b = torch.stack([sums[0], sums[1]]).tolist()
    return [a, b, int(sums[2])]


def _trial_summary(trial: int, sums: list[float]) -> dict[str, float]:
    k = max(int(sums[2]), 1)
    return {"trial": trial, "clean_loss_after_pseudo_update": sums[0] / k, "poisoned_train_loss": sums[1] / k}
