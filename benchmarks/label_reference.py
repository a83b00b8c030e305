"""Reference scorers that ``benchmarks/label.py`` times against the labeller's prefix-cached one.

Both have the interface of ``autogaze.labeling.greedy.FrameScorer`` (``losses(base, candidates)``,
``P``, ``device``), so ``greedy_frame`` drives all three the same way.

* ``PublicForwardScorer``: each candidate set is one row of the task's public ``forward`` (frames
  0..t, ``frame_ids=[t]``), the obvious way to write a labeller.
* ``UncachedScorer``: the labeller before prefix caching (to commit c0807b8): the frames
  are embedded once, but every row reruns the encoder over all context gazes and the decoder over
  all context slots plus frame t's tokens, under the block-causal mask.
"""
from __future__ import annotations

import torch
from torch import Tensor

from autogaze.tasks.video_mae_reconstruction.masks import block_causal_mask
from autogaze.types import Gazes


class _RowGazes:
    """Gazes of C rows: context (global ids of frames < t), then base + one candidate in frame t."""

    def __init__(self, task, t: int, context: list[list[int]], device):
        self.t, self.P = t, task.tokens_per_frame
        self.ctx_ids = torch.tensor([i for frame in context for i in frame], dtype=torch.long, device=device)
        self.ctx_counts = [len(frame) for frame in context]
        self.device = device

    def __call__(self, base_local: Tensor, candidates: Tensor) -> Gazes:
        C, t, P = candidates.numel(), self.t, self.P
        shared = torch.cat([self.ctx_ids, base_local + t * P])
        ids = torch.cat([shared.expand(C, -1), (candidates + t * P)[:, None]], dim=1)  # [C, M+n+1]
        counts = torch.tensor([*self.ctx_counts, base_local.numel() + 1], dtype=torch.long)
        return Gazes(ids, torch.zeros_like(ids, dtype=torch.bool), counts, P)


class PublicForwardScorer:
    """``task(video[:t+1] repeated C times, gazes, frame_ids=[t]).loss_per_frame``."""

    def __init__(self, task, video: Tensor, t: int, context: list[list[int]]):
        self.task, self.t, self.P, self.device = task, t, task.tokens_per_frame, video.device
        self.frames = video[None, : t + 1]
        self.gazes = _RowGazes(task, t, context, video.device)

    @torch.inference_mode()
    def losses(self, base_local: Tensor, candidates: Tensor) -> Tensor:
        g = self.gazes(base_local, candidates)
        clip = self.frames.expand(candidates.numel(), -1, -1, -1, -1)
        return self.task(clip, g, frame_ids=[self.t]).loss_per_frame[:, 0].float()


class UncachedScorer:
    """Shared frame embeddings, full block-causal encoder and decoder per row (l1 in patch space)."""

    def __init__(self, task, video: Tensor, t: int, context: list[list[int]]):
        self.task, self.mae, self.t, self.P, self.device = task, task.mae, t, task.tokens_per_frame, video.device
        with torch.inference_mode():
            self.tokens = self.mae.vit.embeddings(video[None, : t + 1]).flatten(1, 2)  # [1, (t+1)*P, D]
        self.target_patches = self.mae.patchify(video[t])[None, None]  # [1, 1, K, p*p*3]
        self.gazes = _RowGazes(task, t, context, video.device)
        self.frame_ids = torch.tensor([t], device=video.device)

    @torch.inference_mode()
    def losses(self, base_local: Tensor, candidates: Tensor) -> Tensor:
        g, mae = self.gazes(base_local, candidates), self.mae
        emb, C, D = mae.vit.embeddings, candidates.numel(), self.tokens.shape[-1]
        x = self.tokens.expand(C, -1, -1).gather(1, g.ids[..., None].expand(-1, -1, D))
        x = torch.cat([emb.cls_embedding().expand(C, -1, -1), x], dim=1)
        mask = block_causal_mask(g.frame_index(), ~g.is_padded, mae.config.causal)
        latent = mae.vit.layernorm(mae._run_layers(mae.vit.encoder.layer, x, mask))
        patches = mae.forward_decoder(latent, g, self.frame_ids, self.t + 1)  # [C, 1, K, p*p*3]
        return (patches - self.target_patches).abs().mean((-1, -2))[:, 0].float()

