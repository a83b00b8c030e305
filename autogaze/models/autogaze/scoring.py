"""Teacher-forced scoring of a gaze sequence.

Multi-token prediction with frame-aligned chunks of K: slot j of a frame (r = j mod K) is predicted
by head r at the *source* position n - (r + 1), i.e. the frame's last vision token for the first
chunk and the previous chunk's last gaze otherwise. The predicted task loss after slot j is head
r + 1 at the same source (r < K - 1), or head 0 at the slot itself (r = K - 1).

Two distributions can be scored:
* ``masked=False`` (default, upstream): softmax over all P + 1 ids at temperature 1, unmasked.
* ``masked=True``: the distribution generation samples from (generation.py): ids gazed earlier in
  the frame and EOS removed, logits divided by ``temperature``, top-k over what the previous
  chunks left, then the ids picked earlier in the same chunk removed. For real slots this equals
  the generator's ``sample_log_probs`` up to float rounding (one exception: an early-stop pad in
  the middle of a chunk hides which id the generator had masked after it; an upstream quirk we keep).
"""
from __future__ import annotations

import torch
from torch import Tensor

from autogaze.types import Gazes, GazeScores


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep, along the last dim, values >= the k-th largest (ties kept, as HF's TopK); k=0 keeps all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _gazed_before(local: Tensor, slot_in_frame: Tensor, K: int, vocab: int) -> tuple[Tensor, Tensor]:
    """Which ids were gazed before each slot, split by chunk.

    local [B, N] frame-local ids (pads = EOS), slot_in_frame [N] ->
    (earlier_chunks [B, N, V] bool: gazed in previous chunks of the frame,
     same_chunk [B, N, V] bool: gazed earlier in the slot's own chunk).
    """
    onehot = torch.nn.functional.one_hot(local, vocab).to(torch.int32)  # [B, N, V]
    cum = onehot.cumsum(1) - onehot  # exclusive prefix count over the whole clip
    n = torch.arange(local.shape[1], device=local.device)
    frame_first = n - slot_in_frame  # [N] first slot of the frame
    chunk_first = n - slot_in_frame % K  # [N] first slot of the chunk
    earlier = (cum[:, chunk_first] - cum[:, frame_first]) > 0
    same = (cum - cum[:, chunk_first]) > 0
    return earlier, same


def masked_distribution(logits: Tensor, local: Tensor, slot_in_frame: Tensor, K: int, eos_id: int,
                        temperature: float, top_k: int) -> Tensor:
    """logits [B, N, V] at each slot's head -> the generator's sampling logits [B, N, V] (-inf = banned)."""
    earlier, same = _gazed_before(local, slot_in_frame, K, logits.shape[-1])
    earlier[..., eos_id] = True
    logits = logits.masked_fill(earlier, float("-inf")) / temperature
    logits = top_k_filter(logits, top_k)
    return logits.masked_fill(same, float("-inf"))


def read_positions(gaze_pos: Tensor, slot_in_frame: Tensor, K: int) -> tuple[Tensor, Tensor]:
    """Where the heads are read: gaze_pos [N] sequence index of each slot, slot_in_frame [N] ->
    (src [N] source position of each slot, last [N_last] positions of the slots with r = K - 1)."""
    r = slot_in_frame % K
    return gaze_pos - (r + 1), gaze_pos[r == K - 1]


def score_hidden(decoder, hidden: Tensor, src_rows: Tensor, last_rows: Tensor, gazes: Gazes, slot_in_frame: Tensor,
                 *, temperature: float = 1.0, masked: bool = False, top_k: int = 0,
                 with_argmax: bool = False, with_logits: bool = False) -> GazeScores:
    """Read the K heads off the decoder's hidden states.

    hidden [B, S, D] final hidden states at the read positions; src_rows [N] row of each slot's
    source in ``hidden``; last_rows [N_last] rows of the slots with r = K - 1 (see read_positions);
    gazes [B, N]; slot_in_frame [N].
    Returns GazeScores with log_probs, task_loss_prediction, entropy all [B, N] (fp32), and with
    ``with_logits`` also ``logits``, the scored logits [B, N, V] (the masked ones when ``masked``). With
    ``with_argmax``, ``GazeScores.argmax_ids`` [B, N] holds the most likely frame-local id of each
    slot's scored distribution (with ``masked``: the id greedy decoding would pick after the prefix).
    Padded slots get values too (EOS scored); they are meaningless, filter with ``is_padded``.
    """
    K, eos = decoder.num_multi_token_pred, decoder.eos_id
    r = slot_in_frame % K  # [N] head that predicts each slot
    src = hidden[:, src_rows]  # [B, N, D]
    logits = decoder.head_logits(src, r)  # [B, N, V]
    tl_src = decoder.task_loss_prediction_head(src).float()  # [B, N, K]
    local = torch.where(gazes.is_padded, torch.full_like(gazes.ids, eos), gazes.local_ids())
    if masked:
        logits = masked_distribution(logits, local, slot_in_frame, K, eos, temperature, top_k)
    elif temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    log_probs = logp_all.gather(-1, local[..., None]).squeeze(-1)
    p_all = logp_all.exp()
    entropy = -(p_all * logp_all.masked_fill(p_all == 0, 0.0)).sum(-1)

    # Task loss after slot j: head r+1 at the source, or head 0 at the slot itself when r = K-1.
    tl_last = decoder.task_loss_prediction_head(hidden[:, last_rows]).float()  # [B, N_last, K]
    nxt = (r + 1).clamp_max(K - 1)
    tl = tl_src.gather(2, nxt.view(1, -1, 1).expand(hidden.shape[0], -1, 1)).squeeze(2)  # [B, N]
    tl = tl.clone()
    tl[:, r == K - 1] = tl_last[..., 0]
    argmax = logits.argmax(-1).detach() if with_argmax else None
    return GazeScores(log_probs=log_probs, task_loss_prediction=tl, entropy=entropy, argmax_ids=argmax,
                      logits=logits if with_logits else None)
