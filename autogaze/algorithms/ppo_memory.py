"""TATS's rollout memory D: the episodes of the MAE phase, replayed by the PPO phase.

An episode is one clip of one MAE step (TATS, ICCVW 2025): the tokens the sampler read, which tokens
were masked, the sampler's log-probabilities and value at sampling time, and the reward. Every
episode is a single step (no discount, no GAE), so the memory is just a list of them.

Layout (written down once): the memory holds one :class:`Episodes` *chunk* per MAE-phase micro-batch,
in the order the trainer ran them (K = ``update_steps_mae`` steps x ``acc_steps`` micro-batches per
rank). A PPO optimizer step takes one slice of *every* chunk, one pass per chunk, so every rank makes
the same number of passes (DDP needs that) and, with one minibatch per epoch, a PPO step covers the
whole memory: 2 ranks x micro 2 then equal 1 rank x micro 2 x 2 accumulation steps. The slices come
from one permutation of a chunk's rows, drawn from a generator seeded by (seed, trainer step, PPO
epoch) and shared by every chunk of that size. With several minibatches, which episodes share one
depends on which clips shared a micro-batch, and that differs between the two layouts (in both, each
episode lands in any one minibatch with the same probability).

A micro-batch whose clips were all undecodable leaves ``None`` in its place (an empty item, which
the trainer skips or replays at weight 0 under DDP).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor

from autogaze.models.adamae.sampling import gazes_from_visible
from autogaze.types import Gazes


@dataclass
class Episodes:
    """n stored episodes (no grad).

    tokens:        FloatTensor [n, N, D]  the task's tubelet embedding X the sampler read (detached).
    is_masked:     BoolTensor  [n, N]     True = masked (not visible): a reconstruction target, an action
                                          the PPO loss scores.
    old_log_probs: FloatTensor [n, N]     log p_old over all N tokens at sampling time.
    reward:        FloatTensor [n, N]     R_i = the MAE's per-token error e_i (0 on visible tokens).
    old_value:     FloatTensor [n]        V_old, the critic at sampling time.
    tokens_per_frame: int                 P (to lay the visible set out as ``Gazes``).
    """

    tokens: Tensor
    is_masked: Tensor
    old_log_probs: Tensor
    reward: Tensor
    old_value: Tensor
    tokens_per_frame: int

    @property
    def batch_size(self) -> int:
        return int(self.is_masked.shape[0])

    @property
    def skipped_paths(self) -> tuple[str, ...]:
        """StepItem: stored episodes drop no videos (their clips were counted at the MAE step)."""
        return ()

    def select(self, rows: Tensor) -> "Episodes":
        """The episodes at ``rows`` (LongTensor [k]), in that order."""
        rows = rows.to(self.is_masked.device)
        return Episodes(self.tokens[rows], self.is_masked[rows], self.old_log_probs[rows], self.reward[rows],
                        self.old_value[rows], self.tokens_per_frame)

    def gazes(self) -> Gazes:
        """The visible sets as ``Gazes`` over T' = N / P tube-frames (for ``policy.score``)."""
        n, N = self.is_masked.shape
        P = self.tokens_per_frame
        return gazes_from_visible((~self.is_masked).view(n, N // P, P))

    def to(self, device) -> "Episodes":
        return Episodes(*(getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), Tensor)
                          else getattr(self, f.name) for f in fields(self)))


@dataclass
class EmptyItem:
    """A slot with no episodes (see the module docstring); the trainer skips or replays it."""

    batch_size: int = 0

    @property
    def skipped_paths(self) -> tuple[str, ...]:
        return ()


class PPOMemory:
    """The memory D: ``chunks`` (one per MAE-phase micro-batch) and ``mae_steps`` (MAE steps stored)."""

    def __init__(self) -> None:
        self.chunks: list[Episodes | None] = []
        self.mae_steps = 0

    def __len__(self) -> int:
        """Episodes stored on this rank."""
        return sum(c.batch_size for c in self.chunks if c is not None)

    def add_step(self, records: list[Episodes | None]) -> None:
        """Store one MAE step's micro-batch records (None: an empty micro-batch)."""
        self.chunks.extend(records)
        self.mae_steps += 1

    def to(self, device) -> "PPOMemory":
        """Move every chunk to ``device`` (a resumed memory is loaded on the CPU); returns self."""
        self.chunks = [None if c is None else c.to(device) for c in self.chunks]
        return self

    def clear(self) -> None:
        self.chunks, self.mae_steps = [], 0

    def episodes(self) -> list[Episodes]:
        return [c for c in self.chunks if c is not None]

    def minibatches(self, num: int, generator: torch.Generator) -> list[list[Episodes | EmptyItem]]:
        """``num`` minibatches; minibatch m holds slice m of every chunk (one item per chunk)."""
        perms: dict[int, list[Tensor]] = {}
        out: list[list[Episodes | EmptyItem]] = [[] for _ in range(num)]
        for chunk in self.chunks:
            if chunk is None:
                for mb in out:
                    mb.append(EmptyItem())
                continue
            n = chunk.batch_size
            if n not in perms:  # one permutation per chunk size, drawn in first-seen order
                perms[n] = list(torch.randperm(n, generator=generator).tensor_split(num))
            for mb, rows in zip(out, perms[n]):
                mb.append(chunk.select(rows) if rows.numel() else EmptyItem())
        return out

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        """CPU copy: {"mae_steps": int, "chunks": [dict of tensors | None]}."""
        chunks = [None if c is None else asdict(c.to("cpu")) for c in self.chunks]
        return {"mae_steps": self.mae_steps, "chunks": chunks}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.mae_steps = int(state.get("mae_steps", 0))
        self.chunks = [None if c is None else Episodes(**c).to(device) for c in state.get("chunks", [])]
