"""Configs of the token samplers (AdaMAE here; TATS extends ``SamplerConfig`` in tats/config.py).

Shared ``model`` keys (``preset`` fills them, any key given overrides it):

* ``preset``             ``tiny`` (8 x 64 px, patch 8, width 64) or ``base`` (16 x 224, patch 16, 768).
* ``scales``             the frame side, one value; must equal ``task.scales`` (the cross-group check).
* ``max_num_frames``     clip length T_max the position tables cover (the experiment config sets it
                         to ``dataset.clip_len``); shorter clips use the first rows.
* ``patch_size``, ``tubelet_size``  the tubelet; must match the task's.
* ``hidden_size``, ``num_attention_heads``, ``intermediate_size``  the sampler block.
* ``mask_ratio``         rho; the visible count is N_v = int(N * (1 - rho)).
* ``temperature``        tau of softmax(z / tau); 1 in both papers.
* ``embedding``          ``shared``: tokens X come from the task (``task.embed_tokens``, passed as
                         ``tokens=``), as in AdaMAE; ``own``: the sampler has its own Conv3d.
* ``num_vision_tokens_each_frame``  optional; when given it must equal P (the dataset reads it).
* ``preprocessing``      optional; read by the dataset builder for the gaze-model input, not here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from autogaze.utils.parsing import ConfigError, check_choice, check_keys, parse_single_scale

GEOMETRY = {"tiny": dict(image_size=64, max_num_frames=8, patch_size=8, tubelet_size=2),
            "base": dict(image_size=224, max_num_frames=16, patch_size=16, tubelet_size=2)}
_PASSTHROUGH = ("_target_", "preset", "scales", "num_vision_tokens_each_frame", "preprocessing")


@dataclass
class SamplerConfig:
    """Geometry and sampling settings shared by the token samplers."""

    image_size: int = 64              # frame side S
    max_num_frames: int = 8           # T_max
    patch_size: int = 8               # p
    tubelet_size: int = 2             # u frames per token
    hidden_size: int = 64             # D (= the MAE width when the embedding is shared)
    num_attention_heads: int = 4
    intermediate_size: int = 256      # MLP width (4 D in both papers)
    mask_ratio: float = 0.9           # rho
    temperature: float = 1.0          # tau
    embedding: str = "shared"         # shared | own
    initializer_range: float = 0.02   # std of the normal init of Linear / Conv3d weights
    preset: str = "tiny"

    @property
    def tokens_per_frame(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def max_tokens(self) -> int:
        return self.max_num_frames // self.tubelet_size * self.tokens_per_frame


@dataclass
class AdaMAEConfig(SamplerConfig):
    """AdaMAE's MHA sampler: one ViT block (no qkv bias) on X + a learnable position table."""

    dropout: float = 0.1              # MLP / projection dropout of the block (attention dropout 0)


ADAMAE_PRESETS = {
    "tiny": dict(GEOMETRY["tiny"], hidden_size=64, num_attention_heads=4, intermediate_size=256, mask_ratio=0.9),
    # AdaMAE default "MHA D=1, d=768": 8 heads, rho 0.95.
    "base": dict(GEOMETRY["base"], hidden_size=768, num_attention_heads=8, intermediate_size=3072, mask_ratio=0.95),
}


def _as_dict(value: Any) -> dict:
    """DictConfig, dict or None -> a plain dict."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else dict(value or {})


def parse_sampler_config(cls: type, cfg: Any, presets: dict[str, dict], defaults: dict | None = None):
    """Validate the Hydra ``model`` dict into ``cls`` (a SamplerConfig subclass); raise ConfigError on
    unknown keys or bad values, before anything is built. ``defaults``: per-class key defaults."""
    cfg = _as_dict(cfg)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in ("image_size", "preset")]
    check_keys("model", cfg.keys(), [*_PASSTHROUGH, *names])
    preset = check_choice("model.preset", cfg.get("preset", "tiny"), list(presets))
    values = {**(defaults or {}), **presets[preset]}
    if cfg.get("scales") is not None:
        values["image_size"] = parse_single_scale("model.scales", cfg["scales"], "a token sampler")
    values.update({k: cfg[k] for k in names if cfg.get(k) is not None})
    for k in ("max_num_frames", "patch_size", "tubelet_size", "hidden_size", "num_attention_heads",
              "intermediate_size"):
        v = values[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"model.{k}", v, "must be a positive integer", f"e.g. model.{k}={presets[preset][k]}")
    c = cls(**values, preset=preset)
    _check(c, cfg.get("num_vision_tokens_each_frame"))
    return c


def _check(c: SamplerConfig, tokens_each_frame: Any) -> None:
    if c.image_size % c.patch_size:
        raise ConfigError("model.scales", c.image_size, f"must be a multiple of model.patch_size={c.patch_size}",
                          "use the task's frame size and patch size")
    if c.max_num_frames % c.tubelet_size:
        raise ConfigError("model.max_num_frames", c.max_num_frames,
                          f"must be a multiple of model.tubelet_size={c.tubelet_size}",
                          "use a clip length that splits into whole tubelets (dataset.clip_len)")
    if c.hidden_size % c.num_attention_heads:
        raise ConfigError("model.hidden_size", c.hidden_size,
                          f"must be divisible by model.num_attention_heads={c.num_attention_heads}",
                          "change one of the two")
    if not 0.0 < float(c.mask_ratio) < 1.0:
        raise ConfigError("model.mask_ratio", c.mask_ratio, "must be in (0, 1)", "e.g. model.mask_ratio=0.9")
    if not float(c.temperature) > 0.0:
        raise ConfigError("model.temperature", c.temperature, "must be > 0", "use model.temperature=1.0")
    check_choice("model.embedding", c.embedding, ["shared", "own"])
    if tokens_each_frame is not None and int(tokens_each_frame) != c.tokens_per_frame:
        raise ConfigError("model.num_vision_tokens_each_frame", tokens_each_frame,
                          f"must equal (scales / patch_size)^2 = {c.tokens_per_frame}",
                          f"set it to {c.tokens_per_frame} or drop it")
    dropout = getattr(c, "dropout", 0.0)
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError("model.dropout", dropout, "must be in [0, 1)", "use model.dropout=0.1")
