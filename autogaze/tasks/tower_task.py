"""Shared body of the tasks that train a head over a frozen feature tower (feature prediction, slots).

The tower (``FrozenTower``) is a plain attribute, not a submodule: it stays out of ``parameters()``,
``state_dict()``, checkpoints and DDP, is always in eval mode, and follows the task's device moves.
Only the trained head is saved and loaded.
"""
from __future__ import annotations

import os

from torch import Tensor

from autogaze.tasks.frame_rewards import FrameRewardTask
from autogaze.tasks.video_feature_reconstruction.towers import FrozenTower
from autogaze.tasks.video_mae_reconstruction.weights import WeightsError, read_state_dict


class TowerTask(FrameRewardTask):
    """Subclasses set ``self.tower`` and ``self.trainable`` and name their head in ``trained_part``."""

    tower: FrozenTower
    trained_part = "head"  # how a wrong checkpoint's error names what it should have held

    def train(self, mode: bool = True) -> "TowerTask":
        super().train(mode and self.trainable)  # frozen means eval, whatever the trainer asks
        self.tower.model.eval()
        return self

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        if "tower" in self.__dict__:  # device moves (.to) reach the tower too
            self.tower.apply(fn)
        return self

    def load_task_weights(self, path: str | os.PathLike, *, allow_missing: bool = False,
                          allow_unexpected: bool = False) -> dict[str, list[str]]:
        """Load the head from a checkpoint of this task (``checkpoint_latest_task.pt``); -> missing / unexpected keys."""
        sd = {k.removeprefix("module."): v for k, v in read_state_dict(path).items()}  # a DDP-wrapped save
        own = self.state_dict()
        report = {"missing": [k for k in own if k not in sd], "unexpected": [k for k in sd if k not in own]}
        for kind, allowed in (("missing", allow_missing), ("unexpected", allow_unexpected)):
            if report[kind] and not allowed:
                raise WeightsError(f"{path}: {len(report[kind])} {kind} keys, e.g. {report[kind][:5]}. Fix: give "
                                   f"a checkpoint of this task's {self.trained_part}, or allow_{kind}")
        self.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
        return report

    def tower_features(self, video_for_task: Tensor, *, finest_only: bool) -> Tensor:
        """video_for_task [B, T, 3, S, S] -> the tower's full-gaze features, no grad: [B, T, K, Df] at the
        finest scale's K positions (``finest_only``) or [B, T, P, Df] at every token."""
        B = video_for_task.shape[0]
        # Rows that are one clip repeated with stride 0 (the labeller's candidate rows) are encoded once.
        shared = B > 1 and video_for_task.stride(0) == 0
        self.tower.model.to(video_for_task.device)  # no-op once there; covers a task moved before the tower was built
        rows = video_for_task[:1] if shared else video_for_task
        feats = self.tower.features(rows) if finest_only else self.tower.all_features(rows)
        return feats.expand(B, -1, -1, -1) if shared else feats
