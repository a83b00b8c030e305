"""One NTP step of the real tiny AutoGaze through the real Trainer changes the gaze parameters,
and lowers the NTP loss on the batch it fitted."""
from __future__ import annotations

import torch
from autogaze.algorithms import NTP
from autogaze.config import LoggerConfig, TrainerConfig
from autogaze.interfaces import DatasetBase
from autogaze.models.autogaze import AutoGaze
from autogaze.models.autogaze.config import tiny_config
from autogaze.trainer import Trainer
from autogaze.types import Batch, GazeLabels, Gazes
from autogaze.utils.distributed import DistInfo
from autogaze.utils.metric_logger import MetricLogger

T, P = 2, 20  # tiny_config: scales 32+64 -> 4 + 16 tokens per frame, 64-px frames


class LabelledClips(DatasetBase):
    """Random 64-px clips with 3 label gazes per frame (global ids, as in gazing_labels.json)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        local = torch.randperm(P, generator=g)[:3]
        return torch.rand(T, 3, 64, 64, generator=g), [[t * P + int(x) for x in local] for t in range(T)]

    @staticmethod
    def collate(items) -> Batch:
        """Upstream's collate: one extra padded slot per frame; pad = an id of the frame."""
        video = torch.stack([v for v, _ in items])
        B, n = len(items), 3 + 1
        ids = torch.tensor([[g for t, frame in enumerate(pos) for g in frame + [t * P]] for _, pos in items])
        is_padded = torch.tensor([False, False, False, True]).repeat(T)[None].expand(B, -1).clone()
        gazes = Gazes(ids, is_padded, torch.full((T,), n), P)
        return Batch(video, video, [f"c{i}" for i in range(B)], GazeLabels(gazes, torch.rand(B, T * n)))


def test_one_ntp_step_changes_gaze_parameters(tmp_path):
    torch.manual_seed(0)
    model = AutoGaze(tiny_config(max_num_frames=T))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainerConfig(batch_size=4, per_gpu_max_batch_size=4, lr=1e-2, optimizer="adam", lr_schedule="constant",
                        n_epochs=1, num_workers=0, device="cpu", train_task=False, detach_task=True,
                        val_nsteps=1000, save_nsteps=1000, visualize_every=0)
    ds = LabelledClips()
    trainer = Trainer(cfg, model, None, NTP.from_config({"optimize_task_loss_prediction": True}), ds, None,
                      LabelledClips.collate, DistInfo(), tmp_path, MetricLogger(LoggerConfig(), tmp_path, "t", {}, True),
                      {})
    batch = next(trainer._micro_batches())
    first = trainer.train_step([batch])
    second = trainer.train_step([batch])
    assert first["ntp_loss"] > 0 and first["grad_norm"] > 0
    assert second["ntp_loss"] < first["ntp_loss"]  # the step moved towards the labels
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    # the decoder's gaze head, the task-loss head and the vision encoder all received updates
    for part in ("lm_head", "task_loss_prediction_head", "vision_model"):
        assert any(part in k for k in changed), (part, changed[:5])
