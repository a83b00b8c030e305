"""Config of the tube VideoMAE task: presets and the parsed ``task`` group.

Keys (all optional; ``preset`` fills the rest, any other key overrides it):

* ``preset``            ``tiny`` (8 x 64 px, CPU tests) or ``base`` (ViT-B, VideoMAE / TATS dims).
* ``scales``            the frame side, one value (e.g. ``64``). Named ``scales`` because the dataset
                        builder and the cross-group checks read ``task.scales`` for the resize.
* ``max_num_frames``    clip length the position tables cover; shorter clips (a multiple of the
                        tubelet) use the first rows, which is exact for the 1-D sinusoid.
* ``patch_size``, ``tubelet_size``  the Conv3d tubelet (2 x p x p in VideoMAE).
* encoder / decoder widths: ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
  ``intermediate_size``, ``decoder_hidden_size``, ``decoder_num_hidden_layers``,
  ``decoder_num_attention_heads``, ``decoder_intermediate_size``.
* ``norm_pix_loss``     True (VideoMAE's default): per-tubelet, per-channel normalised targets.
* ``weight_init``       ``xavier`` (default; VideoMAE's and MAE's own code: xavier-uniform Linear weights)
                        or ``normal`` (transformers' VideoMAE: N(0, 0.02) for every Linear and the Conv3d).
                        Only a model trained from scratch sees it; loaded weights replace it. At the tiny
                        preset's widths N(0, 0.02) shrinks every Linear's output about sixfold, so the
                        encoder's gradients start 1e4-1e6 below the head's.
* ``pixel_mean``, ``pixel_std``, ``pixel_rescale``, ``pixel_offset``  the input normalisation the
                        target undoes; defaults are the dataset's task transform
                        (``x = (p / 127.5 - 1 - mean) / std``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from omegaconf import OmegaConf
from transformers import VideoMAEConfig

from autogaze.utils.normalization import IMAGENET_MEAN, IMAGENET_STD
from autogaze.utils.parsing import ConfigError, check_choice, check_keys, parse_single_scale


# Dimensions only; weights come from ``trainer.task_weights`` (or start random, as in pre-training).
PRESETS: dict[str, dict[str, int]] = {
    # 8 frames x 64 px, 8 px patches, tubelet 2 -> 4 tube-frames x 64 tokens = 256 tokens.
    "tiny": dict(image_size=64, max_num_frames=8, patch_size=8, tubelet_size=2, hidden_size=64,
                 num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, decoder_hidden_size=32,
                 decoder_num_hidden_layers=1, decoder_num_attention_heads=4, decoder_intermediate_size=128),
    # VideoMAE ViT-B (NeurIPS 2022) as used by AdaMAE and TATS: 16 x 224, 2 x 16 x 16 -> 1568 tokens.
    "base": dict(image_size=224, max_num_frames=16, patch_size=16, tubelet_size=2, hidden_size=768,
                 num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, decoder_hidden_size=384,
                 decoder_num_hidden_layers=4, decoder_num_attention_heads=6, decoder_intermediate_size=1536),
}
INT_KEYS = tuple(PRESETS["tiny"])
WEIGHT_INITS = ("xavier", "normal")
_KEYS = ("_target_", "preset", "scales", "norm_pix_loss", "weight_init", "pixel_mean", "pixel_std", "pixel_rescale",
         "pixel_offset", *(k for k in INT_KEYS if k != "image_size"))


@dataclass
class TubeMAEConfig:
    """The parsed ``task`` group (see the module docstring for each key)."""

    image_size: int = 64                  # frame side S; frames are S x S
    max_num_frames: int = 8               # T_max; tables hold T_max / tubelet * P rows
    patch_size: int = 8                   # p
    tubelet_size: int = 2                 # frames per token
    hidden_size: int = 64                 # encoder width D
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 256
    decoder_hidden_size: int = 32         # decoder width D_d
    decoder_num_hidden_layers: int = 1
    decoder_num_attention_heads: int = 4
    decoder_intermediate_size: int = 128
    norm_pix_loss: bool = True
    pixel_mean: tuple[float, ...] = IMAGENET_MEAN
    pixel_std: tuple[float, ...] = IMAGENET_STD
    pixel_rescale: float = 1 / 127.5
    pixel_offset: bool = True
    weight_init: str = "xavier"           # WEIGHT_INITS: how a model built from scratch starts
    preset: str = "tiny"

    @property
    def tokens_per_frame(self) -> int:
        """P = (S / p)^2 tokens per tube-frame."""
        return (self.image_size // self.patch_size) ** 2

    def to_videomae(self) -> VideoMAEConfig:
        """The transformers config the MAE is built from.

        ``use_mean_pooling=False`` keeps the encoder's final LayerNorm (VideoMAE's pre-training
        encoder ends with one); eps 1e-6 is VideoMAE's value. sdpa because the encoder masks padded
        gaze slots with a boolean key mask, which HF's eager path would multiply into the
        probabilities instead.
        """
        d = {k: v for k, v in asdict(self).items() if k in INT_KEYS and k != "max_num_frames"}
        cfg = VideoMAEConfig(**d, num_frames=self.max_num_frames, norm_pix_loss=self.norm_pix_loss,
                             use_mean_pooling=False, layer_norm_eps=1e-6, qkv_bias=True)
        cfg._attn_implementation = "sdpa"
        return cfg


def _as_dict(value: Any) -> dict:
    """DictConfig, dict or None -> a plain dict."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else dict(value or {})


