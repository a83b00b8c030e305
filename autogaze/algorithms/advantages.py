"""Group layout, advantage estimators and discounting: the pure core of group-relative RL.

Everything here is a function of tensors (no trainer state, no in-place edits on inputs), so other
group-relative methods can reuse it.

Group layout (written down once, used everywhere): a batch of B clips is expanded into G*B
rollouts **group-major**, ``(g b)``: copy g of clip b sits at row ``g * B + b``. Rows 0..B-1 are
the first copy of every clip, which is where the gaze model draws per-clip budgets.
:func:`expand_groups` makes that layout; :func:`group_view` is the only way tensors are reshaped
back into groups.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
from torch import Tensor

from autogaze.types import Batch, repeat_groups
from autogaze.utils.parsing import check_choice


# ---------------------------------------------------------------------------------- group layout
def expand_groups(batch: Batch, group_size: int) -> Batch:
    """B clips -> G*B rollouts, group-major: row ``g * B + b`` is copy g of clip b.

    Every batch-shaped tensor (video, video_for_task, labels) is repeated along dim 0; ``paths`` is
    ``paths * G`` (so ``paths[g * B + b] == paths[b]``); ``group_size`` is set to G. When
    ``video_for_task`` is the same tensor object as ``video`` it stays shared (one copy in memory).
    """
    if batch.group_size != 1:
        raise ValueError(f"batch is already expanded (group_size={batch.group_size}); expand once")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    out = batch.map(lambda t: repeat_groups(t, group_size))  # [B, ...] -> [(g b), ...]
    return replace(out, paths=list(batch.paths) * group_size, group_size=group_size)


def group_view(x: Tensor, group_size: int) -> Tensor:
    """[G*B, ...] in the group-major layout of :func:`expand_groups` -> [G, B, ...] (a view)."""
    if x.shape[0] % group_size:
        raise ValueError(f"leading dim {x.shape[0]} is not a multiple of group_size={group_size}")
    return x.view(group_size, x.shape[0] // group_size, *x.shape[1:])  # (g b) ... -> g b ...


# ---------------------------------------------------------------------------------- advantages
def group_mean_advantage(reward: Tensor, group_size: int, *, normalize_std: bool = False,
                         eps: float = 1e-4) -> Tensor:
    """GRPO baseline (Shao et al. 2024, DeepSeekMath eq. 3).

        A_gb = r_gb - mean_g' r_g'b                      (upstream: no division by std)
        A_gb = (r_gb - mean_g' r_g'b) / (std_g' r_g'b + eps)   (normalize_std=True)

    reward [G*B, F] (group-major) -> advantages [G*B, F]. The std is the population std
    (correction 0), so G=1 gives zeros rather than NaN. Sums to zero within every group.
    """
    r = group_view(reward.float(), group_size)              # [G, B, F]
    adv = r - r.mean(0, keepdim=True)
    if normalize_std:
        adv = adv / (r.std(0, correction=0, keepdim=True) + eps)
    return adv.reshape(reward.shape)                        # g b f -> (g b) f


def leave_one_out_advantage(reward: Tensor, group_size: int, *, normalize_std: bool = False,
                            eps: float = 1e-4) -> Tensor:
    """RLOO baseline (Kool et al. 2019; Ahmadian et al. 2024): mean of the *other* G-1 rollouts.

        A_gb = r_gb - mean_{g' != g} r_g'b = G/(G-1) * (r_gb - mean_g' r_g'b)

    An unbiased baseline (it does not depend on the rollout it scores). Needs G >= 2.
    reward [G*B, F] -> [G*B, F]; with ``normalize_std`` divided by the group std + eps.
    """
    if group_size < 2:
        raise ValueError("the leave-one-out baseline needs group_size >= 2")
    adv = group_mean_advantage(reward, group_size, normalize_std=normalize_std, eps=eps)
    return adv * (group_size / (group_size - 1))


#: name -> estimator(reward [G*B, F], group_size, *, normalize_std, eps) -> advantages [G*B, F].
ADVANTAGE_ESTIMATORS: dict[str, Callable[..., Tensor]] = {
    "group_mean": group_mean_advantage,   # upstream AutoGaze / GRPO
    "leave_one_out": leave_one_out_advantage,
}


def get_advantage_estimator(name: str, key: str = "algorithm.advantage_estimator") -> Callable[..., Tensor]:
    """Look an estimator up by name; the error lists the valid names."""
    return ADVANTAGE_ESTIMATORS[check_choice(key, name, list(ADVANTAGE_ESTIMATORS))]


def zero_std_group_fraction(reward: Tensor, group_size: int) -> Tensor:
    """Scalar: share of (clip, rewarded frame) groups whose G rewards are all equal (no signal)."""
    std = group_view(reward.float(), group_size).std(0, correction=0)  # [B, F]
    return torch.isclose(std, torch.zeros_like(std)).float().mean()


# ---------------------------------------------------------------------------------- discounting
def discount_advantages(adv: Tensor, traj_len: Tensor, is_padded: Tensor, gamma: float) -> Tensor:
    """Spread per-reward advantages over the gaze slots before each reward.

    For reward i (a reconstructed frame) with trajectory length L_i (slots up to and including
    that frame, padding included) and real-slot mask M = ~is_padded:

        d_{i,n} = #{m in [n, L_i) : M_m} - 1          distance to the reward in *real* gazes
        A_{i,n} = A_i * gamma ** d_{i,n} * M_n        for n <  L_i
        A_{i,n} = 0                                   for n >= L_i
        A_n     = sum_i A_{i,n}

    adv [R, F] per-reward advantages; traj_len LongTensor [F]; is_padded BoolTensor [R, N];
    gamma in (0, 1]. Returns [R, N] float, zero on padded slots. Vectorised over rewards and slots.
    """
    R, N = is_padded.shape
    if adv.shape[1] != traj_len.numel() or int(traj_len.max()) > N:
        raise ValueError(f"adv {tuple(adv.shape)} / traj_len {traj_len.tolist()} do not fit {N} slots")
    is_real = (~is_padded).float()                                                  # [R, N]
    in_window = torch.arange(N, device=is_padded.device) < traj_len.to(is_padded.device)[:, None]  # [F, N]
    real_in_window = is_real[:, None, :] * in_window[None].float()                 # [R, F, N]
    # Real slots in [n, L_i): a reverse cumulative sum along the slot axis.
    real_to_reward = real_in_window.flip(-1).cumsum(-1).flip(-1)                    # [R, F, N]
    # Only entries with real_in_window = 1 are kept; there the count is >= 1, so d >= 0.
    decay = torch.pow(torch.full_like(real_to_reward, float(gamma)), real_to_reward - 1)
    return (adv.float()[:, :, None] * decay * real_in_window).sum(1)               # [R, N]
