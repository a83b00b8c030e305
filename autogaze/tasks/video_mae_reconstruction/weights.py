"""Loading task weights through an explicit key map; missing or unexpected keys raise.

Key map of a ``videomae.pt``-style state dict (after stripping one optional DDP ``module.`` prefix):

| file key                    | goes to                                                     |
|-----------------------------|-------------------------------------------------------------|
| ``mae.vit.*``, ``mae.decoder.*`` | ``task.mae`` (MultiScaleViTMAE), same names             |
| ``mae.dinov2_reg.<k>``      | the frozen ``Dinov2WithRegistersModel``, its state_dict key ``<k>`` |
| ``mae.siglip2.<k>``         | the frozen ``SiglipVisionModel``, its state_dict key ``<k>`` (``vision_model.*``) |
| ``mae.siglip2.text_model.*``, ``mae.siglip2.logit_*`` | ignored: text tower of a full SiglipModel, unused |
| feature keys of a loss the task does not use | ignored, logged                    |
| anything else               | unexpected                                                  |

The feature-model names are inferred from upstream's checkpoint layout: upstream attaches the transformers models to
its MAE module as ``dinov2_reg`` and ``siglip2``. A feature model already filled (from a local path or
an earlier file) is not reported missing when a file (e.g. our own checkpoint) lacks it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from .task import VideoMAEReconstruction

log = logging.getLogger(__name__)

MAE_PREFIX = "mae."
DDP_PREFIX = "module."
FEATURE_PREFIXES = {"dinov2_reg": "mae.dinov2_reg.", "siglip2": "mae.siglip2."}
IGNORED_PREFIXES = ("mae.siglip2.text_model.", "mae.siglip2.logit_scale", "mae.siglip2.logit_bias")
# Parameters a stock facebook/vit-mae-* checkpoint lacks (they start at zero, see embeddings.py).
NEW_MAE_PARAMS = ("vit.embeddings.scale_embed", "vit.embeddings.time_embed",
                  "decoder.decoder_scale_embed", "decoder.time_embed")


class WeightsError(RuntimeError):
    """A weights file that does not fit the model; the message lists the offending keys."""


@dataclass
class LoadReport:
    """What a load did. ``missing``/``unexpected`` are file-key names (with the ``mae.`` prefix)."""
    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    filled_feature_models: list[str] = field(default_factory=list)


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """A flat name -> tensor dict from ``.safetensors`` or a ``torch.save`` file (``.pt``/``.bin``);
    a dict holding it under ``state_dict``/``model`` is unwrapped."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict) and not isinstance(sd.get(key), Tensor):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors, got {type(sd).__name__}")
    return sd


