"""The parsed ``task`` group of the slot attention task.

Task group keys (``autogaze/configs/task/slot_attention.yaml``):

* The frozen tower, with the feature task's keys and rules (parsed by that task's own parser):
  ``vision_model``, ``vision_model_config.{attn_type, max_embed_batch_size, scale_embed, time_embed,
  max_num_frames, recon_model}``, ``use_flash_attn_vision_model``, ``frame_independent_encoding`` and
  ``layer_with_reconstruction_loss`` (the tower layer whose features are both the slot inputs and the
  reconstruction targets; -1 = its output).
* ``scales``  the token space; must equal ``model.scales``.
* ``num_slots`` K, ``slot_dim`` D, ``iters`` (slot-attention iterations per frame), ``first_frame_iters``
  (iterations on frame 0, whose slots start from the learned init rather than a prediction),
  ``mlp_hidden`` (the residual MLP inside slot attention), ``predictor_heads`` / ``predictor_blocks``
  (the transformer that carries slots from frame t to t + 1).
* ``decoder_hidden``  hidden widths of the per-slot MLP decoder (a YAML list, or ``256,256``).
* ``contrast_weight`` / ``contrast_temperature``  weight and temperature tau of the slot-slot contrast.
* ``recon_sample_rate``  share of frames whose features are rebuilt (and rewarded) per forward; the slots
  always recur over all T frames. 1.0 (the default) rebuilds every frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autogaze.tasks.video_feature_reconstruction.config import TowerConfig, parse_feature_task_config
from autogaze.tasks.video_mae_reconstruction.config import _as_dict
from autogaze.utils.parsing import ConfigError, check_keys, parse_int_list, parse_scales

_TOWER_KEYS = ("vision_model", "vision_model_config", "use_flash_attn_vision_model", "frame_independent_encoding",
               "layer_with_reconstruction_loss")
_SLOT_KEYS = ("num_slots", "slot_dim", "iters", "first_frame_iters", "mlp_hidden", "predictor_heads",
              "predictor_blocks", "decoder_hidden", "contrast_weight", "contrast_temperature", "recon_sample_rate")
_TOP_KEYS = ("_target_", "scales", *_TOWER_KEYS, *_SLOT_KEYS)


@dataclass
class SlotTaskConfig:
    """The parsed ``task`` group; see the module docstring for each key."""
    tower: TowerConfig = field(default_factory=TowerConfig)
    scales: list[int] = field(default_factory=lambda: [224])
    num_slots: int = 5                 # K: at most 3 shapes + background + a spare on the synthetic clips
    slot_dim: int = 64                 # D (SlotContrast's MOVi-C setting)
    iters: int = 2                     # slot-attention iterations on frames t >= 1
    first_frame_iters: int = 3         # on frame 0 the slots start from the init, not a prediction
    mlp_hidden: int = 128              # the residual MLP after the GRU
    predictor_heads: int = 4           # the slot predictor: transformer blocks over the K slots
    predictor_blocks: int = 1
    decoder_hidden: list[int] = field(default_factory=lambda: [256, 256])
    contrast_weight: float = 0.5       # L = L_featrec + contrast_weight * L_ss
    contrast_temperature: float = 0.1  # tau of the slot-slot logits
    recon_sample_rate: float = 1.0     # F = max(1, int(T * rate)) rebuilt frames per forward


def _positive_int(key: str, value: Any, example: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, "must be an integer", f"e.g. {key}={example}") from None
    if n < 1 or n != float(value):
        raise ConfigError(key, value, "must be an integer >= 1", f"e.g. {key}={example}")
    return n


def _float(key: str, value: Any, rule: str, ok, example: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, "must be a number", f"e.g. {key}={example}") from None
    if not ok(v):
        raise ConfigError(key, value, rule, f"e.g. {key}={example}")
    return v


def _parse_tower(cfg: dict) -> TowerConfig:
    """The feature task's parser on the tower keys only: one set of tower rules and error messages."""
    sub = {k: cfg[k] for k in _TOWER_KEYS if k in cfg}
    layer = sub.get("layer_with_reconstruction_loss", -1)
    # The feature task asks its two layer keys to agree; here one layer gives inputs and targets.
    return parse_feature_task_config({**sub, "layer_with_patch_loss": layer}).tower


def parse_slot_task_config(cfg: Any) -> SlotTaskConfig:
    """Validate the Hydra ``task`` dict into a SlotTaskConfig (unknown keys and bad values raise)."""
    cfg = _as_dict(cfg)
    check_keys("task", cfg.keys(), _TOP_KEYS)
    d = SlotTaskConfig()
    get = lambda k: cfg.get(k, getattr(d, k))  # noqa: E731
    slot_dim = _positive_int("task.slot_dim", get("slot_dim"), 64)
    heads = _positive_int("task.predictor_heads", get("predictor_heads"), 4)
    if slot_dim % heads:
        raise ConfigError("task.predictor_heads", heads, f"must divide task.slot_dim={slot_dim} (multi-head "
                          "attention splits the slot width over the heads)", f"e.g. task.predictor_heads=4 with "
                          "task.slot_dim=64")
    hidden = parse_int_list("task.decoder_hidden", get("decoder_hidden"), sep=",")
    if any(h < 1 for h in hidden):
        raise ConfigError("task.decoder_hidden", get("decoder_hidden"), "every hidden width must be >= 1",
                          "e.g. task.decoder_hidden=[256,256]")
    return SlotTaskConfig(
        tower=_parse_tower(cfg), scales=parse_scales("task.scales", get("scales")),
        num_slots=_positive_int("task.num_slots", get("num_slots"), 5), slot_dim=slot_dim,
        iters=_positive_int("task.iters", get("iters"), 2),
        first_frame_iters=_positive_int("task.first_frame_iters", get("first_frame_iters"), 3),
        mlp_hidden=_positive_int("task.mlp_hidden", get("mlp_hidden"), 128), predictor_heads=heads,
        predictor_blocks=_positive_int("task.predictor_blocks", get("predictor_blocks"), 1), decoder_hidden=hidden,
        contrast_weight=_float("task.contrast_weight", get("contrast_weight"), "must be >= 0 (0 turns the "
                               "contrast off)", lambda v: v >= 0, 0.5),
        contrast_temperature=_float("task.contrast_temperature", get("contrast_temperature"), "must be > 0",
                                    lambda v: v > 0, 0.1),
        recon_sample_rate=_float("task.recon_sample_rate", get("recon_sample_rate"), "must be in (0, 1]",
                                 lambda v: 0 < v <= 1, 1.0))
