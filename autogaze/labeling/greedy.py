"""Greedy gaze labels (paper section 3.2): per frame, add the patch that lowers that
frame's reconstruction loss the most, until the frame's budget is spent.

For frame t with earlier labels ``g_<t`` and the current prefix ``p`` of frame t, every patch c not in
``p`` is tried::

    c* = argmin_c  L_t( g_<t  +  p  +  c )        L_t = task loss of frame t rebuilt by the MAE

and the loss reached after each pick is recorded (``task_losses``, what the NTP task-loss head is fit
to). The MAE is block-causal, so frame t depends only on frames <= t: frames after t are
dropped from the forward, and the earlier frames' labels are fixed context.

All candidates of a step are scored together, ``candidate_batch`` MAE rows per forward. The clip is
embedded once, and the encoder and decoder states of CLS and of the labelled frames < t are kept as
per-layer keys and values (``ClipCache``, block-causal prefix caching): a candidate row runs only its
frame-t tokens, n + 1 in the encoder and P in the decoder, against them. Picks and losses equal
scoring each candidate through the task's public forward (tests/test_label_greedy.py). Tasks the cache
cannot run (any task but the VideoMAE one) are scored through that public forward instead
(forward_scorer.py): slower, same picks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from autogaze.labeling.forward_scorer import ForwardClip
from autogaze.tasks.video_mae_reconstruction import VideoMAEReconstruction
from autogaze.tasks.video_mae_reconstruction.embeddings import decoder_position_rows
from autogaze.tasks.video_mae_reconstruction.prefix_cache import BlockCausalCache
from autogaze.utils.parsing import ConfigError


@dataclass
class ClipLabels:
    """Labels of one clip, in the ``gazing_labels.json`` layout.

    gazing_pos:  T lists of *global* ids ``t * P + local`` in gaze order.
    task_losses: T lists of floats: frame t's loss after gazes 0..j of that frame.
    candidate_pos / candidate_losses (optional, ``label_clip(top_candidates=M)``): for gaze j of
        frame t, the M best candidates of that greedy step (global ids, best first, so entry 0 is
        the pick) and the loss each would have reached. NTP can learn from them as soft targets
        (``algorithm.soft_label_temperature``): near-equal candidates then share the credit.
    """

    gazing_pos: list[list[int]]
    task_losses: list[list[float]]
    candidate_pos: list[list[list[int]]] | None = None
    candidate_losses: list[list[list[float]]] | None = None

    def to_json(self) -> dict:
        out = {"gazing_pos": self.gazing_pos, "task_losses": self.task_losses}
        if self.candidate_pos is not None:
            out |= {"candidate_pos": self.candidate_pos, "candidate_losses": self.candidate_losses}
        return out


class ClipCache:
    """Block-causal caches of one clip for the MAE's encoder and decoder (see ``prefix_cache``).

    Frame t's loss depends on frames <= t only, and the states of CLS and of the labelled frames
    < t do not depend on frame t. So they are computed once, one block per labelled frame
    (``add_frame``), and each candidate row of frame t runs only its own tokens against them:
    its n + 1 gazes in the encoder, frame t's P tokens in the decoder, instead of the whole clip.
    """

    def __init__(self, task, video: Tensor, precision: str = "fp32"):
        """task: VideoMAEReconstruction (frozen, block-causal); video [T, 3, S, S] task-normalised."""
        mae = task.mae
        if not mae.config.causal:
            raise ConfigError("task.recon_model_config.causal", False,
                              "greedy labelling scores frame t from frames <= t only, which needs the block-causal MAE",
                              "label with causal=true (the released videomae.pt is causal)")
        self.task, self.mae, self.P = task, mae, task.tokens_per_frame
        self.autocast = torch.autocast(video.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        self.video = video
        dec = mae.decoder
        with torch.inference_mode(), self.autocast:
            self.tokens = mae.vit.embeddings(video[None])[0]  # [T, P, D]; frames are embedded independently
            self.encoder = BlockCausalCache(mae.vit.encoder.layer)
            self.decoder = BlockCausalCache(dec.decoder_layers)
            cls = mae.vit.layernorm(self.encoder.append(mae.vit.embeddings.cls_embedding().to(self.tokens.dtype)))
            self.decoder.append(dec.decoder_embed(cls) + dec.decoder_pos_embed[:, :1].to(cls.dtype))
            self.pos_rows = decoder_position_rows(dec, mae.config)  # [P, Dd]: position + scale of each local id
        # With an l1-only loss, compare in patch space: the mean |pred - target| is the same over
        # any common layout, and skipping unpatchify saves a [C, 3, S, S] copy per chunk.
        self.l1_only = set(task.loss_weights) == {"l1"}
        self.l1_weight = task.loss_weights.get("l1", 0.0)

    def decoder_rows(self, t: int, latent: Tensor, ids: Tensor) -> Tensor:
        """Decoder inputs of gazed tokens: latent [B, L, D] at frame-local ids [B, L] -> [B, L, Dd]."""
        dec = self.mae.decoder
        x = dec.decoder_embed(latent) + self.pos_rows[ids].to(latent.dtype)
        return x if dec.time_embed is None else x + dec.time_embed[t].to(x.dtype)

    @torch.inference_mode()
    def add_frame(self, t: int, local_ids: list[int]) -> None:
        """Append frame t's labels (frame-local ids, in gaze order) to both caches."""
        if not local_ids:
            return
        ids = torch.tensor([local_ids], dtype=torch.long, device=self.tokens.device)  # [1, n]
        with self.autocast:
            latent = self.mae.vit.layernorm(self.encoder.append(self.tokens[t][ids]))
            self.decoder.append(self.decoder_rows(t, latent, ids))

    def scorer(self, t: int) -> "FrameScorer":
        return FrameScorer(self, t)


