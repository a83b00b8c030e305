"""Upstream's dict call, ``model({"video": v}, gazing_ratio=..., ...)``.

A thin adapter over the typed API: parse the arguments into a Budget / Gazes / DecodeState, call
``sample_budget`` + ``generate`` (+ ``score`` when needed, see below), and lay the result out as
upstream's output dict. ``log_action_probs`` / ``task_loss_prediction`` come from the decode itself
(``GazeRollout.scores``: the teacher-forced values to float rounding) unless gradients or another
distribution are wanted: a teacher-forced ``score`` pass runs for ``gazing_info``, and in training
mode with grad enabled or with ``score_under_sampling_distribution``.
Deviations (documented for users switching from upstream):
* in eval mode (or under no_grad) the generated call's ``log_action_probs`` carry no gradient;
  for gradients use training mode, or ``model.score(video, gazes)``.
* ``log_action_probs`` is ``log_softmax`` (upstream: ``log(p + 1e-8)``); equal wherever p >> 1e-8.
* padded slots of ``gazing_pos`` hold an in-range id of their own frame (upstream: ``265 * (t+1)``,
  which collides with the next frame). Filter with ``if_padded_gazing`` either way.
* ``past_input_embeds`` holds only the tokens not yet fed to the decoder (upstream: the whole
  context). Treat the four ``past_*`` values as one opaque cache and pass them back unchanged.
"""
from __future__ import annotations

import torch
from torch import Tensor

from autogaze.models.autogaze.anyres import AnyResPlan
from autogaze.models.autogaze.generation import DecodeState
from autogaze.types import Gazes


def gazes_from_gazing_info(info, tokens_per_frame: int) -> Gazes:
    """Upstream's NTP label dict {'gazing_pos' [B, N] global ids (-1 or junk at pads),
    'if_padded_gazing' [B, N], 'num_gazing_each_frame' [T]} (or a Gazes) -> Gazes."""
    if isinstance(info, Gazes):
        return info
    pos, pad = info["gazing_pos"], info["if_padded_gazing"].bool()
    num = torch.as_tensor(info["num_gazing_each_frame"], dtype=torch.long, device=pos.device)
    frame = torch.repeat_interleave(torch.arange(num.numel(), device=pos.device), num)
    ids = torch.where(pad, frame[None] * tokens_per_frame, pos.long())
    return Gazes(ids=ids, is_padded=pad, num_per_frame=num, tokens_per_frame=tokens_per_frame)


def _state_from_caches(past_key_values, past_inputs_embeds, past_attention_mask, past_conv_values):
    given = [x is not None for x in (past_key_values, past_inputs_embeds, past_attention_mask, past_conv_values)]
    if not any(given):
        return None
    if not all(given):
        raise ValueError("streaming needs all four caches (past_key_values, past_inputs_embeds, "
                         "past_attention_mask, past_conv_values) from the previous call, or none")
    n_cached = past_attention_mask.shape[1] - past_inputs_embeds.shape[1]
    return DecodeState(past_key_values, past_attention_mask[:, :n_cached], past_inputs_embeds,
                       past_attention_mask[:, n_cached:], list(past_conv_values))


def forward_dict(model, inputs: dict, gazing_ratio=None, task_loss_requirement=None, target_scales=None,
                 target_patch_size=None, gazing_info=None, temperature: float = 1.0, generate_only: bool = False,
                 use_cache: bool = False, past_key_values=None, past_inputs_embeds=None,
                 past_attention_mask=None, past_conv_values=None, generator: torch.Generator | None = None) -> dict:
    """inputs: {'video': [B, T, 3, H, W], optional 'group_size': G for group-major batches}.

    Returns upstream's keys: gazing_pos [B, N], if_padded_gazing [B, N], num_gazing_each_frame [T],
    log_action_probs / task_loss_prediction [B, N] (None when generate_only; absent after
    any-resolution adaptation, as upstream), gazing_mask (list of [B, T, n_s]), scales,
    frame_sampling_rate, num_vision_tokens_each_frame, has_task_loss_requirement,
    task_loss_requirement [B, T] or None, and the four past_* caches (None unless use_cache).
    In streaming mode (use_cache) ``gazing_pos`` is frame-local to the frames of this call, and the
    scores are this call's slots given the cached context.
    """
    video: Tensor = inputs["video"]
    group_size = int(inputs.get("group_size", 1))
    state = _state_from_caches(past_key_values, past_inputs_embeds, past_attention_mask, past_conv_values)
    plan = AnyResPlan.make(model.token_space, video.shape[-1], target_scales, target_patch_size)
    # Teacher-force only what the decode cannot give: given gazes, gradients, the sampling distribution.
    masked = model.config.score_under_sampling_distribution and gazing_info is None and model.training
    rescore = not generate_only and plan is None and (
        gazing_info is not None or masked or (model.training and torch.is_grad_enabled()))
    if (use_cache or state is not None) and (rescore or gazing_info is not None):
        raise ValueError("streaming (use_cache / past_*) generates, so it takes no gazing_info, and its scores come "
                         "from the decode (no grad): use eval mode or no_grad, or generate_only=True")
    if plan is not None:
        if gazing_info is not None or use_cache:
            raise ValueError("target_scales/target_patch_size cannot be combined with gazing_info or streaming")
        if video.shape[-1] != video.shape[-2]:
            raise ValueError(f"any-resolution input must be square, got {tuple(video.shape[-2:])}")
        video = plan.tile(video)

    budget = rollout = None
    if gazing_info is not None:
        gazes = gazes_from_gazing_info(gazing_info, model.tokens_per_frame)
    else:
        # Tiles are laid out ((g b) i j), so group-major batches keep the same group_size.
        budget = model.sample_budget(video, training=model.training, group_size=group_size,
                                     gazing_ratio=gazing_ratio, task_loss_requirement=task_loss_requirement,
                                     generator=generator, temperature=temperature)
        rollout = model.generate(video, budget, temperature=temperature, generator=generator, state=state,
                                 keep_state=True)
        state = rollout.state
        gazes = rollout.gazes

    log_probs = task_loss = None
    if rescore:
        scores = model.score(video, gazes, temperature=temperature if masked else 1.0, masked=masked)
        log_probs, task_loss = scores.log_probs, scores.task_loss_prediction
    elif not generate_only and plan is None:  # (any-resolution output omits them, as upstream)
        log_probs, task_loss = rollout.scores.log_probs, rollout.scores.task_loss_prediction

    out = {}
    scales, P = list(model.token_space.scales), model.tokens_per_frame
    if plan is not None:
        gazes = plan.stitch(gazes)
        scales, P = list(plan.target.scales), plan.target.tokens_per_frame
        split = plan.target.split_mask
    else:
        out.update(log_action_probs=log_probs, task_loss_prediction=task_loss)
        split = model.token_space.split_mask
    tau = None if budget is None else budget.task_loss_requirement
    if tau is not None and plan is not None:
        tau = tau[:: plan.n * plan.n]  # one row per clip again
    out.update(
        gazing_pos=gazes.ids, if_padded_gazing=gazes.is_padded, num_gazing_each_frame=gazes.num_per_frame,
        gazing_mask=split(gazes.to_mask()), scales=scales, frame_sampling_rate=1,
        num_vision_tokens_each_frame=P, has_task_loss_requirement=tau is not None, task_loss_requirement=tau,
        past_key_values=None, past_input_embeds=None, past_attention_mask=None, past_conv_values=None,
    )
    if use_cache:
        out.update(past_key_values=state.cache, past_input_embeds=state.pending_embeds,
                   past_attention_mask=state.full_mask(), past_conv_values=state.conv_cache)
    return out
