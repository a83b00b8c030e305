"""Encode only the gazed patches of a video with a stock image ViT.

The tower is the stock transformers model with two changes, both outside its layers:
1. **Patch selection.** Every frame is resized to each scale (bicubic, align_corners=False, no
   antialias, as upstream; the fixtures fail by 0.3 with antialias), cut into p x p pixel patches,
   and only the gazed ones are kept. The patch conv is then applied to those as the linear map it
   is (a p x p conv with stride p), so ungazed patches never enter the ViT. Each kept patch gets
   the family's own position row, interpolated to its scale's grid by the family's own rule.
2. **The attention mask** (``attention.py``): block-causal across frames by default.
Padded slots are dropped before the layers (``TokenLayout``), so they cost nothing and cannot
affect real ones.

Token ids are AutoGaze's: per frame, scales ascending, row-major inside a scale; global id
``t * P + local``. ``GazedViTMixin`` does all of the above once for every family. A family (a
subclass of a transformers vision model) supplies four small hooks; see docs/integration.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.utils import ModelOutput

from autogaze.models.autogaze.dict_api import gazes_from_gazing_info
from autogaze.types import Gazes

from .attention import ATTN_TYPES, GAZED_ATTENTION, GazedAttention, build_attention, resolve_backend

# AutoGaze's four grids (2, 4, 7, 14 patches a side): 32+64+112+224 at patch 16, 28+56+98+196 at 14.
DEFAULT_GRID_SIDES = (2, 4, 7, 14)


def default_scales(patch_size: int) -> tuple[int, ...]:
    return tuple(g * patch_size for g in DEFAULT_GRID_SIDES)


def parse_scales(scales: str | Sequence[int]) -> tuple[int, ...]:
    """Scales as a string ("32+64+112+224") or a list of ints -> ascending ints (the gaze model's order)."""
    items = scales.split("+") if isinstance(scales, str) else scales
    return tuple(sorted(int(s) for s in items))


@dataclass(frozen=True)
class GazingSettings:
    """How a tower reads gazes. Stored on the model config too (``scales``, ``attn_type``,
    ``max_embed_batch_size``), so a ``save_pretrained`` copy reloads with the same settings.

    scales:               ascending frame sizes in pixels; each a multiple of the patch size.
    patch_size:           the tower's patch side p.
    attn_type:            block_causal | causal | bidirectional | frame_independent.
    max_embed_batch_size: resize and patchify at most this many images (clips x frames) at once;
                          None = all. Bounds the embedding's memory on long videos.
    backend:              "sdpa" or "flash" (resolved from ``attn_implementation``).
    """

    scales: tuple[int, ...]
    patch_size: int
    attn_type: str = "block_causal"
    max_embed_batch_size: int | None = None
    backend: str = "sdpa"

    def __post_init__(self):
        bad = [s for s in self.scales if s % self.patch_size]
        if bad or not self.scales:
            raise ValueError(f"scales={self.scales}: every scale must be a positive multiple of the patch size "
                             f"{self.patch_size} (bad: {bad}); e.g. 32+64+112+224 at 16, 56+112+196+392 at 14")
        if self.attn_type not in ATTN_TYPES:
            raise ValueError(f"attn_type={self.attn_type!r}; valid: {', '.join(ATTN_TYPES)}")
        if self.max_embed_batch_size is not None and self.max_embed_batch_size < 1:
            raise ValueError(f"max_embed_batch_size={self.max_embed_batch_size} must be >= 1 (or None for all)")

    @property
    def grid_sides(self) -> list[int]:
        return [s // self.patch_size for s in self.scales]

    @property
    def tokens_per_frame(self) -> int:
        """P, e.g. 4+16+49+196 = 265 for 32+64+112+224 at patch 16."""
        return sum(g * g for g in self.grid_sides)


@dataclass
class GazedVisionOutput(ModelOutput):
    """last_hidden_state:   [B, N, D]  one row per gaze slot, in gaze order; rows of padded slots
                                      are zeros (padded slots are not encoded; drop them with
                                      ``is_padded``).
    pooler_output:       [B, D]     the family's pooled feature (None when the tower has none).
    is_padded:           [B, N]     True = dummy slot, copied from the gazes.
    prefix_hidden_state: [B, T, R, D] per-frame prefix tokens (DINOv2: CLS + registers), or None.
    """

    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    is_padded: Tensor | None = None
    prefix_hidden_state: Tensor | None = None


@dataclass
class TokenLayout:
    """Where real slots and per-frame prefix tokens sit in the sequences the encoder runs on.

    **Padded slots are dropped**, not masked: each clip's real slots are packed to the front (in
    order), so a padded slot costs nothing (with tau early stopping most slots are padding: 144 of
    160 in the benchmark). Their output rows come back as zeros. Two layouts, each a flat per-clip
    vector of ``rows * length`` positions:
    * interleaved (one sequence per clip): [prefix_0, real slots of frame 0, prefix_1, ...],
      then filler up to the longest clip: length L = T*R + max_b (real slots of clip b);
    * grouped (frame_independent, one sequence per frame): frame t owns positions [t*W, (t+1)*W),
      W = R + the most real slots any frame has. Time and the mask then grow linearly with T.
    Filler positions are never real.
    slot_index:     LongTensor [B, N]    position of each slot; padded slots point at ``size`` (a dump).
    prefix_index:   LongTensor [B, T*R]  positions of the prefix tokens, frame-major.
    frame_of_token: LongTensor [B, L]    frame of each position (filler: T), interleaved only.
    rows, length:   the encoder sees [B * rows, length]; rows = 1 (interleaved) or T (grouped).
    """

    slot_index: Tensor
    prefix_index: Tensor
    frame_of_token: Tensor | None
    rows: int
    length: int
    identity: bool  # no prefix, no padding, no filler: the packed sequence is the slots themselves

    @property
    def size(self) -> int:
        return self.rows * self.length

    @classmethod
    def make(cls, gazes: Gazes, num_prefix: int, grouped: bool) -> "TokenLayout":
        keep = ~gazes.is_padded  # [B, N]
        (B, N), T, R, dev = keep.shape, gazes.num_frames, num_prefix, keep.device
        frame = gazes.frame_index()  # [N]
        real_per_frame = torch.zeros(B, T, dtype=torch.long, device=dev).index_add_(1, frame, keep.long())  # [B, T]
        real_before = real_per_frame.cumsum(1) - real_per_frame  # [B, T] real slots in earlier frames
        rank = keep.long().cumsum(1) - 1  # [B, N] rank among the clip's real slots
        r = torch.arange(R, device=dev)
        frames = torch.arange(T, device=dev)
        if grouped:
            W = R + max(1, int(real_per_frame.max()))
            slot_index = frame * W + R + rank - real_before[:, frame]  # [B, N]
            prefix_index = (frames[:, None] * W + r).flatten().expand(B, -1)  # [B, T*R]
            rows, length, frame_of_token = T, W, None
        else:
            length = max(1, T * R + int(real_per_frame.sum(1).max()))
            slot_index = rank + (frame + 1) * R  # [B, N]
            prefix_index = ((frames * R + real_before)[..., None] + r).flatten(1)  # [B, T*R]
            rows = 1
        size = rows * length
        slot_index = torch.where(keep, slot_index, size)
        if not grouped:
            frame_of_token = torch.full((B, size + 1), T, dtype=torch.long, device=dev)
            frame_of_token.scatter_(1, slot_index, frame.expand(B, -1))
            frame_of_token.scatter_(1, prefix_index, torch.repeat_interleave(frames, R).expand(B, -1))
            frame_of_token = frame_of_token[:, :size]
        identity = R == 0 and size == N and bool(keep.all())
        return cls(slot_index, prefix_index, frame_of_token, rows, length, identity)

    def pack(self, slots: Tensor, prefix: Tensor | None) -> tuple[Tensor, Tensor]:
        """slots [B, N, D], prefix [R, D] or None -> sequences [B*rows, length, D], is_real [B*rows, length]."""
        B, N, D = slots.shape
        if self.identity:
            return slots, torch.ones(B, N, dtype=torch.bool, device=slots.device)
        seq = slots.new_zeros(B, self.size + 1, D)  # +1: the dump position of padded slots
        seq = seq.scatter(1, self.slot_index[..., None].expand(-1, -1, D), slots)
        is_real = torch.zeros(B, self.size + 1, dtype=torch.bool, device=slots.device)
        is_real.scatter_(1, self.slot_index, True)
        if prefix is not None:
            rows = prefix.to(seq.dtype).repeat(self.prefix_index.shape[1] // prefix.shape[0], 1)  # [T*R, D]
            seq = seq.scatter(1, self.prefix_index[..., None].expand(-1, -1, D), rows.expand(B, -1, -1))
            is_real.scatter_(1, self.prefix_index, True)
        seq, is_real = seq[:, : self.size], is_real[:, : self.size]
        return seq.reshape(B * self.rows, self.length, D), is_real.reshape(B * self.rows, self.length)

    def unpack(self, hidden: Tensor, batch: int, num_prefix: int) -> tuple[Tensor, Tensor | None]:
        """[B*rows, length, D] -> slots [B, N, D] (padded rows zero), prefix [B, T, R, D] or None."""
        D = hidden.shape[-1]
        if self.identity:
            return hidden, None
        flat = hidden.reshape(batch, self.size, D)
        flat = torch.cat([flat, flat.new_zeros(batch, 1, D)], dim=1)  # the dump reads as zeros
        slots = flat.gather(1, self.slot_index[..., None].expand(-1, -1, D))
        if not num_prefix:
            return slots, None
        prefix = flat.gather(1, self.prefix_index[..., None].expand(-1, -1, D))
        return slots, prefix.view(batch, -1, num_prefix, D)


class GazedViTMixin:
    """Gazed patch embedding, token layout and attention mask for a transformers vision tower.

    Mix in *before* the transformers class: ``class MyTower(GazedViTMixin, HFVisionModel)``, call
    ``self.init_gazing()`` at the end of ``__init__``, and implement the hooks:

    * ``_gazed_patch_linear() -> (weight [D, C*p*p], bias [D] or None)``: the patch conv as a linear map;
      columns ordered (channel, row, col), which is ``conv.weight.flatten(1)``.
    * ``_gazed_position_rows(side) -> [side*side, D]``: position rows for a side x side grid, by the
      family's own interpolation rule (use its stock ``interpolate_pos_encoding``).
    * ``_gazed_prefix_rows() -> [R, D] or None``: tokens that open every frame (CLS, registers).
    * ``_gazed_encode(hidden [B', L, D], attention: GazedAttention) -> [B', L, D]``: the stock
      layers and final norm, with ``attention`` passed where the layers take their mask.
    The patch size is read from ``config.patch_size``.
    """

    gazing: GazingSettings

    # ------------------------------------------------------------------ set-up

    def init_gazing(self) -> None:
        """Settings from the config (defaults for a stock config); routes attention to our function."""
        cfg = self.config
        self.configure_gazing(getattr(cfg, "scales", None) or default_scales(cfg.patch_size),
                              getattr(cfg, "attn_type", None) or "block_causal",
                              getattr(cfg, "max_embed_batch_size", None),
                              getattr(cfg, "gazed_attn_implementation", None) or "sdpa")

    def configure_gazing(self, scales: str | Sequence[int], attn_type: str = "block_causal",
                         max_embed_batch_size: int | None = None, attn_implementation: str = "sdpa") -> None:
        """Validate and store the settings (on ``self.gazing`` and the config). Adds no parameters."""
        self.gazing = GazingSettings(parse_scales(scales), int(self.config.patch_size), attn_type,
                                     max_embed_batch_size, resolve_backend(attn_implementation))
        cfg = self.config
        cfg.scales, cfg.attn_type = list(self.gazing.scales), attn_type
        cfg.max_embed_batch_size, cfg.gazed_attn_implementation = max_embed_batch_size, attn_implementation
        # The stock layers look their attention function up by this name at every call.
        cfg._attn_implementation = GAZED_ATTENTION

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, scales: str | Sequence[int] | None = None,
                        attn_type: str | None = None, attn_implementation: str | None = None,
                        max_embed_batch_size: int | None = None, **kwargs):
        """Load a **stock** checkpoint (hub id or folder) and set the gazing options; an option left
        at None keeps the checkpoint's stored value, else the default (AutoGaze's 2/4/7/14-patch grids,
        i.e. 32+64+112+224 at patch 16; block_causal; sdpa)."""
        # The stock loader only needs a valid name here; ours replaces it in configure_gazing.
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, attn_implementation="sdpa",
                                        **kwargs)
        cfg = model.config
        model.configure_gazing(
            scales if scales is not None else getattr(cfg, "scales", None) or default_scales(cfg.patch_size),
            attn_type or getattr(cfg, "attn_type", None) or "block_causal",
            max_embed_batch_size if max_embed_batch_size is not None else getattr(cfg, "max_embed_batch_size", None),
            attn_implementation or getattr(cfg, "gazed_attn_implementation", None) or "sdpa")
        return model

    # ------------------------------------------------------------------ gazes

    def gazes_from(self, gazing_info: dict | Gazes, num_frames: int, device: torch.device) -> Gazes:
        """Upstream's dict (``gazing_pos``, ``if_padded_gazing``, ``num_gazing_each_frame``, e.g. the
        gaze model's output) or our ``Gazes`` -> validated Gazes on ``device``."""
        P = self.gazing.tokens_per_frame
        if isinstance(gazing_info, dict):
            given = gazing_info.get("num_vision_tokens_each_frame")
            if given is not None and int(given) != P:
                raise ValueError(f"gazes index {given} tokens per frame but this tower's scales {self.gazing.scales} "
                                 f"at patch {self.gazing.patch_size} give {P}: gaze with target_scales/"
                                 f"target_patch_size matching the tower, or pass its scales to from_pretrained")
        gazes = gazes_from_gazing_info(gazing_info, P)
        if gazes.tokens_per_frame != P:
            raise ValueError(f"Gazes.tokens_per_frame={gazes.tokens_per_frame} but the tower's scales "
                             f"{self.gazing.scales} at patch {self.gazing.patch_size} give {P}")
        if gazes.num_frames != num_frames:
            raise ValueError(f"gazes cover {gazes.num_frames} frames but pixel_values has {num_frames}")
        return gazes.to(device)

    # ------------------------------------------------------------------ embedding

    def _gather_patches(self, frames: Tensor, local: Tensor, frame: Tensor) -> Tensor:
        """Raw pixels of the gazed patches of a run of frames.

        frames: [B, t, C, H, W]; local: LongTensor [B, n] frame-local ids; frame: LongTensor [n]
        frame of each slot, relative to this run. Returns [B, n, C*p*p], columns ordered (c, i, j)
        like ``conv.weight.flatten(1)``.
        Each scale is read through a strided patch view of its resized frames, so only gazed
        patches are copied (F.unfold of every patch measured several times slower, and needs a
        [B, t*P, C*p*p] buffer). Every slot reads a (clamped) patch at every scale and ``where``
        keeps its own: a few small gathers cost less than splitting the slots by scale.
        """
        B, t, C, H, W = frames.shape
        p = self.gazing.patch_size
        x = frames.reshape(B * t, C, H, W)
        image = frame[None, :] + torch.arange(B, device=frames.device)[:, None] * t  # [B, n] into x
        rows = None
        offset = 0
        for s, g in zip(self.gazing.scales, self.gazing.grid_sides):
            xs = x if (H, W) == (s, s) else F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False)
            view = xs.reshape(B * t, C, g, p, g, p).permute(0, 2, 4, 1, 3, 5)  # [B*t, g, g, C, p, p], a view
            rel = (local - offset).clamp(0, g * g - 1)  # [B, n] row-major index inside this scale
            patch = view[image, rel // g, rel % g].flatten(2)  # [B, n, C*p*p]
            in_scale = ((local >= offset) & (local < offset + g * g))[..., None]
            rows = patch if rows is None else torch.where(in_scale, patch, rows)
            offset += g * g
        return rows

    def embed_gazed(self, pixel_values: Tensor, gazes: Gazes) -> Tensor:
        """pixel_values [B, T, C, H, W] -> embeddings of the gazed patches [B, N, D].

        Frames are resized in chunks of ``max_embed_batch_size`` images (clips x frames); a chunk
        of frames owns a contiguous run of slots (slots are laid out frame after frame).
        """
        B, T = pixel_values.shape[:2]
        weight, bias = self._gazed_patch_linear()
        pixel_values = pixel_values.to(weight.dtype)
        local, frame = gazes.local_ids(), gazes.frame_index()  # [B, N], [N]
        step = T if self.gazing.max_embed_batch_size is None else max(1, self.gazing.max_embed_batch_size // B)
        first_slot = F.pad(gazes.num_per_frame.cumsum(0), (1, 0)).tolist()  # [T+1] slot range of each frame
        rows = []
        for t0 in range(0, T, step):
            t1 = min(T, t0 + step)
            c0, c1 = first_slot[t0], first_slot[t1]
            rows.append(self._gather_patches(pixel_values[:, t0:t1], local[:, c0:c1], frame[c0:c1] - t0))
        rows = torch.cat(rows, dim=1) if len(rows) > 1 else rows[0]  # [B, N, C*p*p]
        pos = torch.cat([self._gazed_position_rows(g) for g in self.gazing.grid_sides])  # [P, D]
        # The patch conv as the linear map it is, on the gazed patches only.
        return F.linear(rows, weight, bias) + pos[local]  # [B, N, D]

    # ------------------------------------------------------------------ encoder

    def _use_varlen(self, device: torch.device, dtype: torch.dtype) -> bool:
        if self.gazing.backend != "flash" or device.type != "cuda":
            return False
        if torch.is_autocast_enabled(device.type):
            dtype = torch.get_autocast_dtype(device.type)
        return dtype in (torch.float16, torch.bfloat16)  # flash-attn has no fp32 kernel

    def encode_gazed(self, pixel_values: Tensor, gazing_info: dict | Gazes) -> tuple[Tensor, Tensor | None, Gazes]:
        """pixel_values [B, T, C, H, W] -> (slots [B, N, D], prefix [B, T, R, D] or None, gazes)."""
        if pixel_values.dim() != 5:
            raise ValueError(f"pixel_values must be [B, T, C, H, W], got shape {tuple(pixel_values.shape)}")
        B, T = pixel_values.shape[:2]
        gazes = self.gazes_from(gazing_info, T, pixel_values.device)
        slots = self.embed_gazed(pixel_values, gazes)
        prefix = self._gazed_prefix_rows()
        R = 0 if prefix is None else prefix.shape[0]
        grouped = self.gazing.attn_type == "frame_independent"
        layout = TokenLayout.make(gazes, R, grouped)
        seq, is_real = layout.pack(slots, prefix)
        # Grouped sequences are single frames: inside one, every attention type is bidirectional.
        attention = build_attention(is_real, "bidirectional" if grouped else self.gazing.attn_type,
                                    layout.frame_of_token, use_varlen=self._use_varlen(seq.device, seq.dtype))
        hidden = self._gazed_encode(seq, attention)  # [B*rows, length, D]
        slots_out, prefix_out = layout.unpack(hidden, B, R)
        return slots_out, prefix_out, gazes

    # ------------------------------------------------------------------ hooks (per family)

    def _gazed_patch_linear(self) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def _gazed_position_rows(self, side: int) -> Tensor:
        raise NotImplementedError

    def _gazed_prefix_rows(self) -> Tensor | None:
        return None

    def _gazed_encode(self, hidden: Tensor, attention: GazedAttention) -> Tensor:
        raise NotImplementedError
