"""Frozen towers: a vision model run with every patch gazed, whose finest-scale features are the targets.

Two kinds, one interface (``FrozenTower.features``):

* ``GazedTower``: a SigLIP / SigLIP2 or DINOv2-with-registers tower of ``autogaze.vision_encoders`` (stock
  transformers modules with a gazed forward), given all P patches of every frame. Stock weights come from a
  local folder or the local Hugging Face cache; ``tiny-siglip`` / ``tiny-dinov2`` are random towers for tests.
* ``VideoMAETower``: the encoder of a VideoMAE reconstruction task we trained (the demo's
  ``checkpoint_latest_task.pt``), run on all P tokens of every frame; no pretrained weights needed on CPU.

A tower is a plain object, not a submodule of the task, so its (possibly GB-scale) weights stay out of the
task's parameters, state_dict, checkpoints and DDP, as the MAE task does with its feature-loss models.
It always runs in eval mode under ``no_grad``.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from autogaze.types import Gazes
from autogaze.utils.normalization import IMAGENET_MEAN, IMAGENET_STD, UNIT_MEAN, UNIT_STD, VIVIT
from autogaze.utils.parsing import ConfigError

from .config import TowerConfig

log = logging.getLogger(__name__)

TINY_TOWERS = ("tiny-siglip", "tiny-dinov2")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def full_gazes(batch: int, num_frames: int, tokens_per_frame: int, device: torch.device) -> Gazes:
    """Every patch of every frame gazed, in id order: ids [B, T*P], nothing padded."""
    ids = torch.arange(num_frames * tokens_per_frame, device=device).expand(batch, -1)
    return Gazes(ids, torch.zeros_like(ids, dtype=torch.bool),
                 torch.full((num_frames,), tokens_per_frame, dtype=torch.long), tokens_per_frame)


@contextmanager
def capture_output(layer: nn.Module) -> Iterator[list[Tensor]]:
    """Collect ``layer``'s output hidden states while the block runs (a forward hook, removed after)."""
    seen: list[Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out[0] if isinstance(out, tuple) else out))
    try:
        yield seen
    finally:
        handle.remove()


