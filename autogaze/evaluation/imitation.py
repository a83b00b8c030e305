"""How well a gaze model imitates its labels: teacher-forced top-1 accuracy and generated Jaccard.

    acc = imitation_metrics(model, batches)     # batches carry labels (dataset.gt_gazing_pos_paths)

* ``top1``: share of real label slots whose label id is the argmax of the model's distribution
  given the label prefix, after removing what greedy decoding removes (ids gazed earlier in the
  frame, EOS). It is the probability that one greedy step reproduces the label.
* ``top1_unmasked``: the same over upstream's unmasked scoring distribution (what NTP trains).
* ``jaccard``: per-frame |generated ∩ label| / |generated ∪ label|, averaged over frames and clips,
  where the model gazes greedily with each frame's budget set to its label's length.
* ``first_frame_jaccard`` / ``later_frames_jaccard``: the same split by frame (frame 0 has no history).
"""
from __future__ import annotations

from typing import Iterable

import torch

from autogaze.evaluation.loop import eval_mode, nonempty_batches
from autogaze.interfaces import GazeModel
from autogaze.types import Batch, Budget


@torch.no_grad()
def imitation_metrics(model: GazeModel, batches: Iterable[Batch], *, device: str | torch.device = "cpu",
                      max_batches: int | None = None) -> dict[str, float]:
    """Clip-weighted imitation metrics of an AutoGaze ``model`` on labelled ``batches`` (see module doc)."""
    sums = dict(top1=0.0, top1_unmasked=0.0, slots=0.0, jaccard=0.0, first_frame_jaccard=0.0,
                later_frames_jaccard=0.0, clips=0.0)
    with eval_mode(model):
        for _, batch in nonempty_batches(batches, max_batches):
            if batch.labels is None:
                raise ValueError("imitation metrics need labelled batches (set dataset.gt_gazing_pos_paths.<split>)")
            batch = batch.to(device)
            labels = batch.labels.gazes
            is_real = ~labels.is_padded
            local = labels.local_ids()
            for key, masked in (("top1", True), ("top1_unmasked", False)):
                scores = model.score(batch.video, labels, masked=masked, top_k=0, with_argmax=True)
                sums[key] += float(((scores.argmax_ids == local) & is_real).sum())
            sums["slots"] += float(is_real.sum())

            label_mask = labels.to_mask()  # [B, T, P]
            budget = Budget(label_mask.sum(-1).long().clamp_min(1))
            gen_mask = model.generate(batch.video, budget, do_sample=False).gazes.to_mask()
            inter = (label_mask * gen_mask).sum(-1)
            union = ((label_mask + gen_mask) > 0).float().sum(-1).clamp_min(1)
            jac = inter / union  # [B, T]
            sums["jaccard"] += float(jac.mean(1).sum())
            sums["first_frame_jaccard"] += float(jac[:, 0].sum())
            sums["later_frames_jaccard"] += float(jac[:, 1:].mean(1).sum()) if jac.shape[1] > 1 else 0.0
            sums["clips"] += batch.batch_size
    if sums["clips"] == 0:
        raise ValueError("no clips to evaluate: the loader gave no (decodable) videos")
    n, slots = sums.pop("clips"), max(sums.pop("slots"), 1.0)
    out = {k: v / (slots if k.startswith("top1") else n) for k, v in sums.items()}
    return dict(out, clips=n)


def imitation_table(specs: list[str], config, labels: str, *, split: str = "val", data_root: str | None = None,
                    batch_size: int = 8, max_batches: int | None = None, seed: int = 0) -> list[dict]:
    """:func:`imitation_metrics` of every AutoGaze spec (evaluation/models.py; baselines are skipped)
    on ``split``, against the label file ``labels``: one row per model."""
    from autogaze.evaluation import models as M

    exp = M.load_experiment(config, data_root)
    exp.dataset["gt_gazing_pos_paths"] = {split: labels}
    rows = []
    for spec in M.load_gaze_models(list(specs), dict(exp.model), seed):
        if not spec.model.can_score:
            continue  # baselines have no distribution to score
        loader = M.make_loader(exp, split, spec.preprocessing, batch_size)
        m = imitation_metrics(spec.model, loader, max_batches=max_batches)
        rows.append({"model": spec.name, "split": split, **{k: round(float(v), 4) for k, v in m.items()}})
    return rows


IMITATION_COLUMNS = ("model", "split", "top1", "top1_unmasked", "jaccard", "first_frame_jaccard",
                     "later_frames_jaccard", "clips")