class FrameScorer:
    """Reconstruction loss of frame t for many candidate gaze sets at once, given the labels of
    frames < t already in the clip's caches."""

    def __init__(self, cache: ClipCache, t: int):
        self.cache, self.t, self.P = cache, t, cache.P
        mae, dec = cache.mae, cache.mae.decoder
        self.K = mae.num_output_patches
        self.device = cache.tokens.device
        self.target = cache.video[None, t:t + 1]  # [1, 1, 3, S, S]
        self.target_minus_bias = mae.patchify(cache.video[t]) - dec.decoder_pred.bias.detach()  # [K, p*p*3]
        with torch.inference_mode(), cache.autocast:
            # Frame t's decoder grid before any gaze: mask tokens at every position.
            grid = dec.mask_token[0].to(cache.tokens.dtype) + cache.pos_rows.to(cache.tokens.dtype)  # [P, Dd]
            self.mask_grid = grid if dec.time_embed is None else grid + dec.time_embed[t].to(grid.dtype)

    @torch.inference_mode()
    def losses(self, base_local: Tensor, candidates: Tensor) -> Tensor:
        """base_local [n] frame-local ids already gazed in frame t; candidates [C] frame-local ids.
        Returns FloatTensor [C]: frame t's loss with ``context + base_local + [c]``."""
        c, mae, dec = self.cache, self.cache.mae, self.cache.mae.decoder
        C, P, K = candidates.numel(), self.P, self.K
        ids = torch.cat([base_local.expand(C, -1), candidates[:, None]], dim=1)  # [C, n+1]
        with c.autocast:
            latent = mae.vit.layernorm(c.encoder.attend(c.tokens[self.t][ids]))  # [C, n+1, D]
            gazed = c.decoder_rows(self.t, latent, ids)  # [C, n+1, Dd]
            grid = self.mask_grid.to(gazed.dtype).expand(C, P, -1)
            grid = torch.scatter(grid, 1, ids[..., None].expand(-1, -1, grid.shape[-1]), gazed)  # [C, P, Dd]
            # Only the largest scale (the last K ids) is rebuilt, so only its rows need queries at the end.
            out = dec.decoder_norm(c.decoder.attend(grid, last_query_rows=slice(P - K, P)))  # [C, K, Dd]
            if c.l1_only:
                # pred - target = out @ W^T - (target - bias), in place: no bias broadcast copy and
                # no extra [C, K, p*p*3] buffer (that pass was a third of a step at tiny dims).
                W = dec.decoder_pred.weight.to(out.dtype)
                diff = torch.matmul(out, W.t()).sub_(self.target_minus_bias.to(out.dtype))  # [C, K, p*p*3]
                loss = c.l1_weight * diff.abs_().mean((-1, -2))  # [C]
            else:
                recon = mae.unpatchify(dec.decoder_pred(out)[:, None])  # [C, 1, 3, S, S]
                loss = c.task.compute_loss(recon, self.target.expand_as(recon))[:, 0]  # [C]
        return loss.float()


def has_prefix_cache(task) -> bool:
    """ClipCache re-runs the VideoMAE task's own layers block by block, so it serves that task (and its
    subclasses) only; every other task is scored through its public forward."""
    return isinstance(task, VideoMAEReconstruction)


def open_clip(task, video: Tensor, precision: str = "fp32") -> ClipCache | ForwardClip:
    """The clip's scorer source: the prefix cache where the task has one, else the public-forward scorer."""
    return ClipCache(task, video, precision) if has_prefix_cache(task) else ForwardClip(task, video, precision)


def frame_scorer(task, video: Tensor, t: int, context: list[list[int]], precision: str = "fp32") -> FrameScorer:
    """A scorer of frame t with ``context`` (global ids of frames 0..t-1) as the earlier labels."""
    cache = open_clip(task, video, precision)
    for s, frame in enumerate(context):
        cache.add_frame(s, [g - s * cache.P for g in frame])
    return cache.scorer(t)