class FrozenTower:
    """Targets of the feature task. Subclasses implement ``_encode`` and ``layers``.

    model:       the frozen nn.Module (eval, requires_grad False).
    scales:      the task's scales (ascending); patch_size p; feature_dim Df; ``dims`` the width, depth,
                 heads and MLP size that the predictor copies where its config leaves them null.
    layer:       -1 = the tower's output; k = the output of layer k (Python index), before any final norm.
    """

    def __init__(self, model: nn.Module, source: str, scales: list[int], layer: int, dims: dict[str, int]):
        self.model, self.source, self.scales, self.layer = model, source, list(scales), int(layer)
        self.model.requires_grad_(False).eval()
        self.patch_size, self.feature_dim, self.dims = dims["patch_size"], dims["hidden_size"], dims
        n = len(self.layers())
        if not -n <= self.layer < n:
            raise ConfigError("task.layer_with_reconstruction_loss", self.layer, f"the tower has {n} layers",
                              f"use -1 (the output) or an index in [{-n}, {n})")

    @property
    def grid_sides(self) -> list[int]:
        return [s // self.patch_size for s in self.scales]

    @property
    def tokens_per_frame(self) -> int:
        return sum(g * g for g in self.grid_sides)

    @property
    def num_finest(self) -> int:
        """K: patches of the largest scale, the target positions (e.g. 196)."""
        return self.grid_sides[-1] ** 2

    def apply(self, fn: Callable[[Tensor], Tensor]) -> None:
        """Mirror nn.Module._apply (device / dtype moves) onto the held model."""
        self.model._apply(fn)

    def layers(self) -> nn.ModuleList:
        raise NotImplementedError

    def _encode(self, video_for_task: Tensor, gazes: Gazes) -> Tensor:
        """video_for_task [B, T, 3, S, S], full gazes -> hidden [B, T*P, D] (the output, or the hooked layer)."""
        raise NotImplementedError

    @torch.no_grad()
    def all_features(self, video_for_task: Tensor) -> Tensor:
        """video_for_task [B, T, 3, S, S] (task-normalised) -> features [B, T, P, Df] at every token
        of every scale, with every patch gazed."""
        self.model.eval()  # frozen means eval, whatever mode the caller's module is in
        B, T = video_for_task.shape[:2]
        P = self.tokens_per_frame
        hidden = self._encode(video_for_task, full_gazes(B, T, P, video_for_task.device))  # [B, T*P, D]
        return hidden.reshape(B, T, P, -1).float()

    def features(self, video_for_task: Tensor) -> Tensor:
        """video_for_task [B, T, 3, S, S] (task-normalised) -> targets [B, T, K, Df] at the finest scale."""
        return self.all_features(video_for_task)[:, :, -self.num_finest:]  # the largest scale = the last K ids


class GazedTower(FrozenTower):
    """A SigLIP or DINOv2 tower of autogaze.vision_encoders with every patch gazed."""

    def __init__(self, model: nn.Module, source: str, family: str, scales: list[int], layer: int):
        cfg = model.config
        mlp = getattr(cfg, "intermediate_size", None) or int(cfg.mlp_ratio * cfg.hidden_size)
        dims = dict(hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
                    num_attention_heads=cfg.num_attention_heads, intermediate_size=mlp, patch_size=cfg.patch_size)
        self.family = family
        mean, std = (UNIT_MEAN, UNIT_STD) if family == "siglip" else (IMAGENET_MEAN, IMAGENET_STD)
        self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
        super().__init__(model, source, scales, layer, dims)

    def layers(self) -> nn.ModuleList:
        return self.model.vision_model.encoder.layers if self.family == "siglip" else self.model.encoder.layer

    def _encode(self, video_for_task: Tensor, gazes: Gazes) -> Tensor:
        from autogaze.vision_encoders.gazed import TokenLayout

        # The task input is Vivit/ImageNet-normalised; the tower wants its own normalisation of [0, 1] pixels.
        x = VIVIT.to_unit(video_for_task)
        pixels = (x - self.mean.to(x)) / self.std.to(x)
        if self.layer == -1:
            return self.model(pixels, gazing_info=gazes).last_hidden_state
        with capture_output(self.layers()[self.layer]) as seen:
            self.model(pixels, gazing_info=gazes)
        # The hooked layer sees the packed sequences (DINOv2 interleaves CLS + registers per frame): unpack.
        prefix = self.model._gazed_prefix_rows()
        R = 0 if prefix is None else prefix.shape[0]
        layout = TokenLayout.make(gazes, R, self.model.gazing.attn_type == "frame_independent")
        return layout.unpack(seen[-1], video_for_task.shape[0], R)[0]


class VideoMAETower(FrozenTower):
    """The encoder of a trained VideoMAE reconstruction task (its ``mae``), every token gazed."""

    def __init__(self, mae: nn.Module, source: str, scales: list[int], layer: int):
        c = mae.config
        dims = dict(hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
                    num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
                    patch_size=c.patch_size)
        super().__init__(mae, source, scales, layer, dims)

    def layers(self) -> nn.ModuleList:
        return self.model.vit.encoder.layer

    def _encode(self, video_for_task: Tensor, gazes: Gazes) -> Tensor:
        if self.layer == -1:
            return self.model.forward_encoder(video_for_task, gazes)[:, 1:]  # drop CLS
        with capture_output(self.layers()[self.layer]) as seen:
            self.model.forward_encoder(video_for_task, gazes)
        return seen[-1][:, 1:]


# ------------------------------------------------------------------------------------------ building
def _tiny_tower(name: str, patch: int, frame: int) -> tuple[nn.Module, str]:
    """Random-weight towers built locally (tests, smoke runs); never a download."""
    from transformers import Dinov2WithRegistersConfig, SiglipVisionConfig

    from autogaze.vision_encoders.dinov2 import Dinov2WithRegistersModel
    from autogaze.vision_encoders.siglip import SiglipVisionModel

    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=frame, patch_size=patch)
    if name == "tiny-siglip":
        return SiglipVisionModel(SiglipVisionConfig(**common, intermediate_size=64)), "siglip"
    return Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**common, mlp_ratio=2, num_register_tokens=2)), "dinov2"


