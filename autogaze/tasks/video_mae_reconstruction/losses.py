"""Per-frame reconstruction losses: l1, DINOv2-with-registers and SigLIP(2) feature MSE.

The feature models are stock transformers classes built from a baked-in config (no hub access):
``Dinov2WithRegistersModel`` and ``SiglipVisionModel``. They are frozen (eval, requires_grad False)
and deliberately **not** nn.Modules of the task: a ``FeatureLoss`` is a plain object, so the models
stay out of the task's parameters, its state_dict (the per-step checkpoint) and DDP. Gradients still
flow *through* them into the reconstruction when the MAE is trained.

Weights come from ``videomae.pt`` (``mae.dinov2_reg.*`` / ``mae.siglip2.*``, see weights.py) or, when
``<name>_loss_config.model`` is a local directory, from ``from_pretrained`` on it.
"""
from __future__ import annotations

import logging
import os
from typing import Callable

import torch
from torch import Tensor, nn
from transformers import (
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from autogaze.utils.parsing import ConfigError

from autogaze.utils.normalization import IMAGENET_MEAN, IMAGENET_STD, UNIT_MEAN, UNIT_STD, VIVIT

log = logging.getLogger(__name__)

NUM_FEATURE_LAYERS = 4  # "last 4 hidden states" of both feature models

# Hub configs of the released feature models, and tiny ones (>= 4 layers) for CPU tests.
FEATURE_PRESETS = {
    "dinov2_reg": {
        # 518 px = the 37 x 37 position table of the hub checkpoint; 224 inputs are interpolated.
        "facebook/dinov2-with-registers-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                                    mlp_ratio=4, image_size=518, patch_size=14,
                                                    num_register_tokens=4),
        "tiny": dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2, image_size=224,
                     patch_size=14, num_register_tokens=4),
    },
    "siglip2": {
        "google/siglip2-base-patch16-224": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                                intermediate_size=3072, image_size=224, patch_size=16),
        "tiny": dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                     image_size=224, patch_size=16),
    },
}
_CLASSES = {"dinov2_reg": (Dinov2WithRegistersConfig, Dinov2WithRegistersModel),
            "siglip2": (SiglipVisionConfig, SiglipVisionModel)}
# Input normalisation of each feature model, applied to pixels in [0, 1].
_NORMS = {"dinov2_reg": (IMAGENET_MEAN, IMAGENET_STD), "siglip2": (UNIT_MEAN, UNIT_STD)}


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """[M, C, H, W] x 2 -> [M]: mean |pred - target| in the task-normalised space (no pixel norm)."""
    return (pred - target).abs().float().mean(dim=(1, 2, 3))


def task_to_unit(x: Tensor) -> Tensor:
    """Undo the task normalisation: [M, 3, H, W] -> pixels / 255 in about [0, 1].
    No clamp: the prediction may leave the range and its gradient must not be cut."""
    return VIVIT.to_unit(x)


class FeatureLoss:
    """MSE between last-4-layer features of prediction and target. Frozen, eval mode.

    name:  'dinov2_reg' or 'siglip2'.
    model: the transformers vision model; ``source`` records where its weights came from
           ('random-init <preset>' until filled, a path, or a task-weights file).
    """

    def __init__(self, name: str, model: nn.Module, source: str):
        self.name, self.model, self.source = name, model, source
        self._warned = False
        self.model.requires_grad_(False).eval()
        mean, std = _NORMS[name]
        self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
        # DINOv2 prepends CLS + registers; SigLIP has no prefix tokens.
        self.num_prefix = 1 + model.config.num_register_tokens if name == "dinov2_reg" else 0

    @property
    def is_pretrained(self) -> bool:
        return not self.source.startswith("random-init")

    def apply(self, fn: Callable[[Tensor], Tensor]) -> None:
        """Mirror nn.Module._apply (device / dtype moves) onto the held model."""
        self.model._apply(fn)

    def features(self, x: Tensor) -> Tensor:
        """x [M, 3, H, W] task-normalised -> [M, L, 4*Dm] (prefix tokens dropped). No resize."""
        mean, std = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        pixel_values = (task_to_unit(x) - mean) / std
        pixel_values = pixel_values.to(next(self.model.parameters()).dtype)
        kwargs = {}
        if self.name == "siglip2" and x.shape[-1] != self.model.config.image_size:
            # 224 frames use SigLIP's own table as is (upstream: no resize); other sizes (tiny tests,
            # other task scales) need its position interpolation. DINOv2 always interpolates.
            kwargs["interpolate_pos_encoding"] = True
        hidden = self.model(pixel_values=pixel_values, output_hidden_states=True, **kwargs).hidden_states
        return torch.cat([h[:, self.num_prefix:] for h in hidden[-NUM_FEATURE_LAYERS:]], dim=-1)

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target [M, 3, H, W] -> [M] MSE over tokens and channels."""
        self.model.eval()  # frozen means eval, whatever mode the caller's module is in
        if not self.is_pretrained and not self._warned:
            self._warned = True
            log.warning("the %s loss runs on randomly initialised weights (%s): load trainer.task_weights "
                        "(videomae.pt holds mae.%s.*) or point the loss config's model to a local directory",
                        self.name, self.source, self.name)
        with torch.no_grad():
            ft = self.features(target)
        fp = self.features(pred)
        return (fp.float() - ft.float()).pow(2).mean(dim=(1, 2))


def build_feature_loss(name: str, model_name: str, attn_mode: str) -> FeatureLoss:
    """Build the frozen feature model ``name`` from a preset (random, to be filled by task weights)
    or from a local ``from_pretrained`` directory."""
    key = f"task.recon_model_config.{name}_loss_config.model"
    if "naflex" in str(model_name):
        raise ConfigError(key, model_name, "the SigLIP2 naflex variant (Siglip2VisionModel) needs patchified "
                          "inputs and is not supported", "use google/siglip2-base-patch16-224")
    if attn_mode == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available
        if not is_flash_attn_2_available():
            raise ConfigError("task.attn_mode", attn_mode, "flash-attn 2 is not installed",
                              "set task.attn_mode=sdpa (same numbers) or pip install flash-attn")
    config_cls, model_cls = _CLASSES[name]
    if os.path.isdir(str(model_name)):
        model = model_cls.from_pretrained(model_name, attn_implementation=attn_mode)
        return FeatureLoss(name, model, source=str(model_name))
    presets = FEATURE_PRESETS[name]
    if model_name not in presets:
        raise ConfigError(key, model_name, f"is neither a local directory nor a preset {sorted(presets)} "
                          "(the hub is never contacted)", "use a preset (weights then come from "
                          "trainer.task_weights) or a local from_pretrained directory")
    config = config_cls(**presets[model_name], attn_implementation=attn_mode)
    return FeatureLoss(name, model_cls(config), source=f"random-init {model_name}")
