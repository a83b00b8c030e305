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


def soft_label_nll(logits: Tensor, candidate_local: Tensor, candidate_losses: Tensor, temperature: float,
                   is_real: Tensor) -> Tensor:
    """Next-token loss against the labeller's candidates instead of its one pick, per clip.

        w_bnm  = softmax_m( -(L_bnm - L_bn0) / temperature )      L = the loss candidate m reaches
        soft_b = - sum_n m_bn sum_m w_bnm log p(c_bnm) / (sum_{b,n} m_bn / B + 1e-6)

    Greedy search keeps only the best of candidates whose losses are often nearly equal, which makes
    the hard label partly arbitrary; here each near-best candidate keeps a share of the target in
    proportion to how close it came. temperature -> 0 gives back ``masked_nll`` of the pick.
    logits [B, N, V]; candidate_local [B, N, M] frame-local ids (entry 0 = the pick);
    candidate_losses [B, N, M] (+inf = unused); is_real [B, N] bool. Returns [B].
    """
    gap = (candidate_losses - candidate_losses[..., :1]).float()
    w = torch.softmax(-gap / temperature, dim=-1)  # +inf gaps get weight 0
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, candidate_local)
    nll = -(w * logp.masked_fill(w == 0, 0.0)).sum(-1)  # [B, N]
    return (nll * is_real.float()).sum(1) / batch_mean_length(is_real)


def task_loss_prediction_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Masked MSE of the task-loss head per clip.

        tlp_b = sum_n m_bn (pred_bn - target_bn)^2 / (sum_{b,n} m_bn / B + 1e-6)

    pred, target: [B, N]; mask: [B, N] bool (True = supervised slot). Returns [B].
    """
    m = mask.float()
    return ((pred.float() - target.float()) ** 2 * m).sum(1) / batch_mean_length(mask)


# ---------------------------------------------------------------------------------- set samplers
# The TATS (ICCVW 2025) and AdaMAE (CVPR 2023) samplers put one softmax over a clip's N tokens;
# their losses read it at the *masked* tokens M_b (the MAE's reconstruction targets).
def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """x [B, N], mask [B, N] bool -> [B]: mean of x over each row's True entries (0 for none)."""
    m = mask.float()
    return (x.float() * m).sum(1) / m.sum(1).clamp_min(1.0)


def score_function_loss(token_log_probs: Tensor, token_error: Tensor, is_masked: Tensor) -> Tensor:
    """AdaMAE's sampler loss per clip (Bandara et al., CVPR 2023):

        l_s^b = - mean_{i in M_b} log p_i * sg(e_i)

    token_log_probs [B, N] (with grad); token_error [B, N] e_i >= 0; is_masked [B, N] bool -> [B].
    No baseline, clip or entropy term; e_i is detached here, whatever the caller passes.
    """
    return -masked_mean(token_log_probs * token_error.detach(), is_masked)


def ppo_clip_objective(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, is_masked: Tensor,
                       clip_eps: float) -> Tensor:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7) per clip, over its masked tokens:

        r_i      = exp(log p_theta(i) - log p_old(i))
        L_clip_b = mean_{i in M_b} min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i)

    log_probs [B, N] (with grad); old_log_probs, advantages [B, N] (no grad); is_masked [B, N] bool
    -> [B], to be *maximised*. Unmasked entries are zeroed before the exponent, so a -inf there
    cannot turn into NaN.
    """
    log_ratio = torch.where(is_masked, log_probs.float() - old_log_probs.float(), torch.zeros_like(log_probs.float()))
    ratio = log_ratio.exp()
    adv = advantages.detach().float()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv)
    return masked_mean(surrogate, is_masked)


def value_loss(value: Tensor, returns: Tensor) -> Tensor:
    """L_vf_b = (V_theta,b - R_b)^2; value, returns [B] -> [B] (no value clipping)."""
    return (value.float() - returns.detach().float()) ** 2


def tats_ppo_loss(clip_objective: Tensor, value_err: Tensor, entropy: Tensor, c1: float, c2: float,
                  c3: float) -> Tensor:
    """TATS's sampler loss per clip, the PPO objective with a value and an entropy term:

        L_s = -(c1 * L_clip - c2 * L_vf + c3 * H)

    clip_objective, value_err, entropy [B] (H = -sum_j p_j log p_j) -> [B], to be minimised.
    """
    return -(c1 * clip_objective - c2 * value_err + c3 * entropy)


def ppo_ratio_stats(log_probs: Tensor, old_log_probs: Tensor, is_masked: Tensor, clip_eps: float) -> dict[str, Tensor]:
    """Detached health scalars over the masked tokens (cleanrl's ppo.py habits):

        approx_kl = mean((r - 1) - log r)    (Schulman's k3 estimator of KL(p_old || p_theta), >= 0)
        clip_frac = mean(|r - 1| > eps)      (share of tokens whose ratio the clip acts on)

    All inputs [B, N]; both are exactly 0 while p_theta == p_old.
    """
    with torch.no_grad():
        log_ratio = (log_probs.float() - old_log_probs.float())[is_masked]
        if log_ratio.numel() == 0:
            zero = log_probs.new_zeros((), dtype=torch.float32)
            return {"approx_kl": zero, "clip_frac": zero}
        ratio = log_ratio.exp()
        return {"approx_kl": ((ratio - 1) - log_ratio).mean(),
                "clip_frac": ((ratio - 1).abs() > clip_eps).float().mean()}


def explained_variance(prediction: Tensor, target: Tensor) -> Tensor:
    """1 - Var(target - prediction) / Var(target) over all entries (population variances); NaN
    when the target has no variance. 1 = perfect critic, 0 = no better than a constant."""
    with torch.no_grad():
        y, yhat = target.float().flatten(), prediction.float().flatten()
        var = y.var(correction=0)
        if y.numel() < 2 or float(var) == 0.0:
            return torch.full((), float("nan"), device=y.device)
        return 1 - (y - yhat).var(correction=0) / var
