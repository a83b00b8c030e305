"""Soft NTP targets over the labeller's candidates: the labeller records them without changing its
picks, the loader checks and collates them, the loss is right by hand, and NTP trains on them."""
from __future__ import annotations

import json
import math

import pytest
import torch

from autogaze.algorithms import NTP, GazePolicy
from autogaze.algorithms.losses import masked_nll, soft_label_nll
from autogaze.datasets.labels import collate_labels, load_labels
from autogaze.labeling import label_clip
from autogaze.types import Batch
from autogaze.utils.parsing import ConfigError
from tests.test_label_cli import label
from tests.test_label_greedy import make_task, video
from tests.test_planted import planted_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_candidates_do_not_change_the_picks_and_are_sorted():
    task, clip = make_task(), video(T=3)
    P = task.tokens_per_frame
    hard = label_clip(task, clip, [3, 1, 2], candidate_batch=7)
    soft = label_clip(task, clip, [3, 1, 2], candidate_batch=7, top_candidates=5)
    assert soft.gazing_pos == hard.gazing_pos and soft.task_losses == hard.task_losses
    assert hard.candidate_pos is None and "candidate_pos" not in hard.to_json()
    for t in range(3):
        for j, (cand, cl) in enumerate(zip(soft.candidate_pos[t], soft.candidate_losses[t])):
            assert cand[0] == hard.gazing_pos[t][j] and cl[0] == hard.task_losses[t][j]
            assert len(cand) == 5 and cl == sorted(cl) and len(set(cand)) == 5
            assert all(t * P <= c < (t + 1) * P for c in cand)
            assert not set(cand) & set(hard.gazing_pos[t][:j])  # only patches still free at step j


def test_label_cli_round_trip_and_collate(tmp_path):
    out = tmp_path / "gazing_labels.json"
    label(out, "--top-candidates", "3")
    written = json.loads(out.read_text())
    loaded = load_labels(str(out), clip_len=3, tokens_per_frame=20)
    keys = sorted(loaded)
    labels = collate_labels([loaded[k] for k in keys], tokens_per_frame=20)
    assert labels.candidate_ids.shape == (*labels.gazes.ids.shape, 3)
    for b, k in enumerate(keys):
        real = ~labels.gazes.is_padded[b]
        want = [c for frame in written[k]["candidate_pos"] for c in frame]
        assert labels.candidate_ids[b][real].tolist() == want
        assert (labels.candidate_ids[b][real][:, 0] == labels.gazes.ids[b][real]).all()
    # padded slots: one candidate (their own id) with loss 0, the rest +inf
    pad = labels.gazes.is_padded
    assert (labels.candidate_losses[pad][:, 0] == 0).all() and labels.candidate_losses[pad][:, 1:].isinf().all()
    # mixing labels with and without candidates is refused
    with pytest.raises(ValueError, match="same --top-candidates"):
        collate_labels([loaded[keys[0]], loaded[keys[1]][:2]], tokens_per_frame=20)


def test_loader_rejects_candidates_that_do_not_start_with_the_gaze(tmp_path):
    entry = {"gazing_pos": [[1], [22]], "task_losses": [[0.5], [0.4]],
             "candidate_pos": [[[2, 1]], [[22]]], "candidate_losses": [[[0.5, 0.6]], [[0.4]]]}
    (tmp_path / "l.json").write_text(json.dumps({"d/train/a.mp4": entry}))
    with pytest.raises(ValueError, match="the gaze first"):
        load_labels(str(tmp_path / "l.json"), clip_len=2, tokens_per_frame=20)


def test_soft_label_nll_by_hand():
    # one clip, two real slots over V = 4 ids and one padded slot; uniform logits: log p = -ln 4
    logits = torch.zeros(1, 3, 4)
    logits[0, 1, 2] = math.log(3.0)  # slot 1: p = (1, 1, 3, 1) / 6
    cand = torch.tensor([[[0, 1], [2, 3], [0, 0]]])
    losses = torch.tensor([[[0.5, 0.5 + 0.01 * math.log(3.0)], [0.2, float("inf")], [0.0, float("inf")]]])
    is_real = torch.tensor([[True, True, False]])
    got = soft_label_nll(logits, cand, losses, 0.01, is_real)
    # slot 0: weights softmax(0, -ln 3) = (3/4, 1/4) over ids 0, 1, both log p = -ln 4 -> ln 4
    # slot 1: all weight on id 2, p = 1/2 -> ln 2;  sum / (2 real slots / 1 clip) = (ln 4 + ln 2) / 2
    torch.testing.assert_close(got, torch.tensor([(math.log(4) + math.log(2)) / (2 + 1e-6)]))
    # tau -> 0 is the hard loss of entry 0
    hard = masked_nll(torch.log_softmax(logits, -1).gather(-1, cand[..., :1]).squeeze(-1), is_real)
    torch.testing.assert_close(soft_label_nll(logits, cand, losses, 1e-6, is_real), hard)


def test_ntp_trains_on_soft_labels_and_refuses_labels_without_candidates():
    torch.manual_seed(0)
    model = tiny_model()
    policy = GazePolicy(model, model.score)
    gen = torch.Generator().manual_seed(0)
    batch = planted_batch(4, gen)
    alg = NTP.from_config({"optimize_task_loss_prediction": True, "soft_label_temperature": 0.01})
    with pytest.raises(ConfigError, match="top-candidates"):
        alg.rollout(policy, batch, 1.0)
    lab = batch.labels
    # two candidates per slot: the label, and the next patch id of its frame at a slightly higher loss
    P = lab.gazes.tokens_per_frame
    other = lab.gazes.ids - lab.gazes.ids % P + (lab.gazes.ids % P + 1) % P
    lab.candidate_ids = torch.stack([lab.gazes.ids, other], -1)
    lab.candidate_losses = torch.stack([lab.task_losses, lab.task_losses + 0.01], -1)
    soft_batch = Batch(batch.video, batch.video_for_task, batch.paths, labels=lab)
    out = alg.loss(soft_batch, alg.rollout(policy, soft_batch, 1.0), None)
    assert float(out.metrics["soft_ntp_loss"]) > float(out.metrics["ntp_loss"]) * 0  # both reported
    before = [p.detach().clone() for p in model.parameters()]
    out.loss.mean().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ConfigError, match="soft_label_temperature"):
        NTP.from_config({"soft_label_temperature": -1.0})
