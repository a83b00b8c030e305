"""Config of the VideoMAE reconstruction task: architecture presets and the parsed task group.

Everything hub-shaped is baked in here, so building the task never touches the network:
``recon_model=facebook/vit-mae-large`` picks a preset of *dimensions* (the weights come from
``trainer.task_weights``, i.e. ``videomae.pt``); a local directory with ``config.json`` (or a
``.json`` file) is read instead when ``recon_model`` is a path.

Task group keys (``autogaze/configs/task/video_mae_reconstruction.yaml``):

* ``recon_model``        preset name (see ``MAE_PRESETS``) or a local config dir / json file.
* ``recon_sample_rate``  fraction of the T frames reconstructed per forward, in (0, 1].
* ``attn_mode``          attention backend of the frozen DINOv2/SigLIP feature models only
                         (sdpa | eager | flash_attention_2). The MAE itself is always sdpa.
* ``scales``             task scales, e.g. ``32+64+112+224``; must equal the gaze model's.
* ``recon_model_config.{scale_embed, time_embed, max_num_frames, causal}``  the multi-scale / video additions.
* ``recon_model_config.{loss_type, loss_weights}``  e.g. ``l1+dinov2_reg+siglip2`` / ``1+0.3+0.3``.
* ``recon_model_config.{l1,dinov2_reg,siglip2}_loss_config``: ``model`` = preset or local path.
* ours: ``recon_model_config.weight_init``  how a model trained from scratch starts: ``normal``
  (default; transformers' ViT-MAE, as upstream: N(0, 0.02) for every Linear) or ``xavier``
  (xavier-uniform Linear weights, as MAE's own code). Loaded weights replace either. At the tiny
  preset's widths N(0, 0.02) shrinks each Linear's output about sixfold and the encoder's gradients
  start far below the head's: the MAE sits long on a blurry plateau (TRAINING.md).
* ours: ``recon_model_config.<arch key>`` for any key of ``ARCH_KEYS`` overrides the preset
  (e.g. ``hidden_size=64`` for a cheap CPU run). ``null`` means "keep the preset".
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from transformers import ViTMAEConfig

from autogaze.utils.normalization import IMAGENET_MEAN, IMAGENET_STD, VIVIT_RESCALE
from autogaze.utils.parsing import (
    ConfigError,
    check_choice,
    check_keys,
    parse_float_list,
    parse_scales,
    parse_str_list,
)

# Task input normalisation: x = (p / 127.5 - 1 - mean) / std for pixels p in [0, 255].
TASK_MEAN, TASK_STD, TASK_RESCALE = IMAGENET_MEAN, IMAGENET_STD, VIVIT_RESCALE

# Encoder/decoder dimensions of the hub configs of facebook/vit-mae-*, plus a tiny one with the
# dimensions of the upstream test fixture (videomae_tiny_config.json) for CPU tests.
_MAE_DECODER = dict(decoder_hidden_size=512, decoder_num_hidden_layers=8,
                    decoder_num_attention_heads=16, decoder_intermediate_size=2048)
MAE_PRESETS: dict[str, dict[str, int]] = {
    "facebook/vit-mae-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                  intermediate_size=3072, **_MAE_DECODER),
    "facebook/vit-mae-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                   intermediate_size=4096, **_MAE_DECODER),
    "facebook/vit-mae-huge": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                                  intermediate_size=5120, **_MAE_DECODER),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                 decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=4,
                 decoder_intermediate_size=64),
}
ARCH_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "decoder_hidden_size", "decoder_num_hidden_layers", "decoder_num_attention_heads",
             "decoder_intermediate_size", "patch_size")

LOSS_TYPES = ("l1", "dinov2_reg", "siglip2")
ATTN_MODES = ("sdpa", "eager", "flash_attention_2")
_RECON_MODEL_CONFIG_KEYS = ("scale_embed", "max_num_frames", "time_embed", "causal", "loss_type",
                            "loss_weights", "l1_loss_config", "dinov2_reg_loss_config",
                            "siglip2_loss_config", "weight_init", *ARCH_KEYS)
WEIGHT_INITS = ("normal", "xavier")
_TOP_KEYS = ("_target_", "recon_model", "recon_sample_rate", "attn_mode", "recon_model_config", "scales")
DEFAULT_FEATURE_MODELS = {"dinov2_reg": "facebook/dinov2-with-registers-base",
                          "siglip2": "google/siglip2-base-patch16-224"}


class MultiScaleViTMAEConfig(ViTMAEConfig):
    """ViTMAEConfig plus the multi-scale / video additions (scale and time embeddings, block-causal attention).

    scales:         ascending frame sizes, e.g. [32, 64, 112, 224]; each a multiple of patch_size.
    scale_embed:    learned (len(scales), D) table added per scale (encoder and decoder).
    time_embed:     learned (max_num_frames, D) table added per frame (encoder and decoder).
    max_num_frames: rows of the time tables (256 in the released weights).
    causal:         block-causal attention over frames; False = full attention.
    weight_init:    ``normal`` (transformers' start) or ``xavier`` (xavier-uniform Linear weights).
    """

    def __init__(self, scales=(224,), scale_embed: bool = True, time_embed: bool = True,
                 max_num_frames: int = 256, causal: bool = True, weight_init: str = "normal", **kwargs):
        super().__init__(**kwargs)
        self.weight_init = check_choice("weight_init", weight_init, WEIGHT_INITS)
        self.scales = sorted(int(s) for s in scales)
        self.scale_embed, self.time_embed = bool(scale_embed), bool(time_embed)
        self.max_num_frames, self.causal = int(max_num_frames), bool(causal)
        # The block-causal mask needs sdpa's additive/boolean masks; eager ViT-MAE multiplies the
        # mask into post-softmax probabilities, which would be wrong here.
        self._attn_implementation = "sdpa"

    @property
    def tokens_per_frame(self) -> int:
        return sum((s // self.patch_size) ** 2 for s in self.scales)


@dataclass
class LossSpec:
    """One term of the per-frame loss: ``weight * loss_<name>``; ``model`` names the feature model."""
    name: str
    weight: float
    model: str | None = None


@dataclass
class TaskConfig:
    """The parsed ``task`` group. See the module docstring for each key."""
    recon_model: str = "facebook/vit-mae-base"
    recon_sample_rate: float = 1.0
    attn_mode: str = "sdpa"
    scales: list[int] = field(default_factory=lambda: [224])
    scale_embed: bool = True
    time_embed: bool = True
    max_num_frames: int = 256
    causal: bool = True
    losses: list[LossSpec] = field(default_factory=lambda: [LossSpec("l1", 1.0)])
    arch_overrides: dict[str, int] = field(default_factory=dict)
    weight_init: str = "normal"


def _as_dict(value: Any) -> dict:
    """OmegaConf DictConfig or dict (or None) -> plain dict."""
    if value is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf
        if isinstance(value, DictConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(value)


def parse_task_config(cfg: Any) -> TaskConfig:
    """Validate the Hydra ``task`` dict into a TaskConfig (unknown keys and bad values raise)."""
    cfg = _as_dict(cfg)
    check_keys("task", cfg.keys(), _TOP_KEYS)
    rmc = _as_dict(cfg.get("recon_model_config"))
    check_keys("task.recon_model_config", rmc.keys(), _RECON_MODEL_CONFIG_KEYS)

    rate = float(cfg.get("recon_sample_rate", 1.0))
    if not 0.0 < rate <= 1.0:
        raise ConfigError("task.recon_sample_rate", rate, "must be in (0, 1]",
                          "e.g. task.recon_sample_rate=0.125 (2 of 16 frames)")
    names = parse_str_list("task.recon_model_config.loss_type", rmc.get("loss_type", "l1"))
    weights = parse_float_list("task.recon_model_config.loss_weights", rmc.get("loss_weights", "1"))
    if not names:
        raise ConfigError("task.recon_model_config.loss_type", rmc.get("loss_type"), "must not be empty",
                          "e.g. loss_type=l1+dinov2_reg+siglip2")
    if len(names) != len(weights):
        raise ConfigError("task.recon_model_config.loss_weights", rmc.get("loss_weights"),
                          f"needs one weight per loss type {names}", "e.g. loss_weights=1+0.3+0.3")
    losses = []
    for name, w in zip(names, weights):
        check_choice("task.recon_model_config.loss_type", name, LOSS_TYPES)
        sub = _as_dict(rmc.get(f"{name}_loss_config"))
        check_keys(f"task.recon_model_config.{name}_loss_config", sub.keys(), ("model",))
        losses.append(LossSpec(name, w, sub.get("model", DEFAULT_FEATURE_MODELS.get(name))))

    arch = {k: int(rmc[k]) for k in ARCH_KEYS if rmc.get(k) is not None}
    max_frames = int(rmc.get("max_num_frames", 256))
    if max_frames < 1:
        raise ConfigError("task.recon_model_config.max_num_frames", max_frames, "must be >= 1",
                          "use 256 for the released weights")
    return TaskConfig(
        recon_model=str(cfg.get("recon_model", "facebook/vit-mae-base")),
        recon_sample_rate=rate,
        attn_mode=check_choice("task.attn_mode", cfg.get("attn_mode", "sdpa"), ATTN_MODES),
        scales=parse_scales("task.scales", cfg.get("scales", "224")),
        scale_embed=bool(rmc.get("scale_embed", True)),
        time_embed=bool(rmc.get("time_embed", True)),
        max_num_frames=max_frames,
        causal=bool(rmc.get("causal", True)),
        losses=losses,
        arch_overrides=arch,
        weight_init=check_choice("task.recon_model_config.weight_init", rmc.get("weight_init", "normal"), WEIGHT_INITS),
    )


def build_mae_config(tc: TaskConfig) -> tuple[MultiScaleViTMAEConfig, str | None]:
    """MultiScaleViTMAEConfig for ``tc.recon_model``, plus the local weights dir (or None).

    A path (dir with config.json, or a .json file) is read with ``from_pretrained``-style loading;
    otherwise the name must be a preset. Task keys (scales, embeds, frames) and arch overrides win.
    """
    extra = dict(scales=tc.scales, scale_embed=tc.scale_embed, time_embed=tc.time_embed,
                 max_num_frames=tc.max_num_frames, causal=tc.causal, weight_init=tc.weight_init)
    src = tc.recon_model
    weights_dir = None
    if os.path.exists(src):
        base = ViTMAEConfig.from_json_file(src) if os.path.isfile(src) else ViTMAEConfig.from_pretrained(src)
        dims = {k: getattr(base, k) for k in (*ARCH_KEYS, "image_size", "num_channels", "qkv_bias",
                                              "hidden_act", "layer_norm_eps", "initializer_range")}
        weights_dir = src if os.path.isdir(src) else None
    elif src in MAE_PRESETS:
        dims = dict(MAE_PRESETS[src])
    else:
        raise ConfigError("task.recon_model", src, f"is neither a local path nor a preset {sorted(MAE_PRESETS)} "
                          "(the hub is never contacted)",
                          "use a preset name, or download the config dir and give its path")
    dims.update(tc.arch_overrides)
    cfg = MultiScaleViTMAEConfig(**dims, **extra)
    p = cfg.patch_size
    bad = [s for s in cfg.scales if s % p]
    if bad:
        raise ConfigError("task.scales", "+".join(map(str, tc.scales)),
                          f"every scale must be a multiple of the patch size {p} (not {bad})",
                          f"pick scales divisible by {p}, e.g. 32+64+112+224 for patch 16")
    return cfg, weights_dir
