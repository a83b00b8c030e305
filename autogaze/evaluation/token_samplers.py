"""Held-out metrics of token samplers (random / tube masks, AdaMAE, TATS) on a tube VideoMAE, and
where samplers (and AutoGaze) put their budget relative to the synthetic clips' moving objects.

    mae, sampler = load_token_run(exp_dir)                        # a trained tube_video_mae_* run
    clips = load_val_clips(exp_dir / "config.yaml", data_root)    # decoded once, with object masks
    row = evaluate_sampler(mae, SamplerSpec("tats", sampler, embed=own_mae), clips)

Definitions (per clip, then the mean over clips and draws):

* ``masked_error``: the task's per-token error e_i (normalised-pixel MSE of tubelet i) averaged over
  the clip's masked tokens, i.e. ``TaskOutput.loss``.
* ``obj_hit``: share of the visible tokens that lie on a moving object, a token being on an object
  when object pixels cover at least ``min_cover`` (one half) of its 2 x p x p tubelet;
  ``obj_hit_base``: the same share over all N tokens (what a uniform draw gets on average).
* ``obj_cover``: mean object-pixel fraction of the visible tokens' tubelets; its base,
  ``area_share``, is the object-pixel share of the clip (tubelets tile the clip exactly).
* AutoGaze (:func:`autogaze_object_share`): object pixels inside the gazed patches over the gazed
  patches' pixel area, summed over the clip's gazes (patches of different scales may overlap, each
  counts with its own area), against the same ``area_share``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autogaze.types import Batch


# ------------------------------------------------------------------ metric functions
def tubelet_cover(objects: Tensor, patch: int, tubelet: int) -> Tensor:
    """objects bool/uint8 [B, T, H, W] (nonzero = object) -> float [B, N]: object-pixel fraction of
    each 2 x p x p tubelet, ids ordered (t', h', w') as the tube MAE's tokens (N = T/u * H/p * W/p)."""
    B, T, H, W = objects.shape
    if T % tubelet or H % patch or W % patch:
        raise ValueError(f"masks {tuple(objects.shape)} do not tile into {tubelet} x {patch} x {patch} tubelets")
    x = (objects != 0).float().view(B, T // tubelet, tubelet, H // patch, patch, W // patch, patch)
    return x.mean(dim=(2, 4, 6)).flatten(1)


def masked_error(loss_per_token: Tensor, token_is_target: Tensor) -> Tensor:
    """loss_per_token [B, N] (e_i), token_is_target [B, N] bool -> [B] mean e_i over masked tokens."""
    t = token_is_target.float()
    return (loss_per_token.float() * t).sum(1) / t.sum(1).clamp_min(1)


def visible_object_stats(is_visible: Tensor, cover: Tensor, min_cover: float = 0.5) -> dict[str, Tensor]:
    """is_visible bool [B, N], cover float [B, N] (tubelet_cover) -> per-clip [B] tensors:
    obj_hit, obj_hit_base, obj_cover, area_share (module docstring)."""
    vis = is_visible.float()
    n_vis = vis.sum(1).clamp_min(1)
    on = (cover >= min_cover).float()
    return {"obj_hit": (on * vis).sum(1) / n_vis, "obj_hit_base": on.mean(1),
            "obj_cover": (cover * vis).sum(1) / n_vis, "area_share": cover.mean(1)}


def box_object_share(objects: Tensor, frame: Tensor, boxes: Tensor, is_real: Tensor) -> Tensor:
    """Object pixels inside gazed boxes over the boxes' area, per clip.

    objects bool [B, T, H, W]; frame long [K] or [B, K] (frame of each gaze); boxes [B, K, 4] integer
    pixel corners (x0, y0, x1, y1), x1/y1 exclusive; is_real bool [B, K] (False = padded slot) -> [B].
    """
    B, T, H, W = objects.shape
    ii = F.pad(objects.float().cumsum(2).cumsum(3), (1, 0, 1, 0))          # [B, T, H+1, W+1] integral image
    frame = frame.expand(B, -1) if frame.dim() == 1 else frame
    x0, y0, x1, y1 = boxes.round().long().unbind(-1)                          # [B, K] each
    b = torch.arange(B, device=objects.device)[:, None]
    inside = ii[b, frame, y1, x1] - ii[b, frame, y0, x1] - ii[b, frame, y1, x0] + ii[b, frame, y0, x0]
    real = is_real.float()
    area = ((x1 - x0) * (y1 - y0)).float()
    return (inside * real).sum(1) / (area * real).sum(1).clamp_min(1)


# ------------------------------------------------------------------ data and models
class ValClip(NamedTuple):
    """One decoded val batch and its object masks (bool [B, T, H, W], None when a clip has none)."""

    batch: Batch
    objects: Tensor | None


def read_objects(paths: Sequence[str], shape: tuple[int, int, int]) -> Tensor | None:
    """The synthetic clips' object masks for ``paths`` -> bool [B, T, H, W], or None when any clip
    has no mask file or its masks do not match the decoded frames' [T, H, W] (e.g. a resize)."""
    from autogaze.datasets.synthetic import load_masks, masks_path

    if not all(masks_path(p).is_file() for p in paths):
        return None
    masks = [torch.from_numpy(load_masks(p)) for p in paths]
    if any(tuple(m.shape) != tuple(shape) for m in masks):
        return None
    return torch.stack(masks) != 0


def load_val_clips(config: str | Path, data_root: str | None = None, batch_size: int = 8,
                   preprocessing: dict | None = None) -> list[ValClip]:
    """The val split of an experiment's config.yaml (``data_root`` overrides dataset.root), decoded
    once in a fixed order, each batch with its object masks."""
    from autogaze.evaluation.models import load_experiment, make_loader

    exp = load_experiment(config, data_root)
    prep = dict(exp.model.get("preprocessing") or {}) if preprocessing is None else preprocessing
    out = []
    for batch in make_loader(exp, "val", prep, batch_size):
        if batch.batch_size:
            out.append(ValClip(batch, read_objects(batch.paths, tuple(batch.video.shape[1:2] + batch.video.shape[3:]))))
    return out


def load_token_run(exp_dir: str | Path, data_root: str | None = None) -> tuple[nn.Module, nn.Module]:
    """A finished tube_video_mae_* experiment -> (its frozen tube MAE, its sampler in eval mode)."""
    from autogaze.build import build_gaze_model
    from autogaze.checkpoint import load_gaze_weights
    from autogaze.evaluation.models import load_experiment, load_task

    exp_dir = Path(exp_dir)
    exp = load_experiment(exp_dir / "config.yaml", data_root)
    sampler = build_gaze_model(exp)
    load_gaze_weights(sampler, exp_dir / "checkpoint_latest_gaze")
    return load_task(exp, exp_dir / "config.yaml"), sampler.eval()


def mask_sampler(exp_dir: str | Path, masking: str) -> nn.Module:
    """Random (``masking=random``) or tube (``tube``) masks with the geometry and rho of ``exp_dir``."""
    from autogaze.evaluation.models import load_experiment
    from autogaze.models.random_tube import RandomTube

    exp = load_experiment(Path(exp_dir) / "config.yaml")
    geometry = ("preset", "scales", "max_num_frames", "patch_size", "tubelet_size", "mask_ratio")
    keys = {k: exp.model[k] for k in geometry if k in exp.model}  # any sampler's run gives the geometry
    return RandomTube.from_config({**keys, "masking": masking}).eval()


# ------------------------------------------------------------------ evaluation
@dataclass
class SamplerSpec:
    """name: row label; sampler: a TokenSampler; embed: the tube MAE whose ``embed_tokens`` the
    sampler reads (its own training partner; None for samplers that read no tokens); do_sample:
    draw from p (as in training) or take the top-N_v tokens of p; draws: independent draws averaged
    (a deterministic top-k needs 1)."""

    name: str
    sampler: nn.Module
    embed: nn.Module | None = None
    do_sample: bool = True
    draws: int = 3


@torch.no_grad()
def evaluate_sampler(mae: nn.Module, spec: SamplerSpec, clips: Sequence[ValClip], seed: int = 0,
                     min_cover: float = 0.5) -> dict[str, float]:
    """Clip-weighted means over ``clips`` x ``spec.draws`` of masked_error (under ``mae``), the object
    metrics of the visible sets (NaN without masks) and ``visible_tokens``; ``clips`` evaluated.

    Draw d of batch i uses a generator seeded by (seed, d, i), so every sampler and every MAE sees
    the same random numbers (random masks are then the same masks under every MAE).
    """
    sums: dict[str, float] = {}
    clips_seen = 0
    mae.eval()
    spec.sampler.eval()
    draws = spec.draws if spec.do_sample else 1
    for d in range(draws):
        for i, (batch, objects) in enumerate(clips):
            gen = torch.Generator().manual_seed(seed * 1_000_003 + d * 7_919 + i)
            uses_tokens = spec.sampler.uses_task_tokens
            tokens = spec.embed.embed_tokens(batch.video_for_task) if uses_tokens else None     # [B, N, D]
            budget = spec.sampler.sample_budget(batch.video, training=False, tokens=tokens)
            gazes = spec.sampler.generate(batch.video, budget, generator=gen, tokens=tokens,
                                          do_sample=spec.do_sample).gazes
            out = mae(batch.video_for_task, gazes)
            B = batch.batch_size
            is_visible = gazes.to_mask().view(B, -1) > 0                                       # [B, N]
            per_clip = {"masked_error": masked_error(out.loss_per_token, out.token_is_target),
                        "visible_tokens": is_visible.float().sum(1)}
            if objects is not None:
                cover = tubelet_cover(objects, mae.patch_size, mae.tubelet_size)
                per_clip.update(visible_object_stats(is_visible, cover, min_cover))
            for k, v in per_clip.items():
                sums[k] = sums.get(k, 0.0) + float(v.sum())
            clips_seen += B
    if clips_seen == 0:
        raise ValueError("no val clips to evaluate")
    keys = ("masked_error", "obj_hit", "obj_hit_base", "obj_cover", "area_share", "visible_tokens")
    out = {k: sums[k] / clips_seen if k in sums else float("nan") for k in keys}
    return {**out, "clips": clips_seen / draws}


@torch.no_grad()
def autogaze_object_share(ckpt: str | Path, task_config: str | Path, data_root: str, ratio: float = 0.1,
                          seed: int = 0, batch_size: int = 8) -> dict[str, float]:
    """A trained AutoGaze (save_pretrained folder or experiment folder) on the val clips of
    ``data_root``, greedy decoding with the per-frame budget max(int(ratio P), 1) as in
    ``autogaze.evaluate`` -> gaze_area_on_objects, area_share (pixels, all frames), gazes_per_frame."""
    from autogaze.evaluation.models import load_experiment, load_gaze_model
    from autogaze.models.autogaze.token_space import TokenSpace
    from autogaze.utils.parsing import parse_scales

    exp = load_experiment(task_config, data_root)
    model, prep = load_gaze_model(str(ckpt), dict(exp.model), seed)
    space = TokenSpace(tuple(parse_scales("model.scales", exp.model["scales"])))
    share, area, gazes_n, frames_n, n = 0.0, 0.0, 0.0, 0, 0
    for i, (batch, objects) in enumerate(load_val_clips(task_config, data_root, batch_size, prep)):
        if objects is None:
            raise FileNotFoundError(f"no object masks beside {batch.paths[0]} (synthetic clips only)")
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        budget = model.sample_budget(batch.video, training=False, gazing_ratio=ratio)
        g = model.generate(batch.video, budget, generator=gen).gazes
        boxes = space.pixel_boxes(g.local_ids(), frame_size=objects.shape[-1])              # [B, K, 4]
        share += float(box_object_share(objects, g.frame_index(), boxes, ~g.is_padded).sum())
        area += float(objects.float().mean(dim=(1, 2, 3)).sum())
        gazes_n += float((~g.is_padded).sum())
        frames_n += batch.batch_size * objects.shape[1]
        n += batch.batch_size
    return {"gaze_area_on_objects": share / n, "area_share": area / n, "gazes_per_frame": gazes_n / frames_n}
