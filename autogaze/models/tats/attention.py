"""Trajectory attention (Motionformer, Patrick et al., NeurIPS 2021) and the block TATS builds on it.

Tokens are a clip grid, N = T' * S ordered (t', s) (S = P tokens per tube-frame); there is no CLS
token (TATS scores tokens, and its critic pools them). Per head, d = D / h:

* stage 1, per frame: for query token n and every frame t', attend over that frame's S tokens,
      y1[n, t'] = sum_s softmax_s(q_n . k_{t's} / sqrt(d)) v_{t's}           -> [B, h, N, T', d]
  i.e. where the content of n sits in frame t' (its trajectory);
* stage 2, along the trajectory: the entry of n's own frame t(n) is the query,
      qt = Wq y1[n, t(n)],  kt, vt = Wk y1[n, t'], Wv y1[n, t'],
      y_n = sum_t' softmax_t'(qt . kt / sqrt(d)) vt                           -> [B, N, D]
  then the output projection. ``trajectory_values=True`` uses y1 itself as the values (what
  Motionformer's released code does by default) instead of Wv y1 (its paper's equation).

Exact stage 1 stores B h N^2 scores (0.12 GB per clip at 1568 tokens x 12 heads in float32), fine
at our sizes. ``landmarks=m`` replaces it with the Orthoformer approximation Motionformer uses
(softmax(q L^T) softmax_per_frame(L k^T) v with m landmarks L picked among the queries, greedily
most orthogonal), O(N m) memory.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from transformers import VideoMAEConfig
from transformers.models.videomae.modeling_videomae import VideoMAEIntermediate, VideoMAEOutput


def frame_attention(q: Tensor, k: Tensor, v: Tensor, num_frames: int) -> Tensor:
    """Exact stage 1. q, k, v [B, h, N, d] (q pre-scaled) -> y1 [B, h, N, T', d]."""
    kf = k.unflatten(2, (num_frames, -1))                                        # [B, h, T', S, d]
    vf = v.unflatten(2, (num_frames, -1))
    attn = torch.einsum("bhnd,bhtsd->bhnts", q, kf).softmax(-1)                   # softmax within each frame
    return torch.einsum("bhnts,bhtsd->bhntd", attn, vf)


@torch.no_grad()
def orthogonal_landmarks(q: Tensor, num_landmarks: int) -> Tensor:
    """q [B, h, N, d] -> landmark indices [B, h, m], m = min(num_landmarks, N).

    Greedy: start from the query of largest norm, then repeatedly add the query whose largest
    |cosine| to the chosen set is smallest (Orthoformer's idea of spanning the queries with few,
    near-orthogonal ones). No gradient: the choice is discrete.
    """
    B, h, N, _ = q.shape
    m = min(int(num_landmarks), N)
    unit = F.normalize(q.float(), dim=-1)
    idx = q.float().norm(dim=-1).argmax(-1)                                       # [B, h]
    chosen = [idx]
    closeness = torch.zeros(B, h, N, device=q.device)
    for _ in range(m - 1):
        last = unit.gather(2, idx[..., None, None].expand(-1, -1, 1, unit.shape[-1]))  # [B, h, 1, d]
        closeness = torch.maximum(closeness, (unit * last).sum(-1).abs())
        closeness.scatter_(2, idx[..., None], float("inf"))                       # never pick twice
        idx = closeness.argmin(-1)
        chosen.append(idx)
    return torch.stack(chosen, -1)


def landmark_frame_attention(q: Tensor, k: Tensor, v: Tensor, num_frames: int, num_landmarks: int) -> Tensor:
    """Approximate stage 1 through m landmarks. q, k, v [B, h, N, d] (q pre-scaled) -> [B, h, N, T', d]."""
    d = q.shape[-1]
    idx = orthogonal_landmarks(q, num_landmarks)                                  # [B, h, m]
    lm = q.gather(2, idx[..., None].expand(-1, -1, -1, d))                        # [B, h, m, d], pre-scaled
    kf = k.unflatten(2, (num_frames, -1))                                         # [B, h, T', S, d]
    vf = v.unflatten(2, (num_frames, -1))
    to_lm = torch.einsum("bhnd,bhmd->bhnm", q, lm * d ** 0.5).softmax(-1)        # [B, h, N, m]
    from_lm = torch.einsum("bhmd,bhtsd->bhmts", lm, kf).softmax(-1)               # per frame, over s
    lm_out = torch.einsum("bhmts,bhtsd->bhmtd", from_lm, vf)                      # [B, h, m, T', d]
    return torch.einsum("bhnm,bhmtd->bhntd", to_lm, lm_out)


class TrajectoryAttention(nn.Module):
    """x [B, N, D] (N = T' * S, ordered (t', s)) -> [B, N, D]; see the module docstring."""

    def __init__(self, dim: int, num_heads: int, *, landmarks: int | None = None, trajectory_values: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.scale = num_heads, (dim // num_heads) ** -0.5
        self.landmarks, self.trajectory_values = landmarks, trajectory_values
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj_q = nn.Linear(dim, dim)
        # With trajectory values no value projection exists (it would be a parameter without grad).
        self.proj_kv = nn.Linear(dim, dim if trajectory_values else 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        B, N, D = x.shape
        if N % num_frames:
            raise ValueError(f"{N} tokens do not split into {num_frames} frames")
        h, S = self.num_heads, N // num_frames
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=h)
        q = q * self.scale
        y1 = (frame_attention(q, k, v, num_frames) if self.landmarks is None
              else landmark_frame_attention(q, k, v, num_frames, self.landmarks))
        y1 = rearrange(y1, "b h n t d -> b n t (h d)")                            # [B, N, T', D]
        n = torch.arange(N, device=x.device)
        own = y1[:, n, n // S]                                                    # [B, N, D] own-frame entry
        qt = rearrange(self.proj_q(own), "b n (h d) -> b h n d", h=h) * self.scale
        kv = self.proj_kv(y1)
        kt = rearrange(kv[..., :D], "b n t (h d) -> b h n t d", h=h)
        vt = rearrange(y1 if self.trajectory_values else kv[..., D:], "b n t (h d) -> b h n t d", h=h)
        attn = torch.einsum("bhnd,bhntd->bhnt", qt, kt).softmax(-1)               # along the trajectory
        y = torch.einsum("bhnt,bhntd->bhnd", attn, vt)
        return self.proj(rearrange(y, "b h n d -> b n (h d)"))


class TrajectoryBlock(nn.Module):
    """Pre-LN transformer block with trajectory attention: x + TA(LN(x)), then + MLP(LN(.)).
    The MLP is transformers' VideoMAE one (``VideoMAEIntermediate`` + ``VideoMAEOutput``, which adds
    the residual)."""

    def __init__(self, config: VideoMAEConfig, *, landmarks: int | None = None, trajectory_values: bool = False):
        super().__init__()
        D = config.hidden_size
        self.norm1 = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.attn = TrajectoryAttention(D, config.num_attention_heads, landmarks=landmarks,
                                        trajectory_values=trajectory_values)
        self.norm2 = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.mlp_in = VideoMAEIntermediate(config)
        self.mlp_out = VideoMAEOutput(config)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        """x [B, N, D] -> [B, N, D]."""
        x = x + self.attn(self.norm1(x), num_frames)
        return self.mlp_out(self.mlp_in(self.norm2(x)), x)
