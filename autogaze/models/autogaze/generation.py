"""Frame-by-frame gaze generation with a KV cache, our own decode loop.

Per frame: feed [pending tokens | V_t], then repeatedly read the K heads at the last position,
pick a chunk of up to K ids, and feed that chunk back. Differences from upstream, on purpose:
* RoPE positions are ``cumsum(mask) - 1`` in every step (upstream never advanced them while
  decoding; TRAINING.md, deviation M1), so greedy generation equals the argmax of teacher-forced scoring.
* Budgets may differ per row (upstream's are shared); a row stops at its own cap.
Kept from upstream: no repeats within a frame, EOS never sampled, top-k before the within-chunk
mask, early stop per token on the task-loss head (head 0 ignored on a frame's first step), a
finished row is padded for the rest of the frame, and a pad can sit between real gazes of the
chunk in which early stopping fired.
The decode also yields the teacher-forced scores of its own gazes (``GazeScores``: each pick's
unmasked temperature-1 log-prob, the task-loss head after each slot), so inference needs no
second, teacher-forced pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import Cache

from autogaze.models.autogaze.decoder import GazeDecoder, positions_from_mask
from autogaze.models.autogaze.kv_cache import GrowingKVCache
from autogaze.models.autogaze.scoring import top_k_filter
from autogaze.models.autogaze.speed import GREEDY_HOST_ROWS
from autogaze.types import Budget, Gazes, GazeScores

NEG_INF = float("-inf")


@dataclass
class SamplerSettings:
    """do_sample: multinomial (True) or argmax (False); temperature and top_k apply when sampling."""

    do_sample: bool
    temperature: float = 1.0
    top_k: int = 50
    generator: torch.Generator | None = None


@dataclass
class DecodeState:
    """Decoder context carried across frames and across streaming calls.

    cache:          transformers Cache (a GrowingKVCache) with the keys/values of every token fed so far.
    cached_mask:    LongTensor [B, L_cached]  1 for vision tokens and real gazes, 0 for pads.
    pending_embeds: [B, n, D]  tokens appended but not fed yet (the last chunk of the last frame).
    pending_mask:   LongTensor [B, n].
    conv_cache:     per-block vision-encoder caches [B, C, kt-1, h, w] (None before the first frame).
    """

    cache: Cache
    cached_mask: Tensor
    pending_embeds: Tensor
    pending_mask: Tensor
    conv_cache: list[Tensor] | None = None

    @classmethod
    def empty(cls, batch: int, dim: int, like: Tensor, num_layers: int, capacity: int) -> "DecodeState":
        mask = torch.zeros(batch, 0, dtype=torch.long, device=like.device)
        return cls(GrowingKVCache(num_layers, capacity), mask, like.new_zeros(batch, 0, dim), mask.clone())

    def full_mask(self) -> Tensor:
        """[B, L_cached + n]: the mask of every token so far (the dict's past_attention_mask)."""
        return torch.cat([self.cached_mask, self.pending_mask], dim=1)


def _feed(decoder: GazeDecoder, state: DecodeState, embeds: Tensor, mask: Tensor,
          read_pending: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """Run pending + new tokens; return the last position's (logits [B, K, V], task loss [B, K]),
    and with ``read_pending`` (and tokens pending) head 0 of the task loss at the last pending
    token [B], else None: that is the loss predicted after the previous frame's last gaze slot.

    Columns that are padding in every row are dropped first: a padded key is never attended and
    positions skip it anyway, so the result is unchanged, and a pad-free cache needs no mask.
    The last column is always kept, because its output is read (so is the last pending one when
    read: a pad's output is defined too, the same as teacher forcing gives it).
    """
    n_pending = state.pending_embeds.shape[1] if read_pending else 0
    embeds = torch.cat([state.pending_embeds, embeds.to(state.pending_embeds.dtype)], dim=1)
    mask = torch.cat([state.pending_mask, mask], dim=1)
    keep = mask.any(0)
    keep[-1] = True
    if n_pending:
        keep[n_pending - 1] = True
    if not bool(keep.all()):
        embeds, mask = embeds[:, keep], mask[:, keep]
    positions = positions_from_mask(mask, state.cached_mask)
    full = torch.cat([state.cached_mask, mask], dim=1)
    last = torch.tensor([embeds.shape[1] - 1], device=embeds.device)
    read = torch.cat([keep[:n_pending].sum(0, keepdim=True) - 1, last]) if n_pending else last
    hidden = decoder.body(embeds, full, positions, past_key_values=state.cache, out_positions=read)
    state.cached_mask = full
    state.pending_embeds, state.pending_mask = embeds[:, :0], mask[:, :0]
    logits, tl = decoder.heads(hidden[:, -1])
    at_pending = decoder.task_loss_prediction_head(hidden[:, 0, None]).float()[:, 0, 0] if n_pending else None
    return logits, tl, at_pending


def _look_ahead_task_loss(decoder: GazeDecoder, state: DecodeState) -> Tensor:
    """Head 0 of the task loss at the last pending token [B], leaving ``state`` as it was.

    The pending chunk is normally fed with the next frame (of this call or of the next streaming
    call); when the clip ends on a full chunk its last slot's predicted loss is only there, so
    feed it now and roll the cache back, which keeps streaming identical to one long call.
    """
    saved = (state.cached_mask, state.pending_embeds, state.pending_mask)
    n_cached = state.cached_mask.shape[1]  # == the cache length: every fed column is cached
    _, tl, _ = _feed(decoder, state, state.pending_embeds[:, :0], state.pending_mask[:, :0])
    state.cache.crop(n_cached)
    state.cached_mask, state.pending_embeds, state.pending_mask = saved
    return tl[:, 0]


def _pick_chunk(logits: Tensor, banned: Tensor, s: SamplerSettings,
                host_rows: int = GREEDY_HOST_ROWS) -> tuple[Tensor, Tensor, Tensor]:
    """Pick up to k = logits.shape[1] distinct ids, one per head, in order.

    logits [B, k, V] fp32; banned [B, V] ids already in the frame (+ EOS); host_rows: greedy picks
    of at most this many rows use ``_pick_greedy`` (``SpeedOptions.greedy_host_rows``).
    Returns ids [B, k'], log-probs of the picks under the sampling distribution [B, k'],
    exhausted [B, k'] (True where a row had no id left). k' < k only when every row ran out.
    """
    logits = logits.masked_fill(banned[:, None], NEG_INF)
    if not s.do_sample:
        # the host scan costs B * k^2 Python steps: worth it for few rows (the per-op cost of the loop
        # dominates there), not for a large batch, where the loop's ops are one launch per head
        return _pick_greedy(logits) if logits.shape[0] <= host_rows else _pick_sequential(logits, s)
    return _pick_sequential(top_k_filter(logits / s.temperature, s.top_k), s)  # top-k first, as upstream


def _pick_sequential(logits: Tensor, s: SamplerSettings) -> tuple[Tensor, Tensor, Tensor]:
    """``_pick_chunk`` head by head (sampling; also the reference for ``_pick_greedy``).
    logits [B, k, V] with banned ids at -inf."""
    taken = torch.zeros(logits.shape[0], logits.shape[2], dtype=torch.bool, device=logits.device)
    ids, logps, exhausted = [], [], []
    for i in range(logits.shape[1]):  # sequential: head i must not repeat heads < i
        head = logits[:, i].masked_fill(taken, NEG_INF)
        empty = torch.isneginf(head).all(-1)  # [B]
        if bool(empty.all()):
            break
        logp = torch.log_softmax(head.masked_fill(empty[:, None], 0.0), dim=-1)
        if s.do_sample:
            pick = torch.multinomial(logp.exp(), 1, generator=s.generator)
        else:
            pick = logp.argmax(-1, keepdim=True)
        taken.scatter_(1, pick, True)
        ids.append(pick)
        logps.append(logp.gather(1, pick))
        exhausted.append(empty[:, None])
    return torch.cat(ids, 1), torch.cat(logps, 1), torch.cat(exhausted, 1)


def _pick_greedy(logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The greedy ``_pick_sequential`` in a fixed number of tensor ops (it ran ~8 per head).

    Head i takes its best id not taken by heads < i, which is among its i + 1 best: so one stable
    sort (ties in index order, like argmax), a scan of k x k candidates on the host, then every
    head's log-softmax at once under its own "taken before" mask. A row with nothing left is
    "exhausted" and picks id 0, as the sequential version does. logits [B, k, V], banned at -inf.
    """
    B, k, V = logits.shape
    vals, cand = logits.sort(dim=-1, descending=True, stable=True)
    vals, cand = vals[..., :k].tolist(), cand[..., :k].tolist()
    picks = [[0] * k for _ in range(B)]
    empty = [[False] * k for _ in range(B)]
    for b in range(B):
        taken: set[int] = set()
        for i in range(k):
            # (once a row has run out it stays out: no id is free for any later head either)
            val, pick = next(((v, c) for v, c in zip(vals[b][i], cand[b][i]) if c not in taken), (NEG_INF, 0))
            if val == NEG_INF:
                empty[b][i], pick = True, 0
            picks[b][i] = pick
            taken.add(pick)
    dev = logits.device
    ids = torch.tensor(picks, device=dev)  # [B, k]
    exhausted = torch.tensor(empty, device=dev)
    n = next((i for i in range(k) if all(row[i] for row in empty)), k)  # all rows ran out: stop there
    ids, exhausted, logits = ids[:, :n], exhausted[:, :n], logits[:, :n]
    chosen = torch.zeros_like(logits, dtype=torch.bool).scatter_(2, ids[..., None], True)
    before = (chosen.cumsum(1, dtype=torch.int32) - chosen.int()) > 0  # taken by heads < i
    head = logits.masked_fill(before, NEG_INF).masked_fill(exhausted[..., None], 0.0)
    logp = torch.log_softmax(head, dim=-1).gather(2, ids[..., None]).squeeze(2)
    return ids, logp, exhausted


def generate_frames(decoder: GazeDecoder, vision_tokens: Tensor, budget: Budget, sampler: SamplerSettings,
                    state: DecodeState | None = None) -> tuple[Gazes, Tensor, GazeScores, DecodeState]:
    """Generate gazes for T frames.

    vision_tokens [B, T, V_tok, D] (connector output); budget.max_gazes [B, T] (>= 1),
    budget.task_loss_requirement [B, T] or None; state: context from earlier frames (streaming).
    Returns (Gazes with ids t * P + local, t counted from 0 within this call; pads hold id t * P,
    sample_log_probs [B, N] (0 at pads), scores, the updated DecodeState).
    ``scores``: GazeScores [B, N] (fp32, entropy None) read off the decode itself: ``log_probs`` the
    unmasked temperature-1 log-softmax at each pick (whatever distribution it was drawn from) and
    ``task_loss_prediction`` the task-loss head after each slot, i.e. what teacher-forced
    ``AutoGaze.score(..., masked=False)`` gives for these gazes (pads too: EOS scored there).
    """
    B, T, Vt, D = vision_tokens.shape
    K, eos, P = decoder.num_multi_token_pred, decoder.eos_id, decoder.eos_id
    if state is None:  # room for every frame's vision tokens and its largest budget, plus a chunk
        capacity = int(T * Vt + budget.max_gazes.max(0).values.sum()) + K
        state = DecodeState.empty(B, D, vision_tokens, decoder.model.config.num_hidden_layers, capacity)
    dev = vision_tokens.device
    max_gazes = budget.max_gazes.to(dev)
    tau = None if budget.task_loss_requirement is None else budget.task_loss_requirement.to(dev)
    ones = torch.ones(B, Vt, dtype=torch.long, device=dev)
    all_ids, all_pad, all_logp, counts = [], [], [], []
    # Scores, slot order. The loss after chunk slot i is head i + 1 at the chunk's source; after
    # slot K - 1 (a full chunk) it is head 0 at that slot, known only once the chunk is fed: `open_slot`.
    score_logp, score_tl, open_slot = [], [], False
    for t in range(T):
        logits, tl, tl_pending = _feed(decoder, state, vision_tokens[:, t], ones, read_pending=True)
        if open_slot:
            score_tl.append(tl_pending[:, None])
        banned = torch.zeros(B, P + 1, dtype=torch.bool, device=dev)
        banned[:, eos] = True
        finished = torch.zeros(B, dtype=torch.bool, device=dev)
        frame_ids, frame_pad, frame_logp, n_done = [], [], [], 0
        while True:
            remaining = max_gazes[:, t] - n_done  # [B]
            k = min(K, int(remaining.max()))
            ids, logp, exhausted = _pick_chunk(logits[:, :k], banned, sampler, decoder.speed.greedy_host_rows)
            k = ids.shape[1]
            slot = torch.arange(k, device=dev)
            pad = finished[:, None] | exhausted | (slot[None] >= remaining[:, None])
            if tau is not None:
                hit = tl[:, :k] <= tau[:, t, None]
                if n_done == 0:
                    hit[:, 0] = False  # head 0 = "nothing gazed yet": no early stop before the first gaze
                pad |= hit
                finished |= hit.any(-1)
            finished |= exhausted.any(-1) | (n_done + k >= max_gazes[:, t])
            ids = ids.masked_fill(pad, eos)
            banned.scatter_(1, ids, True)
            frame_ids.append(ids)
            frame_pad.append(pad)
            frame_logp.append(logp.masked_fill(pad, 0.0))
            score_logp.append(_unmasked_log_probs(logits[:, :k], ids))
            score_tl.append(tl[:, 1:k + 1])
            open_slot = k == K
            n_done += k
            chunk_embeds = decoder.embed(ids).to(vision_tokens.dtype)
            chunk_mask = (~pad).long()
            if bool(finished.all()):
                state.pending_embeds = torch.cat([state.pending_embeds, chunk_embeds], 1)
                state.pending_mask = torch.cat([state.pending_mask, chunk_mask], 1)
                break
            logits, tl, _ = _feed(decoder, state, chunk_embeds, chunk_mask)
            if open_slot:
                score_tl.append(tl[:, :1])
        ids, pad = torch.cat(frame_ids, 1), torch.cat(frame_pad, 1)
        all_ids.append(torch.where(pad, 0, ids) + t * P)
        all_pad.append(pad)
        all_logp.append(torch.cat(frame_logp, 1))
        counts.append(ids.shape[1])
    if open_slot:
        score_tl.append(_look_ahead_task_loss(decoder, state)[:, None])
    gazes = Gazes(ids=torch.cat(all_ids, 1), is_padded=torch.cat(all_pad, 1),
                  num_per_frame=torch.tensor(counts, dtype=torch.long, device=dev), tokens_per_frame=P)
    scores = GazeScores(log_probs=torch.cat(score_logp, 1), task_loss_prediction=torch.cat(score_tl, 1))
    return gazes, torch.cat(all_logp, 1), scores, state


def _unmasked_log_probs(logits: Tensor, ids: Tensor) -> Tensor:
    """logits [B, k, V] raw (before any ban, temperature or top-k), ids [B, k] -> log_softmax at ids [B, k].

    Computed per chunk, not once over a [B, N, V] stack, so memory stays O(B * N)."""
    return logits.gather(2, ids[..., None]).squeeze(2) - logits.logsumexp(-1)