def _stock_tower(name: str) -> tuple[nn.Module, str]:
    """A stock SigLIP / DINOv2 checkpoint from a folder or the local HF cache (local_files_only)."""
    from transformers import AutoConfig

    from autogaze.vision_encoders.dinov2 import Dinov2WithRegistersModel
    from autogaze.vision_encoders.siglip import SiglipVisionModel

    try:
        model_type = AutoConfig.from_pretrained(name, local_files_only=True).model_type
    except (OSError, ValueError) as e:
        raise ConfigError("task.vision_model", name, f"is not a local folder, a cached hub model, a tiny preset "
                          f"{list(TINY_TOWERS)} or a task checkpoint ({type(e).__name__}); the hub is never contacted",
                          "download it first (huggingface-cli download NAME) or give its folder") from None
    classes = {"siglip": (SiglipVisionModel, "siglip"), "siglip_vision_model": (SiglipVisionModel, "siglip"),
               "dinov2_with_registers": (Dinov2WithRegistersModel, "dinov2")}
    if model_type not in classes:
        raise ConfigError("task.vision_model", name, f"has model_type {model_type!r}; the gazed towers are "
                          f"{sorted(classes)} (SigLIP2 naflex is not supported)",
                          "use a SigLIP / SigLIP2 (fixed resolution) or DINOv2-with-registers checkpoint")
    cls, family = classes[model_type]
    return cls.from_pretrained(name, local_files_only=True), family


def _video_mae_tower(tc: TowerConfig, scales: list[int]) -> nn.Module:
    """The ``mae`` of a VideoMAEReconstruction built at ``tc.mae_preset`` and filled from ``tc.source``."""
    from autogaze.tasks.video_mae_reconstruction import VideoMAEReconstruction
    from autogaze.tasks.video_mae_reconstruction.config import TaskConfig

    if tc.attn_type != "block_causal":
        raise ConfigError("task.vision_model_config.attn_type", tc.attn_type,
                          "a VideoMAE tower keeps the block-causal attention it was trained with",
                          "set attn_type=block_causal (and frame_independent_encoding=false)")
    if not os.path.isfile(tc.source):
        raise ConfigError("task.vision_model", tc.source, "no such task checkpoint",
                          "train one first (python -m autogaze.train --config-name demo_mae) or fix the path")
    mae_task = VideoMAEReconstruction(TaskConfig(recon_model=tc.mae_preset, scales=list(scales),
                                                 scale_embed=tc.scale_embed, time_embed=tc.time_embed,
                                                 max_num_frames=tc.max_num_frames, causal=True))
    mae_task.load_task_weights(tc.source)  # the MAE task's explicit key map: missing keys are errors
    return mae_task.mae


def build_tower(tc: TowerConfig, scales: list[int], patch_size: int | None) -> FrozenTower:
    """The frozen tower of ``tc`` at the task's ``scales``; ``patch_size`` (the predictor's, if given)
    sizes a tiny tower and must equal a loaded tower's."""
    if tc.source.endswith(CHECKPOINT_SUFFIXES):
        tower: FrozenTower = VideoMAETower(_video_mae_tower(tc, scales), tc.source, scales, tc.layer)
    else:
        if tc.source in TINY_TOWERS:
            model, family = _tiny_tower(tc.source, patch_size or 16, max(scales))
            log.warning("feature task: the %s tower has random weights (tests and smoke runs only)", tc.source)
        else:
            model, family = _stock_tower(tc.source)
        p = int(model.config.patch_size)
        if bad := [s for s in scales if s % p]:
            raise ConfigError("task.scales", "+".join(map(str, scales)),
                              f"every scale must be a multiple of the tower's patch size {p} (not {bad})",
                              f"e.g. scales {'+'.join(str(g * p) for g in (2, 4, 7, 14))}")
        model.configure_gazing(scales, tc.attn_type, tc.max_embed_batch_size,
                               "flash_attention_2" if tc.flash else "sdpa")
        tower = GazedTower(model, tc.source, family, scales, tc.layer)
    if patch_size is not None and patch_size != tower.patch_size:
        raise ConfigError("task.recon_model_config.patch_size", patch_size,
                          f"must equal the tower's patch size {tower.patch_size}: targets and predictions share "
                          "one patch grid", "leave it null (it follows the tower)")
    return tower
