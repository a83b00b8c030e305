"""NTP loss on hand-built tensors, with the arithmetic written out."""
from __future__ import annotations

import math

import torch

from autogaze.algorithms.losses import masked_nll, task_loss_prediction_mse
from autogaze.algorithms.ntp import NTP
from autogaze.types import Batch, GazeLabels, GazeRollout, Gazes, GazeScores

# Two clips, three slots each (one frame). Clip 0 has two real gazes, clip 1 one; the rest is padding.
IS_PADDED = torch.tensor([[False, False, True], [False, True, True]])
LOG_PROBS = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.125, 0.9, 0.9]]))  # padded values must not count
PRED = torch.tensor([[1.0, 2.0, 9.0], [0.5, 9.0, 9.0]])
TARGET = torch.tensor([[0.5, 1.0, 0.0], [1.5, 0.0, 0.0]])


def rollout_and_batch():
    gazes = Gazes(torch.tensor([[1, 2, 0], [3, 0, 0]]), IS_PADDED, torch.tensor([3]), 8)
    batch = Batch(torch.zeros(2, 1, 3, 4, 4), torch.zeros(2, 1, 3, 4, 4), ["a", "b"], GazeLabels(gazes, TARGET))
    return batch, GazeRollout(gazes, GazeScores(LOG_PROBS.clone().requires_grad_(), PRED.clone().requires_grad_()))


def test_masked_nll_by_hand():
    # real slots: 3 over B = 2 clips -> batch-average length 1.5 (+1e-6)
    # clip 0: -(ln 0.5 + ln 0.25) / 1.5 = 3 ln 2 / 1.5 = 2 ln 2
    # clip 1: -ln 0.125 / 1.5            = 3 ln 2 / 1.5 = 2 ln 2
    got = masked_nll(LOG_PROBS, ~IS_PADDED)
    want = torch.tensor([3 * math.log(2) / (1.5 + 1e-6)] * 2)
    torch.testing.assert_close(got, want)
    assert math.isclose(float(got[0]), 2 * math.log(2), rel_tol=1e-5)


def test_task_loss_prediction_mse_by_hand():
    # clip 0: (1.0-0.5)^2 + (2.0-1.0)^2 = 0.25 + 1.0 = 1.25 -> / 1.5 = 0.8333
    # clip 1: (0.5-1.5)^2 = 1.0                           -> / 1.5 = 0.6667
    got = task_loss_prediction_mse(PRED, TARGET, ~IS_PADDED)
    torch.testing.assert_close(got, torch.tensor([1.25, 1.0]) / (1.5 + 1e-6))


def test_ntp_algorithm_loss_sums_terms():
    batch, rollout = rollout_and_batch()
    out = NTP.from_config({"optimize_task_loss_prediction": True}).loss(batch, rollout, None)
    # per clip: ntp + tlp = 2 ln 2 + [0.8333, 0.6667]
    want = torch.tensor([2 * math.log(2) + 1.25 / 1.5, 2 * math.log(2) + 1.0 / 1.5])
    torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-5)
    assert math.isclose(float(out.metrics["ntp_loss"]), 2 * math.log(2), rel_tol=1e-5)
    assert math.isclose(float(out.metrics["label_gazes_per_frame"]), 1.5)  # 3 real gazes / 2 clips / 1 frame
    # d loss.mean() / d log p = -m / (2 * 1.5): only real slots get a gradient
    out.loss.mean().backward()
    g = rollout.scores.log_probs.grad
    torch.testing.assert_close(g, -(~IS_PADDED).float() / (2 * (1.5 + 1e-6)))


def test_ntp_without_tlp_keeps_head_in_graph_with_zero_value():
    batch, rollout = rollout_and_batch()
    out = NTP.from_config({"optimize_task_loss_prediction": False}).loss(batch, rollout, None)
    torch.testing.assert_close(out.loss, torch.full((2,), 3 * math.log(2) / (1.5 + 1e-6)))
    out.loss.mean().backward()
    # the head gets a (zero) gradient rather than none, so DDP sees every parameter used
    assert rollout.scores.task_loss_prediction.grad is not None
    assert torch.count_nonzero(rollout.scores.task_loss_prediction.grad) == 0
