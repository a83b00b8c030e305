"""Encode the gazed patches of each chunk with a gazed ViT tower and keep their features.

``FeatureSink`` is a frame sink for ``gaze_video`` (``on_frames``): it collects each chunk's original
frames and gazes, and once a chunk is complete (``max_num_frames`` frames, or the last one at
``close``) it runs the tower on the gazed patches only and keeps the real slots' features. The tower
sees the gaze model's own square (same crop or squash, same side), normalised with the tower's own
mean, std and rescale factor, so its patch ids are the gaze ids. ``save`` writes ``features.npz``:
per chunk c, ``chunk{c}_features`` [N_real, D] float32 in gaze order and ``chunk{c}_ids`` [N_real]
int64 (``t * P + local``, t counted inside the chunk), plus ``tokens_per_frame`` and
``chunk_start_frames`` [C].
"""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from autogaze.inference.geometry import FrameGeometry, FramePreparer
from autogaze.inference.result import FrameGazes
from autogaze.models.autogaze import AutoGazeImageProcessor
from autogaze.models.autogaze.token_space import TokenSpace
from autogaze.types import Gazes

FAMILIES = ("siglip", "dinov2")


def load_tower(path: str, family: str | None = None) -> tuple[nn.Module, object]:
    """A stock SigLIP / DINOv2-with-registers folder -> (gazed tower in eval, its image processor).
    ``family`` None = read from the checkpoint's ``model_type``."""
    from transformers import AutoConfig, AutoImageProcessor

    if family is None:
        model_type = AutoConfig.from_pretrained(path).model_type
        family = "dinov2" if "dinov2" in model_type else "siglip" if "siglip" in model_type else None
        if family is None:
            raise ValueError(f"encoder {path}: model_type {model_type!r} is neither SigLIP nor DINOv2; "
                             f"pass the family ({', '.join(FAMILIES)}) explicitly")
    if family == "siglip":
        from autogaze.vision_encoders.siglip import SiglipVisionModel as Tower
    elif family == "dinov2":
        from autogaze.vision_encoders.dinov2 import Dinov2WithRegistersModel as Tower
    else:
        raise ValueError(f"encoder family {family!r}; valid: {', '.join(FAMILIES)}")
    return Tower.from_pretrained(path).eval(), AutoImageProcessor.from_pretrained(path)


def tower_preparer(geometry: FrameGeometry, gaze_processor: AutoGazeImageProcessor | None,
                   tower_processor) -> FramePreparer:
    """The gaze model's square (crop/squash at ``geometry.side``) with the tower's normalisation."""
    proc = copy.deepcopy(gaze_processor) if gaze_processor is not None else AutoGazeImageProcessor()
    proc.do_rescale = bool(getattr(tower_processor, "do_rescale", True))
    proc.rescale_factor = float(getattr(tower_processor, "rescale_factor", 1 / 255))
    proc.offset = False  # stock towers rescale to [0, 1]; AutoGaze's own processor maps to [-1, 1]
    proc.do_normalize = bool(getattr(tower_processor, "do_normalize", True))
    proc.image_mean = list(tower_processor.image_mean)
    proc.image_std = list(tower_processor.image_std)
    return FramePreparer(geometry, proc)


class FeatureSink:
    """``on_frames`` sink that encodes complete chunks (module docstring)."""

    def __init__(self, tower: nn.Module, prepare: FramePreparer, space: TokenSpace, chunk_len: int,
                 device: torch.device, precision: str = "fp32"):
        """space: the gazes' token space (the model's, or the any-resolution target's)."""
        settings = tower.gazing
        if tuple(settings.scales) != tuple(space.scales) or settings.patch_size != space.patch:
            raise ValueError(f"the encoder reads scales {'+'.join(map(str, settings.scales))} at patch "
                             f"{settings.patch_size}, the gazes are in scales {'+'.join(map(str, space.scales))} at "
                             f"patch {space.patch}; gaze with --target-scales/--target-patch-size matching the "
                             "encoder, or load the encoder with the gaze scales")
        P = sum(space.counts)
        self.tower, self.prepare, self.P, self.chunk_len = tower.to(device), prepare, P, chunk_len
        self.device, self.precision = device, precision
        self._frames: list[np.ndarray] = []
        self._gazes: list[FrameGazes] = []
        self.features: list[np.ndarray] = []
        self.ids: list[np.ndarray] = []
        self.starts: list[int] = []
        self._next_start = 0

    def __call__(self, frames: np.ndarray, gazes: Sequence[FrameGazes]) -> None:
        """frames uint8 [t, H, W, 3] and their t FrameGazes (a whole chunk offline, one frame streaming)."""
        self._frames.append(frames)
        self._gazes.extend(gazes)
        if len(self._gazes) >= self.chunk_len:
            self._flush()

    def close(self) -> None:
        if self._gazes:
            self._flush()

    @torch.inference_mode()
    def _flush(self) -> None:
        frames, gazes = np.concatenate(self._frames), self._gazes
        self._frames, self._gazes = [], []
        counts = [max(len(g.local), 1) for g in gazes]  # a frame always has a slot (padded if empty)
        ids = np.zeros(sum(counts), np.int64)
        is_padded = np.ones(sum(counts), bool)
        start = 0
        for t, (g, n) in enumerate(zip(gazes, counts)):
            ids[start:start + len(g.local)] = t * self.P + g.local
            ids[start + len(g.local):start + n] = t * self.P  # the frame's own first id
            is_padded[start:start + len(g.local)] = False
            start += n
        gz = Gazes(torch.from_numpy(ids)[None].to(self.device), torch.from_numpy(is_padded)[None].to(self.device),
                   torch.tensor(counts), self.P)
        pixels = self.prepare(frames).to(self.device)[None]  # [1, t, 3, S, S]
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16"
                    else contextlib.nullcontext())
        with autocast:
            hidden = self.tower(pixels, gazing_info=gz).last_hidden_state[0]  # [N, D]
        keep = ~torch.from_numpy(is_padded).to(hidden.device)
        self.features.append(hidden[keep].float().cpu().numpy())
        self.ids.append(ids[~is_padded])
        self.starts.append(self._next_start)
        self._next_start += len(gazes)

    def save(self, path: str | Path) -> Path:
        self.close()
        arrays = {"tokens_per_frame": np.int64(self.P), "chunk_start_frames": np.asarray(self.starts, np.int64)}
        for c, (f, i) in enumerate(zip(self.features, self.ids)):
            arrays[f"chunk{c}_features"], arrays[f"chunk{c}_ids"] = f, i
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)  # atomic: a reader never sees half a file
        return path
