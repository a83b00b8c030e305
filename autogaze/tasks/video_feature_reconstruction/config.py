"""The parsed ``task`` group of the video feature reconstruction task.

Task group keys (``autogaze/configs/task/video_feature_reconstruction.yaml``); upstream's names, plus
the ones marked "ours":

* ``vision_model``  the frozen tower: a local ``from_pretrained`` folder or a hub id already in the
  local Hugging Face cache (SigLIP / SigLIP2 or DINOv2-with-registers; the hub is never contacted),
  ``tiny-siglip`` / ``tiny-dinov2`` (random weights, for tests), or a ``.pt`` / ``.safetensors`` file
  of a trained VideoMAE reconstruction task (e.g. ``exps/demo_mae/checkpoint_latest_task.pt``).
* ``vision_model_config.{attn_type, max_embed_batch_size}``  the SigLIP / DINOv2 tower's gazed attention
  and embedding chunk; ``{scale_embed, time_embed, max_num_frames}`` and ours ``recon_model`` (preset or
  config path) describe a VideoMAE tower's architecture (stock towers have no such tables).
* ``recon_model_config``  the predictor: upstream's decoder keys ``decoder_num_attention_heads``,
  ``decoder_num_hidden_layers``, ``decoder_intermediate_size``, its ``scale_embed``, ``time_embed``,
  ``max_num_frames``, the loss (``loss_type`` '+'-joined from l2 and ours ln_l1, ``loss_weights``,
  ``<name>_loss_config`` empty) and ours: the encoder's ``hidden_size``, ``num_hidden_layers``,
  ``num_attention_heads``, ``intermediate_size``, plus ``decoder_hidden_size`` and ``patch_size``;
  null = the tower's own value.
* ``loss_weights.{gazed_patch_loss_weight, patch_reconstruction_loss_weight}``  weight of a target
  position covered / not covered by a real gaze of the context frame.
* ``layer_with_patch_loss`` / ``layer_with_reconstruction_loss``  which tower layer gives the targets
  (-1: the tower's output); the two must agree (one head predicts one target per position).
* ``recon_sample_rate``  fraction of frames predicted per forward; ``horizon`` (ours) 0 or 1.
* ``frame_independent_encoding``  the tower encodes every frame alone (attn_type frame_independent).
* ``use_flash_attn_vision_model``  flash-attn in the SigLIP / DINOv2 tower (falls back to sdpa);
  ``use_flash_attn`` is accepted and has no effect (the predictor's block-causal mask needs sdpa);
  ``use_grad_checkpointing``  recompute the predictor's layers in the backward pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autogaze.tasks.video_mae_reconstruction.config import ARCH_KEYS, _as_dict
from autogaze.utils.parsing import (ConfigError, check_choice, check_keys, parse_float_list, parse_scales,
                                    parse_str_list)

LOSS_TYPES = ("l2", "ln_l1")
TOWER_ATTN_TYPES = ("block_causal", "causal", "bidirectional", "frame_independent")
_TOP_KEYS = ("_target_", "vision_model", "vision_model_config", "recon_model_config", "loss_weights", "scales",
             "layer_with_patch_loss", "layer_with_reconstruction_loss", "use_flash_attn",
             "use_flash_attn_vision_model", "use_grad_checkpointing", "recon_sample_rate",
             "frame_independent_encoding", "horizon")
_TOWER_KEYS = ("scale_embed", "time_embed", "max_num_frames", "max_embed_batch_size", "attn_type", "recon_model")
_PREDICTOR_KEYS = ("scale_embed", "time_embed", "max_num_frames", "loss_type", "loss_weights",
                   *(f"{n}_loss_config" for n in LOSS_TYPES), *ARCH_KEYS)
_POSITION_WEIGHT_KEYS = ("gazed_patch_loss_weight", "patch_reconstruction_loss_weight")


@dataclass
class TowerConfig:
    """The frozen tower (``vision_model`` and ``vision_model_config``)."""
    source: str = "google/siglip2-base-patch16-224"
    attn_type: str = "block_causal"
    max_embed_batch_size: int | None = 64
    flash: bool = False
    layer: int = -1                  # -1: the tower's output; k: the output of layer k (before the final norm)
    mae_preset: str = "tiny"         # VideoMAE towers only: their architecture preset or config path
    scale_embed: bool = True         # VideoMAE towers only
    time_embed: bool = True          # VideoMAE towers only
    max_num_frames: int = 256        # VideoMAE towers only


@dataclass
class FeatureTaskConfig:
    """The parsed ``task`` group; see the module docstring for each key."""
    tower: TowerConfig = field(default_factory=TowerConfig)
    scales: list[int] = field(default_factory=lambda: [224])
    recon_sample_rate: float = 0.5
    horizon: int = 0
    losses: list[tuple[str, float]] = field(default_factory=lambda: [("l2", 1.0)])
    gazed_weight: float = 1.0
    ungazed_weight: float = 1.0
    scale_embed: bool = True
    time_embed: bool = True
    max_num_frames: int = 256
    arch_overrides: dict[str, int] = field(default_factory=dict)  # predictor dims given (null = the tower's)
    grad_checkpointing: bool = False


def _nonnegative(key: str, value: Any) -> float:
    v = float(value)
    if v < 0:
        raise ConfigError(key, value, "must be >= 0", f"e.g. {key}=1")
    return v


def _frames(key: str, value: Any) -> int:
    n = int(value)
    if n < 1:
        raise ConfigError(key, value, "must be >= 1", f"e.g. {key}=256")
    return n


def _parse_losses(rmc: dict) -> list[tuple[str, float]]:
    names = parse_str_list("task.recon_model_config.loss_type", rmc.get("loss_type", "l2"))
    weights = parse_float_list("task.recon_model_config.loss_weights", rmc.get("loss_weights", "1"))
    if not names or len(names) != len(weights):
        raise ConfigError("task.recon_model_config.loss_weights", rmc.get("loss_weights"),
                          f"needs one weight per loss type {names} (and at least one type)",
                          "e.g. loss_type=l2 loss_weights=1, or loss_type=l2+ln_l1 loss_weights=1+1")
    for name in names:
        check_choice("task.recon_model_config.loss_type", name, LOSS_TYPES)
        check_keys(f"task.recon_model_config.{name}_loss_config", _as_dict(rmc.get(f"{name}_loss_config")), ())
    return list(zip(names, weights))


def parse_feature_task_config(cfg: Any) -> FeatureTaskConfig:
    """Validate the Hydra ``task`` dict into a FeatureTaskConfig (unknown keys and bad values raise)."""
    cfg = _as_dict(cfg)
    check_keys("task", cfg.keys(), _TOP_KEYS)
    vmc, rmc = _as_dict(cfg.get("vision_model_config")), _as_dict(cfg.get("recon_model_config"))
    pw = _as_dict(cfg.get("loss_weights"))
    check_keys("task.vision_model_config", vmc.keys(), _TOWER_KEYS)
    check_keys("task.recon_model_config", rmc.keys(), _PREDICTOR_KEYS)
    check_keys("task.loss_weights", pw.keys(), _POSITION_WEIGHT_KEYS)

    rate = float(cfg.get("recon_sample_rate", 0.5))
    if not 0.0 < rate <= 1.0:
        raise ConfigError("task.recon_sample_rate", rate, "must be in (0, 1]", "e.g. task.recon_sample_rate=0.5")
    horizon = int(cfg.get("horizon", 0))
    if horizon not in (0, 1):
        raise ConfigError("task.horizon", horizon, "must be 0 (this frame) or 1 (the next frame)", "task.horizon=0")
    patch_layer = int(cfg.get("layer_with_patch_loss", -1))
    layer = int(cfg.get("layer_with_reconstruction_loss", -1))
    if patch_layer != layer:
        raise ConfigError("task.layer_with_patch_loss", patch_layer,
                          f"must equal layer_with_reconstruction_loss={layer}: one head predicts one target "
                          "per position, gazed or not", f"set both to {layer}")
    attn = check_choice("task.vision_model_config.attn_type", vmc.get("attn_type", "block_causal"), TOWER_ATTN_TYPES)
    if bool(cfg.get("frame_independent_encoding", False)):
        if attn not in ("block_causal", "frame_independent"):
            raise ConfigError("task.frame_independent_encoding", True,
                              f"contradicts vision_model_config.attn_type={attn}", "drop one of the two")
        attn = "frame_independent"
    embed_batch = vmc.get("max_embed_batch_size", 64)
    tower = TowerConfig(
        source=str(cfg.get("vision_model", TowerConfig.source)), attn_type=attn,
        max_embed_batch_size=None if embed_batch is None else _frames("task.vision_model_config.max_embed_batch_size",
                                                                      embed_batch),
        flash=bool(cfg.get("use_flash_attn_vision_model", False)), layer=layer,
        mae_preset=str(vmc.get("recon_model", "tiny")), scale_embed=bool(vmc.get("scale_embed", True)),
        time_embed=bool(vmc.get("time_embed", True)),
        max_num_frames=_frames("task.vision_model_config.max_num_frames", vmc.get("max_num_frames", 256)))
    gazed = _nonnegative("task.loss_weights.gazed_patch_loss_weight", pw.get("gazed_patch_loss_weight", 1))
    ungazed = _nonnegative("task.loss_weights.patch_reconstruction_loss_weight",
                           pw.get("patch_reconstruction_loss_weight", 1))
    if gazed == 0 and ungazed == 0:
        raise ConfigError("task.loss_weights", pw, "both position weights are 0: no position enters the loss",
                          "set patch_reconstruction_loss_weight=1")
    return FeatureTaskConfig(
        tower=tower, scales=parse_scales("task.scales", cfg.get("scales", "224")), recon_sample_rate=rate,
        horizon=horizon, losses=_parse_losses(rmc), gazed_weight=gazed, ungazed_weight=ungazed,
        scale_embed=bool(rmc.get("scale_embed", True)), time_embed=bool(rmc.get("time_embed", True)),
        max_num_frames=_frames("task.recon_model_config.max_num_frames", rmc.get("max_num_frames", 256)),
        arch_overrides={k: int(rmc[k]) for k in ARCH_KEYS if rmc.get(k) is not None},
        grad_checkpointing=bool(cfg.get("use_grad_checkpointing", False)))
