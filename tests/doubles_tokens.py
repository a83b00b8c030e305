"""Tiny real components for the TATS / AdaMAE trainer tests (and TEST DOUBLES around them).

Geometry: 4 frames x 32 px, patch 8, tubelet 2 -> T' = 2 tube-frames x P = 16 tokens, N = 32; width
16; rho 0.75 -> N_v = 8 visible, 24 masked tokens per clip. The task is the real tube VideoMAE, the
samplers the real TATS / AdaMAE at that size; only the clip-seeded samplers below are doubles.
"""
from __future__ import annotations

from pathlib import Path

import torch

from autogaze.config import LoggerConfig, TempScheduleConfig, TrainerConfig
from autogaze.models.adamae import AdaMAE
from autogaze.models.adamae.sampling import gazes_from_visible
from autogaze.models.tats import TATS
from autogaze.tasks.tube_video_mae import TubeVideoMAE
from autogaze.trainer import Trainer
from autogaze.types import Budget, GazeRollout
from autogaze.utils.distributed import DistInfo
from autogaze.utils.metric_logger import MetricLogger
from tests.doubles_grpo import ClipDataset

T, S, P, TP = 4, 32, 16, 2
N = TP * P
GEOMETRY = dict(scales=S, max_num_frames=T, patch_size=8, tubelet_size=2, hidden_size=16)
TASK_KEYS = dict(preset="tiny", **GEOMETRY, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                 decoder_intermediate_size=32)
SAMPLER_KEYS = dict(preset="tiny", **GEOMETRY, num_attention_heads=2, intermediate_size=32, mask_ratio=0.75)


def make_task() -> TubeVideoMAE:
    return TubeVideoMAE.from_config(TASK_KEYS)


def make_tats(**keys) -> TATS:
    return TATS.from_config({**SAMPLER_KEYS, **keys})


def make_adamae(**keys) -> AdaMAE:
    return AdaMAE.from_config({**SAMPLER_KEYS, "dropout": 0.0, **keys})


def clips(n: int = 8, seed: int = 0) -> ClipDataset:
    """Deterministic random clips [T, 3, S, S] (uniform [0, 1), as normalised video would be roughly)."""
    return ClipDataset(n, T, S, seed)


class ClipSeeded:
    """TEST DOUBLE mix-in: each clip's draw depends only on its content (not on the global RNG or on
    the other clips of the micro-batch), so 2 ranks x micro 2 and 1 rank x 2 micro-batches of 2
    sample the same visible sets for the same clips."""

    def generate(self, video, budget: Budget, *, tokens=None, **kw) -> GazeRollout:
        rows = []
        for r in range(video.shape[0]):
            g = torch.Generator().manual_seed(round(float(video[r].double().sum()) * 1e6))
            rows.append(super().generate(video[r:r + 1], budget.map(lambda t: t[r:r + 1]), generator=g,
                                         tokens=None if tokens is None else tokens[r:r + 1], **kw))
        is_visible = torch.cat([o.gazes.to_mask().bool() for o in rows])                # [B, T', P]
        dist = self.distribution(video, tokens)
        gazes = gazes_from_visible(is_visible)
        scores = self._scores(dist, gazes)
        return GazeRollout(gazes, scores=scores, budget=budget, sample_log_probs=scores.log_probs)


class ClipSeededTATS(ClipSeeded, TATS):
    pass


class ClipSeededAdaMAE(ClipSeeded, AdaMAE):
    pass


def make_token_trainer(exp: Path, model, task, algorithm, dataset, info: DistInfo | None = None,
                       **overrides) -> Trainer:
    """A trainer over ``dataset`` (ClipDataset) with the tube task trained; AdamW, constant lr."""
    info = info or DistInfo()
    cfg = TrainerConfig(**{**dict(batch_size=2, per_gpu_max_batch_size=2, lr=1e-2, optimizer="adamw",
                                  lr_schedule="constant", n_epochs=4, num_workers=0, device="cpu",
                                  train_gaze=True, train_task=True, val_nsteps=1000, save_nsteps=1000,
                                  visualize_every=0, seed=0, log_nsteps=1000,
                                  temp_schedule_args=TempScheduleConfig(exp={"temp_start": 1.0, "temp_end": 1.0})),
                           **overrides})
    return Trainer(cfg, model, task, algorithm, dataset, None, ClipDataset.collate, info, exp,
                   MetricLogger(LoggerConfig(), exp, "t", {}, info.is_main), {})


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> list[str]:
    return [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]
