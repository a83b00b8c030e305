"""Greedy gaze labels (paper section 3.2): per frame, add the patch that lowers that
frame's reconstruction loss the most, until the frame's budget is spent.

For frame t with earlier labels ``g_<t`` and the current prefix ``p`` of frame t, every patch c not in
``p`` is tried::

    c* = argmin_c  L_t( g_<t  +  p  +  c )        L_t = task loss of frame t rebuilt by the MAE

and the loss reached after each pick is recorded (``task_losses``, what the NTP task-loss head is fit
to). The MAE is block-causal, so frame t depends only on frames <= t: frames after t are
dropped from the forward, and the earlier frames' labels are fixed context.

All candidates of a step are scored together, ``candidate_batch`` MAE rows per forward. The frames'
encoder tokens are embedded once per frame and shared by every row (``expand``), so the per-row work
is only the transformer layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from autogaze.tasks.video_mae_reconstruction.masks import block_causal_mask
from autogaze.types import Gazes


@dataclass
class ClipLabels:
    """Labels of one clip, in the ``gazing_labels.json`` layout.

    gazing_pos:  T lists of *global* ids ``t * P + local`` in gaze order.
    task_losses: T lists of floats: frame t's loss after gazes 0..j of that frame.
    """

    gazing_pos: list[list[int]]
    task_losses: list[list[float]]

    def to_json(self) -> dict:
        return {"gazing_pos": self.gazing_pos, "task_losses": self.task_losses}


class FrameScorer:
    """Reconstruction loss of one target frame for many candidate gaze sets at once.

    Built per (clip, frame t): embeds frames 0..t once. ``losses(base_local, candidates)`` then
    scores, for each candidate c, the gazes ``context + base_local + [c]`` of frame t.
    """

    def __init__(self, task, video: Tensor, t: int, context: list[list[int]], precision: str = "fp32"):
        """task: VideoMAEReconstruction (frozen); video [T', 3, S, S] task-normalised, T' > t;
        context: the labels (global ids) of frames 0..t-1."""
        self.task, self.mae, self.t = task, task.mae, t
        self.P = task.tokens_per_frame
        device = video.device
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        frames = video[None, : t + 1]  # [1, t+1, 3, S, S]; later frames cannot reach frame t
        with torch.inference_mode(), self.autocast:
            self.tokens = self.mae.vit.embeddings(frames).flatten(1, 2)  # [1, (t+1)*P, D]
        self.target = frames[:, t:t + 1]  # [1, 1, 3, S, S]
        # With an l1-only loss, compare in patch space: the mean |pred - target| is the same over
        # any common layout, and skipping unpatchify saves a [C, 3, S, S] copy per chunk (the
        # largest cost at 224 px: 40% of a step, measured with torch.profiler on the tiny MAE).
        self.l1_only = set(task.loss_weights) == {"l1"}
        self.l1_weight = task.loss_weights.get("l1", 0.0)
        self.target_patches = self._patchify(self.target[0, 0])[None, None]  # [1, 1, K, p*p*3]
        self.ctx_ids = torch.tensor([i for frame in context for i in frame], dtype=torch.long, device=device)
        self.ctx_counts = [len(frame) for frame in context]
        self.frame_ids = torch.tensor([t], device=device)

    def _gazes(self, base_local: Tensor, candidates: Tensor) -> Gazes:
        """Gazes [C, M + n + 1]: context, then ``base_local`` [n], then one candidate [C] per row."""
        C, t, P = candidates.numel(), self.t, self.P
        shared = torch.cat([self.ctx_ids, base_local + t * P])  # [M + n]
        ids = torch.cat([shared.expand(C, -1), (candidates + t * P)[:, None]], dim=1)  # [C, M+n+1]
        counts = torch.tensor([*self.ctx_counts, base_local.numel() + 1], dtype=torch.long)
        return Gazes(ids, torch.zeros_like(ids, dtype=torch.bool), counts, P)

    def _encode(self, gazes: Gazes) -> Tensor:
        """Encoder over the shared frame tokens -> latent [C, 1+N, D].

        Same computation as ``MultiScaleViTMAE.forward_encoder`` minus the embedding, which is done
        once in ``__init__`` instead of once per candidate row (all gazes here are real, no pads).
        """
        emb, C = self.mae.vit.embeddings, gazes.ids.shape[0]
        D = self.tokens.shape[-1]
        x = self.tokens.expand(C, -1, -1).gather(1, gazes.ids[..., None].expand(-1, -1, D))  # [C, N, D]
        x = torch.cat([emb.cls_embedding().to(x.dtype).expand(C, -1, -1), x], dim=1)  # [C, 1+N, D]
        mask = block_causal_mask(gazes.frame_index(), ~gazes.is_padded, self.mae.config.causal)
        x = self.mae._run_layers(self.mae.vit.encoder.layer, x, mask)
        return self.mae.vit.layernorm(x)

    @torch.inference_mode()
    def losses(self, base_local: Tensor, candidates: Tensor) -> Tensor:
        """base_local [n] frame-local ids already gazed in frame t; candidates [C] frame-local ids.
        Returns FloatTensor [C]: frame t's loss with ``base_local + [c]``."""
        gazes = self._gazes(base_local, candidates)
        with self.autocast:
            latent = self._encode(gazes)
            patches = self.mae.forward_decoder(latent, gazes, self.frame_ids, self.t + 1)  # [C, 1, K, p*p*3]
            if self.l1_only:
                loss = self.l1_weight * (patches - self.target_patches).abs().mean((-1, -2))  # [C, 1]
            else:
                recon = self.mae.unpatchify(patches)  # [C, 1, 3, S, S]
                loss = self.task.compute_loss(recon, self.target.expand_as(recon))  # [C, 1]
        return loss[:, 0].float()

    def _patchify(self, frame: Tensor) -> Tensor:
        """[3, S, S] -> [K, p*p*3], the inverse of ``MultiScaleViTMAE.unpatchify`` (row-major patches,
        (row, col, channel) inside a patch)."""
        p = self.mae.config.patch_size
        C, H, W = frame.shape
        x = frame.reshape(C, H // p, p, W // p, p).permute(1, 3, 2, 4, 0)  # [h, w, p, p, C]
        return x.reshape((H // p) * (W // p), p * p * C)


def greedy_frame(scorer: FrameScorer, budget: int, candidate_batch: int) -> tuple[list[int], list[float]]:
    """Greedy picks for frame ``scorer.t``: ``budget`` frame-local ids and the loss after each.

    One Python iteration per *gaze*, never per candidate: the C = P - j remaining patches of step j
    go through the MAE in chunks of ``candidate_batch`` rows. Ties go to the lowest id (argmin).
    """
    P = scorer.P
    device = scorer.ctx_ids.device
    is_free = torch.ones(P, dtype=torch.bool, device=device)
    picked: list[int] = []
    losses: list[float] = []
    for _ in range(min(budget, P)):
        base = torch.tensor(picked, dtype=torch.long, device=device)
        candidates = is_free.nonzero()[:, 0]  # [C] ascending
        scores = torch.cat([scorer.losses(base, chunk) for chunk in candidates.split(candidate_batch)])
        best = int(scores.argmin())
        picked.append(int(candidates[best]))
        losses.append(float(scores[best]))
        is_free[candidates[best]] = False
    return picked, losses


def label_clip(task, video: Tensor, budgets: list[int], candidate_batch: int = 64,
               precision: str = "fp32", on_forward=None) -> ClipLabels:
    """Greedy labels of one clip.

    task: VideoMAEReconstruction; video [T, 3, S, S] (task-normalised, on the task's device);
    budgets: T per-frame gaze counts (each >= 1). ``on_forward``, if given, is called once per MAE
    forward (tests count forwards with it).
    """
    T, P = video.shape[0], task.tokens_per_frame
    if len(budgets) != T:
        raise ValueError(f"need one budget per frame: {len(budgets)} budgets for T={T} frames")
    gazing_pos: list[list[int]] = []
    task_losses: list[list[float]] = []
    for t in range(T):
        scorer = FrameScorer(task, video, t, gazing_pos, precision)
        if on_forward is not None:
            scorer.losses = _counted(scorer.losses, on_forward)
        local, losses = greedy_frame(scorer, int(budgets[t]), candidate_batch)
        gazing_pos.append([t * P + i for i in local])
        task_losses.append(losses)
    return ClipLabels(gazing_pos, task_losses)


def _counted(fn, on_call):
    def wrapper(*args, **kwargs):
        on_call()
        return fn(*args, **kwargs)
    return wrapper


def frozen(task):
    """The task in eval mode with gradients off (the labeller never trains it); returns it."""
    task.set_trainable(False)
    return task.eval()