def _strip_ddp(sd: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    n = sum(k.startswith(DDP_PREFIX) for k in sd)
    if n == 0:
        return sd
    if n != len(sd):
        raise WeightsError(f"{source}: {n} of {len(sd)} keys carry '{DDP_PREFIX}'; a file mixes both layouts")
    log.warning("%s: stripping the DDP '%s' prefix from all %d keys", source, DDP_PREFIX, n)
    return {k[len(DDP_PREFIX):]: v for k, v in sd.items()}


def _diff(model: nn.Module, sub: dict[str, Tensor], prefix: str, report: LoadReport) -> None:
    """Add missing/unexpected names to ``report``; raise at once on a shape mismatch."""
    own = model.state_dict()
    report.missing += [prefix + k for k in own if k not in sub]
    report.unexpected += [prefix + k for k in sub if k not in own]
    bad = [f"{prefix}{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
           for k, v in sub.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise WeightsError(f"{report.source}: shape mismatch (check the preset / max_num_frames / scales):\n  "
                           + "\n  ".join(bad[:20]))


def _raise_if(report: LoadReport, allow_missing: bool, allow_unexpected: bool) -> None:
    for kind, keys, allowed in (("missing", report.missing, allow_missing),
                                ("unexpected", report.unexpected, allow_unexpected)):
        if not keys:
            continue
        msg = f"{report.source}: {len(keys)} {kind} keys, e.g.\n  " + "\n  ".join(keys[:20])
        if not allowed:
            raise WeightsError(msg + f"\nFix: use the matching preset, or pass allow_{kind}=True on purpose")
        log.warning("%s (allowed by allow_%s)", msg, kind)


def _load_known(model: nn.Module, sub: dict[str, Tensor], strict: bool, assign: bool) -> None:
    own = model.state_dict().keys()
    model.load_state_dict({k: v for k, v in sub.items() if k in own}, strict=strict, assign=assign)


def load_task_state_dict(task: "VideoMAEReconstruction", sd: dict[str, Tensor], *, source: str = "<state dict>",
                         allow_missing: bool = False, allow_unexpected: bool = False,
                         assign: bool = False) -> LoadReport:
    """Load a ``videomae.pt``-layout dict into ``task.mae`` and its feature models (key map above)."""
    report = LoadReport(source)
    sd = _strip_ddp(sd, source)
    mae_sd: dict[str, Tensor] = {}
    feat_sd: dict[str, dict[str, Tensor]] = {name: {} for name in FEATURE_PREFIXES}
    for k, v in sd.items():
        if k.startswith(IGNORED_PREFIXES):
            report.ignored.append(k)
        elif feat := next((n for n, p in FEATURE_PREFIXES.items() if k.startswith(p)), None):
            feat_sd[feat][k[len(FEATURE_PREFIXES[feat]):]] = v
        elif k.startswith(MAE_PREFIX):
            mae_sd[k[len(MAE_PREFIX):]] = v
        else:
            report.unexpected.append(k)

    _diff(task.mae, mae_sd, MAE_PREFIX, report)
    to_fill = {}
    for name, sub in feat_sd.items():
        fl = task.feature_losses.get(name)
        if fl is None:
            if sub:
                log.info("%s: ignoring %d keys of the unused feature model %s", source, len(sub), name)
                report.ignored += [FEATURE_PREFIXES[name] + k for k in sub]
        elif sub:
            _diff(fl.model, sub, FEATURE_PREFIXES[name], report)
            to_fill[name] = sub
        elif not fl.is_pretrained:
            report.missing.append(f"{FEATURE_PREFIXES[name]}* (all keys: the {name} loss would use random weights)")
    _raise_if(report, allow_missing, allow_unexpected)

    # Lists were checked (or explicitly allowed) above: drop allowed unexpected keys, and be strict
    # unless missing keys were explicitly allowed.
    _load_known(task.mae, mae_sd, strict=not report.missing, assign=assign)
    for name, sub in to_fill.items():
        fl = task.feature_losses[name]
        _load_known(fl.model, sub, strict=not report.missing, assign=assign)
        fl.model.requires_grad_(False).eval()
        fl.source = source
        report.filled_feature_models.append(name)
    report.loaded = len(mae_sd) + sum(len(s) for s in to_fill.values())
    log.info("%s: loaded %d tensors (feature models filled: %s)", source, report.loaded,
             report.filled_feature_models or "none")
    return report


def load_stock_vit_mae(mae: nn.Module, weights_dir: str) -> LoadReport:
    """Initialise from a stock ``facebook/vit-mae-*`` directory (``ViTMAEForPreTraining`` keys
    ``vit.*``/``decoder.*``). Only the new scale/time tables may be missing; nothing unexpected."""
    for fname in ("model.safetensors", "pytorch_model.bin"):
        path = os.path.join(weights_dir, fname)
        if os.path.exists(path):
            break
    else:
        return LoadReport(weights_dir)  # config-only directory: keep the fresh initialisation
    report = LoadReport(path)
    sd = read_state_dict(path)
    _diff(mae, sd, "", report)
    report.missing = [k for k in report.missing if k not in NEW_MAE_PARAMS]
    _raise_if(report, allow_missing=False, allow_unexpected=False)
    mae.load_state_dict(sd, strict=False)  # only NEW_MAE_PARAMS can be absent (checked above)
    report.loaded = len(sd)
    log.info("%s: stock ViT-MAE weights loaded; new scale/time tables start at zero", path)
    return report
