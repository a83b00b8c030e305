"""Pure loss functions shared by the algorithms (no trainer state, no in-place edits)."""
from __future__ import annotations

import torch
from torch import Tensor


def batch_mean_length(mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Scalar: average number of True entries per row of ``mask`` [B, N], plus ``eps``."""
    return mask.float().sum() / mask.shape[0] + eps


def masked_nll(log_probs: Tensor, is_real: Tensor) -> Tensor:
    """Next-token loss per clip, normalised by the batch-average real length.

        ntp_b = - sum_n m_bn * log p_bn / (sum_{b,n} m_bn / B + 1e-6)

    log_probs: [B, N]; is_real: [B, N] bool (True = a real gaze). Returns [B].
    Dividing by the *batch* average (not each clip's own length) weights every gaze equally
    within the batch, as upstream does.
    """
    m = is_real.float()
    return -(log_probs * m).sum(1) / batch_mean_length(is_real)


def task_loss_prediction_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Masked MSE of the task-loss head per clip.

        tlp_b = sum_n m_bn (pred_bn - target_bn)^2 / (sum_{b,n} m_bn / B + 1e-6)

    pred, target: [B, N]; mask: [B, N] bool (True = supervised slot). Returns [B].
    """
    m = mask.float()
    return ((pred.float() - target.float()) ** 2 * m).sum(1) / batch_mean_length(mask)
