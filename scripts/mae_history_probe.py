"""Does a trained VideoMAE task use earlier frames? (not in CI)

A video MAE that rewards gazing like real video must rebuild a static background from patches gazed in
earlier frames, so that a gazer can spend later frames on what changed. This probe measures it on
held-out clips: the loss of frame ``t`` when frame ``t`` has ``k`` random finest-scale gazes and

* no history:        frames < t have no gazes (a padded slot each);
* previous frame:    frame t-1 has every finest-scale patch gazed, earlier frames none;
* all earlier:       every frame < t has every finest-scale patch gazed;

next to frame t fully gazed (the MAE's ceiling). An MAE that copies brings "previous frame" close to
"full frame" on static-camera clips; one that ignores time leaves it at "no history". ::

    python scripts/mae_history_probe.py --config R/exps/demo_mae/config.yaml --data-root R/data/synthetic
"""
from __future__ import annotations

import argparse

import torch

from autogaze.evaluation import models as M
from autogaze.types import Gazes
from autogaze.utils.parsing import parse_scales


def frame_gazes(per_frame: list[list[int]], batch: int, tokens_per_frame: int) -> Gazes:
    """Frame-local ids per frame (an empty frame gets one padded slot) -> Gazes shared by the batch."""
    ids, pads = [], []
    for t, local in enumerate(per_frame):
        row = local or [0]
        ids += [t * tokens_per_frame + i for i in row]
        pads += [not local] * len(row)
    ids_t = torch.tensor(ids)[None].expand(batch, -1)
    pad_t = torch.tensor(pads)[None].expand(batch, -1)
    return Gazes(ids_t, pad_t, torch.tensor([max(len(f), 1) for f in per_frame]), tokens_per_frame)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the task experiment's config.yaml (e.g. exps/demo_mae)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--frame", type=int, default=-2, help="the rebuilt frame (negative: from the end)")
    p.add_argument("--gazes", default="4,13", help="random finest-scale gazes in the rebuilt frame")
    p.add_argument("--batches", type=int, default=3, help="batches of 8 clips")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    exp = M.load_experiment(a.config, a.data_root)
    task = M.load_task(exp, a.config)
    P = task.tokens_per_frame
    finest = (max(parse_scales("task.scales", exp.task["scales"])) // task.patch_size) ** 2
    fine = list(range(P - finest, P))  # the largest scale's ids are the last ones of a frame
    loader = M.make_loader(exp, a.split, dict(exp.model.get("preprocessing", {})), 8)
    gen = torch.Generator().manual_seed(a.seed)
    sums: dict[str, list[float]] = {}
    with torch.no_grad():
        for b, batch in enumerate(loader):
            if b >= a.batches:
                break
            video = batch.video_for_task
            B, T = video.shape[:2]
            t = a.frame % T
            after = [[] for _ in range(T - t - 1)]
            cases = {}
            for k in (int(x) for x in a.gazes.split(",")):
                cur = [fine[i] for i in torch.randperm(finest, generator=gen)[:k].tolist()]
                cases[f"{k} gazes, no history"] = [[]] * t + [cur] + after
                cases[f"{k} gazes, previous frame"] = [[]] * (t - 1) + [fine] + [cur] + after
                cases[f"{k} gazes, all earlier"] = [fine] * t + [cur] + after
            cases["full frame, no history"] = [[]] * t + [fine] + after
            for name, per_frame in cases.items():
                out = task(video, frame_gazes(per_frame, B, P), frame_ids=[t])
                sums.setdefault(name, []).append(float(out.loss_per_frame.mean()))
    print(f"loss of frame {a.frame % T} ({a.split}, {a.batches * 8} clips at most)")
    for name, values in sums.items():
        print(f"  {name:28s} {sum(values) / len(values):.4f}")


if __name__ == "__main__":
    main()