def _triple(key: str, value: Any) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3:
        raise ConfigError(key, value, "needs one number per RGB channel", f"e.g. {key}=[0.485,0.456,0.406]")
    return out


def parse_task_config(cfg: Any) -> TubeMAEConfig:
    """Validate the Hydra ``task`` dict into a TubeMAEConfig; unknown keys and bad values raise
    ConfigError before anything is built."""
    cfg = _as_dict(cfg)
    check_keys("task", cfg.keys(), _KEYS)
    preset = check_choice("task.preset", cfg.get("preset", "tiny"), list(PRESETS))
    dims = dict(PRESETS[preset])
    if cfg.get("scales") is not None:
        dims["image_size"] = parse_single_scale("task.scales", cfg["scales"], "the tube MAE")
    for k in INT_KEYS:
        if cfg.get(k) is not None:
            v = cfg[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"task.{k}", v, "must be a positive integer", f"e.g. task.{k}={PRESETS[preset][k]}")
            dims[k] = v
    for k in ("norm_pix_loss", "pixel_offset"):
        if not isinstance(cfg.get(k, True), bool):
            raise ConfigError(f"task.{k}", cfg[k], "must be true or false", f"e.g. task.{k}=true")
    rescale = cfg.get("pixel_rescale", 1 / 127.5)
    if isinstance(rescale, bool) or not isinstance(rescale, (int, float)):
        raise ConfigError("task.pixel_rescale", rescale, "must be a number", "e.g. task.pixel_rescale=0.00784313725")
    c = TubeMAEConfig(**dims, preset=preset, norm_pix_loss=cfg.get("norm_pix_loss", True),
                      pixel_mean=_triple("task.pixel_mean", cfg.get("pixel_mean", IMAGENET_MEAN)),
                      pixel_std=_triple("task.pixel_std", cfg.get("pixel_std", IMAGENET_STD)),
                      pixel_rescale=float(rescale),
                      pixel_offset=cfg.get("pixel_offset", True),
                      weight_init=check_choice("task.weight_init", cfg.get("weight_init", "xavier"), list(WEIGHT_INITS)))
    _check(c)
    return c


def _check(c: TubeMAEConfig) -> None:
    if c.image_size % c.patch_size:
        raise ConfigError("task.scales", c.image_size, f"must be a multiple of task.patch_size={c.patch_size}",
                          f"use e.g. task.scales={c.patch_size * max(1, c.image_size // c.patch_size)}")
    if c.max_num_frames % c.tubelet_size:
        raise ConfigError("task.max_num_frames", c.max_num_frames,
                          f"must be a multiple of task.tubelet_size={c.tubelet_size}",
                          f"use task.max_num_frames={c.tubelet_size * max(1, c.max_num_frames // c.tubelet_size)}")
    for width, heads in (("hidden_size", "num_attention_heads"),
                         ("decoder_hidden_size", "decoder_num_attention_heads")):
        if getattr(c, width) % getattr(c, heads):
            raise ConfigError(f"task.{width}", getattr(c, width),
                              f"must be divisible by task.{heads}={getattr(c, heads)}",
                              f"change task.{width} or task.{heads}")
    if any(s <= 0 for s in c.pixel_std) or c.pixel_rescale <= 0:
        raise ConfigError("task.pixel_std", list(c.pixel_std), "std and rescale must be positive",
                          "use the dataset's task transform values")
