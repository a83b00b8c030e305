"""Inputs for task tests at the demo's geometry: 64-px frames, scales 32+64 (P = 4 + 16 = 20 ids per frame)."""
from __future__ import annotations

import pytest
import torch

from autogaze.types import Gazes

P, S = 20, 64


def video(B: int = 1, T: int = 3, seed: int = 1) -> torch.Tensor:
    """A random task-normalised clip batch [B, T, 3, S, S]."""
    return torch.randn(B, T, 3, S, S, generator=torch.Generator().manual_seed(seed))


def gazes_of(frames: list[list[int]], padded: list[list[bool]] | None = None, B: int = 1) -> Gazes:
    """Frame-local ids per frame -> Gazes (the same for every row); ``padded`` marks dummy slots."""
    ids = torch.tensor([t * P + i for t, f in enumerate(frames) for i in f])
    pad = torch.tensor([p for f in (padded or [[False] * len(f) for f in frames]) for p in f])
    return Gazes(ids.expand(B, -1), pad.expand(B, -1), torch.tensor([len(f) for f in frames]), P)


def check_greedy_oracle_beats_random(task) -> None:
    """The greedy oracle and ``evaluate_at_ratio`` run against ``task`` (frozen, P = 20); per frame the
    greedy pick is at least as good as a random one."""
    from autogaze.evaluate import evaluate_at_ratio
    from autogaze.labeling.oracle import GreedyOracle
    from autogaze.models.baselines import RandomGaze
    from autogaze.types import Batch

    x = video(B=2, T=2)
    batches = [Batch(x, x, ["a", "b"])]
    oracle = evaluate_at_ratio(GreedyOracle(task), task, batches, 0.1)
    rnd = RandomGaze.from_config({"scales": "32+64", "num_vision_tokens_each_frame": P, "max_num_frames": 2})
    random = evaluate_at_ratio(rnd, task, batches, 0.1)
    assert oracle["clips"] == 2 and oracle["loss"] <= random["loss"] + 1e-6
    assert oracle["gazing_ratio"] == pytest.approx(2 / P)


@pytest.fixture(scope="module")
def mae_checkpoint(tmp_path_factory) -> str:
    """A tiny VideoMAE task's trainable state, saved as the trainer saves ``checkpoint_latest_task.pt``
    (a tower for the feature and slot tasks). Import it into a test module to use it."""
    from autogaze.tasks.video_mae_reconstruction import VideoMAEReconstruction

    torch.manual_seed(1)
    mae = VideoMAEReconstruction.from_config({"recon_model": "tiny", "scales": "32+64"})
    path = tmp_path_factory.mktemp("demo_mae") / "checkpoint_latest_task.pt"
    torch.save(mae.trainable_state_dict(), path)
    return str(path)


def check_padded_slots_change_nothing(task) -> None:
    """The same real gazes with pads in between (holding ids gazed elsewhere, or not) give the same
    losses; the task-loss targets sit on the last real gaze of each frame. ``task`` frozen, P = 20."""
    x = video(T=2)
    plain = gazes_of([[0, 7], [3]])
    padded = gazes_of([[0, 12, 7, 0], [19, 3, 3]], [[False, True, False, True], [True, False, True]])
    other = gazes_of([[0, 2, 7, 9], [5, 3, 6]], [[False, True, False, True], [True, False, True]])
    with torch.no_grad():
        outs = [task(x, g, frame_ids=[0, 1]) for g in (plain, padded, other)]
    for out in outs[1:]:
        torch.testing.assert_close(out.loss_per_frame, outs[0].loss_per_frame, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.loss, outs[0].loss, rtol=0, atol=1e-6)
    assert outs[1].task_loss_mask[0].tolist() == [False, False, True, False, False, True, False]