@dataclass
class FramePicks:
    """Greedy picks of one frame (frame-local ids). ``top_ids``/``top_losses``: per pick, the best
    candidates of that step, best first (empty lists unless asked for)."""

    ids: list[int]
    losses: list[float]
    top_ids: list[list[int]]
    top_losses: list[list[float]]


def greedy_frame(scorer: FrameScorer, budget: int, candidate_batch: int, top_candidates: int = 0,
                 candidate_sample: int = 0, generator: torch.Generator | None = None) -> FramePicks:
    """Greedy picks for frame ``scorer.t``: ``budget`` frame-local ids and the loss after each.

    One Python iteration per *gaze*, never per candidate: the C = P - j remaining patches of step j
    go through the MAE in chunks of ``candidate_batch`` rows. Ties go to the lowest id (argmin; the
    stable sort keeps that order among the ``top_candidates`` too).

    ``candidate_sample`` M > 0 is stochastic greedy (Mirzasoleiman et al., "Lazier Than Lazy Greedy",
    AAAI 2015): each step scores only M of the remaining patches, drawn without replacement from
    ``generator`` (CPU), and picks the best of those. With M = (P / k) ln(1 / eps) for k picks it keeps
    a (1 - 1/e - eps) guarantee where the loss reduction is submodular, at about M / P of the cost.
    """
    P = scorer.P
    device = scorer.device
    if candidate_sample > 0 and generator is None:
        generator = torch.Generator().manual_seed(0)
    is_free = torch.ones(P, dtype=torch.bool, device=device)
    out = FramePicks([], [], [], [])
    for _ in range(min(budget, P)):
        base = torch.tensor(out.ids, dtype=torch.long, device=device)
        candidates = is_free.nonzero()[:, 0]  # [C] ascending
        if 0 < candidate_sample < candidates.numel():
            keep = torch.randperm(candidates.numel(), generator=generator)[:candidate_sample]
            candidates = candidates[keep.sort().values.to(device)]  # [M] ascending: ties still go low
        scores = torch.cat([scorer.losses(base, chunk) for chunk in candidates.split(candidate_batch)])
        best = int(scores.argmin())
        out.ids.append(int(candidates[best]))
        out.losses.append(float(scores[best]))
        if top_candidates > 0:
            order = torch.sort(scores, stable=True).indices[:top_candidates]
            out.top_ids.append(candidates[order].tolist())
            out.top_losses.append(scores[order].tolist())
        is_free[candidates[best]] = False
    return out


def label_clip(task, video: Tensor, budgets: list[int], candidate_batch: int = 64,
               precision: str = "fp32", on_forward=None, top_candidates: int = 0,
               candidate_sample: int = 0, generator: torch.Generator | None = None) -> ClipLabels:
    """Greedy labels of one clip.

    task: any frozen Task (VideoMAEReconstruction uses the prefix cache); video [T, 3, S, S] (task-normalised,
    on the task's device);
    budgets: T per-frame gaze counts (each >= 1). ``on_forward``, if given, is called once per MAE
    forward (tests count forwards with it). ``top_candidates`` M > 0 also records each step's M
    best candidates (``ClipLabels.candidate_pos``); the picks are the same. ``candidate_sample`` > 0
    scores only that many random remaining patches per step (stochastic greedy, ``greedy_frame``),
    drawn from ``generator``; the recorded losses are still the exact losses of the picks.
    """
    T, P = video.shape[0], task.tokens_per_frame
    if len(budgets) != T:
        raise ValueError(f"need one budget per frame: {len(budgets)} budgets for T={T} frames")
    labels = ClipLabels([], [], [] if top_candidates > 0 else None, [] if top_candidates > 0 else None)
    cache = open_clip(task, video, precision)
    for t in range(T):
        scorer = cache.scorer(t)
        if on_forward is not None:
            scorer.losses = _counted(scorer.losses, on_forward)
        picks = greedy_frame(scorer, int(budgets[t]), candidate_batch, top_candidates, candidate_sample, generator)
        cache.add_frame(t, picks.ids)
        labels.gazing_pos.append([t * P + i for i in picks.ids])
        labels.task_losses.append(picks.losses)
        if top_candidates > 0:
            labels.candidate_pos.append([[t * P + i for i in step] for step in picks.top_ids])
            labels.candidate_losses.append(picks.top_losses)
    return labels


def _counted(fn, on_call):
    def wrapper(*args, **kwargs):
        on_call()
        return fn(*args, **kwargs)
    return wrapper


def frozen(task):
    """The task in eval mode with gradients off (the labeller never trains it); returns it."""
    task.set_trainable(False)
    return task.eval()
