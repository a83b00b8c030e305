"""`AutoGaze`: the gaze model with a typed API and upstream's dict call.

Typed API (what tasks and algorithms use):
    generate(video, budget, ...)  -> GazeRollout     free-running gazing and its scores, no grad
    score(video, gazes, ...)      -> GazeScores      teacher forcing, with grad
    sample_budget(video, ...)     -> Budget          strategies of section 4.8
The dict call ``model({"video": v}, gazing_ratio=..., ...)`` is a thin adapter (dict_api.py).
State-dict keys equal upstream's (``gazing_model.vision_model...``), so released checkpoints load.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from autogaze.interfaces import GazeModelBase
from autogaze.models.autogaze.budget import BudgetSampler, expand_groups, ratios_to_budget
from autogaze.models.autogaze.config import GAZE_PATCH_SIZE, AutoGazeConfig
from autogaze.models.autogaze.decoder import (GazeDecoder, build_teacher_forcing_inputs, positions_from_mask,
                                              sequence_layout)
from autogaze.models.autogaze.generation import DecodeState, SamplerSettings, generate_frames
from autogaze.models.autogaze.scoring import read_positions, score_hidden
from autogaze.models.autogaze.speed import SpeedOptions, apply_speed_options, current_speed_options
from autogaze.models.autogaze.token_space import TokenSpace
from autogaze.models.autogaze.vision_encoder import Connector, ShallowVideoConvNet
from autogaze.types import Budget, Gazes, GazeRollout, GazeScores


class GazingModel(nn.Module):
    """vision_model -> connector -> gaze_decoder (upstream's ``gazing_model`` sub-module)."""

    def __init__(self, config: AutoGazeConfig):
        super().__init__()
        g = config.gaze_model_config
        self.vision_model = ShallowVideoConvNet(**g["vision_model_config"], input_img_size=g["input_img_size"])
        self.connector = Connector(**g["connector_config"])
        self.gaze_decoder = GazeDecoder(config.decoder_config(), config.num_multi_token_pred)

    def embed_video(self, video: Tensor, conv_cache: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        """video [B, T, 3, H, W] -> (vision tokens [B, T, 196, D], conv caches)."""
        tokens, cache = self.vision_model(video, conv_cache)
        return self.connector(tokens), cache


class AutoGaze(PreTrainedModel, GazeModelBase):
    """AutoGaze gaze model. ``token_space`` describes the P = sum (s//16)^2 patch vocabulary.

    GazeModelBase comes after PreTrainedModel, so HF's save_pretrained wins; it adds the interface
    defaults (no task tokens or task video, ``image_processor`` None until ``from_config`` sets one).
    """

    can_score = True

    config_class = AutoGazeConfig
    base_model_prefix = "gazing_model"
    main_input_name = "video"
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules = ["LlamaDecoderLayer"]

    def __init__(self, config: AutoGazeConfig):
        super().__init__(config)
        config.validate()
        self.token_space = TokenSpace(tuple(config.scale_list), GAZE_PATCH_SIZE)
        self.gazing_model = GazingModel(config)
        self.budget_sampler = BudgetSampler(config.budget, config.tokens_per_frame)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Upstream leaves the conv encoder at PyTorch defaults and the connector at randn; only the
        # decoder heads get HF's normal(0, 0.02) (the LlamaModel body initialises itself).
        if isinstance(module, GazeDecoder):
            std = module.model.config.initializer_range
            nn.init.normal_(module.lm_head.weight, std=std)
            nn.init.normal_(module.task_loss_prediction_head.weight, std=std)

    # ------------------------------------------------------------------ Hydra entry points
    @classmethod
    def validate_config(cls, cfg: dict) -> AutoGazeConfig:
        """Parse and check the Hydra ``model`` group without building weights."""
        return AutoGazeConfig.from_hydra(cfg)

    @classmethod
    def from_config(cls, cfg: dict) -> "AutoGaze":
        """Build from the Hydra ``model`` group; its ``preprocessing`` becomes ``image_processor``
        (saved next to the weights by the trainer's checkpoints)."""
        from autogaze.models.autogaze.processor import AutoGazeImageProcessor

        model = cls(AutoGazeConfig.from_hydra(cfg))
        if cfg.get("preprocessing") is not None:
            model.image_processor = AutoGazeImageProcessor.from_hydra(cfg)
        return model

    @property
    def decoder(self) -> GazeDecoder:
        return self.gazing_model.gaze_decoder

    @property
    def tokens_per_frame(self) -> int:
        return self.token_space.tokens_per_frame

    @property
    def speed_options(self) -> SpeedOptions:
        """The code paths in effect (speed.py), every field concrete (oneDNN: the process-wide route)."""
        return current_speed_options(self)

    def set_speed_options(self, opts: SpeedOptions) -> SpeedOptions:
        """Select fast or reference code paths (``SpeedOptions.reference()``); same values either
        way. Returns the previous options; ``speed.speed_options(model, opts)`` restores them itself."""
        return apply_speed_options(self, opts)

    # ------------------------------------------------------------------ typed API
    def encode_video(self, video: Tensor) -> Tensor:
        """video [B, T, 3, H, W] -> vision tokens [B, T, V_tok, D] (connector output), the
        ``vision_tokens`` that generate / sample_budget / score accept to skip their own encode."""
        return self.gazing_model.embed_video(video)[0]

    def score(self, video: Tensor, gazes: Gazes, *, temperature: float = 1.0, masked: bool = False,
              top_k: int | None = None, vision_tokens: Tensor | None = None, group_size: int = 1,
              with_argmax: bool = False, with_logits: bool = False) -> GazeScores:
        """Teacher-forced scores of ``gazes``; differentiable.

        video [B, T, 3, H, W]; gazes [B, N]. Default: upstream's unmasked temperature-1 log-softmax.
        ``masked=True``: the generator's sampling distribution (see scoring.py), with ``top_k``
        (None -> config.sampling_top_k) and ``temperature``. Returns GazeScores [B, N] (fp32).
        ``group_size=G``: ``video`` holds G identical group-major copies ``(g b)`` of B clips (GRPO's
        expand_groups); the encoder runs (forward and backward) on the first copy only and its
        tokens are repeated, which gives the same values and gradients at 1/G of the encoder cost.
        ``with_argmax``: also fill ``GazeScores.argmax_ids`` (imitation accuracy, evaluation/imitation.py).
        ``with_logits``: also ``GazeScores.logits`` [B, N, P + 1] (NTP's soft-label targets).
        """
        if vision_tokens is None:
            rows = video.shape[0]
            if rows % group_size:
                raise ValueError(f"batch of {rows} rows is not a multiple of group_size={group_size}")
            vision_tokens = self.encode_video(video[: rows // group_size])  # [B, T, V_tok, D]
            if group_size > 1:
                vision_tokens = expand_groups(vision_tokens, group_size)     # -> [(g b), T, V_tok, D]
        layout = sequence_layout(gazes.num_per_frame.to(video.device), vision_tokens.shape[2])
        embeds, mask = build_teacher_forcing_inputs(self.decoder, vision_tokens, gazes, layout)
        src, last = read_positions(layout.gaze_pos, layout.slot_in_frame, self.decoder.num_multi_token_pred)
        read, rows = torch.unique(torch.cat([src, last]), return_inverse=True)  # positions whose output is used
        hidden = self.decoder.body(embeds, mask, positions_from_mask(mask), out_positions=read)
        top_k = self.config.sampling_top_k if top_k is None else top_k
        return score_hidden(self.decoder, hidden, rows[: src.numel()], rows[src.numel():], gazes,
                            layout.slot_in_frame, temperature=temperature, masked=masked,
                            top_k=top_k if masked else 0, with_argmax=with_argmax, with_logits=with_logits)

    @torch.no_grad()
    def generate(self, video: Tensor, budget: Budget, *, temperature: float = 1.0, top_k: int | None = None,
                 do_sample: bool | None = None, generator: torch.Generator | None = None,
                 state: DecodeState | None = None, keep_state: bool = False,
                 vision_tokens: Tensor | None = None) -> GazeRollout:
        """Free-running gazing -> GazeRollout (gazes, budget, sample_log_probs [B, N], scores).

        video [B, T, 3, H, W]; budget.max_gazes [B, T]. do_sample None -> ``self.training``.
        sample_log_probs: log-probs of the picks under the distribution they were drawn from
        (masked, tempered, top-k when sampling; masked at temperature 1 without top-k when greedy).
        scores: GazeScores [B, N] read off the decode, no grad, entropy None: log_probs and
        task_loss_prediction equal ``score(video, gazes)`` (unmasked, temperature 1) to float
        rounding, whatever the sampling temperature, so no second pass is needed without grad.
        With ``keep_state`` the rollout also holds the DecodeState for streaming (``rollout.state``;
        pass it back as ``state``); off by default, so a rollout does not keep the KV cache alive.
        ``vision_tokens`` [B, T, V_tok, D] (``encode_video(video)``) skips the encoder; not with
        streaming, whose conv cache only the encoder advances.
        """
        do_sample = self.training if do_sample is None else do_sample
        sampler = SamplerSettings(do_sample, temperature,
                                  self.config.sampling_top_k if top_k is None else top_k, generator)
        conv_cache = None if state is None else state.conv_cache
        if vision_tokens is None:
            vision_tokens, conv_cache = self.gazing_model.embed_video(video, conv_cache)
        elif state is not None or keep_state:
            raise ValueError("vision_tokens cannot be combined with streaming (state / keep_state)")
        gazes, logp, scores, state = generate_frames(self.decoder, vision_tokens, budget, sampler, state)
        state.conv_cache = conv_cache
        return GazeRollout(gazes=gazes, scores=scores, budget=budget, sample_log_probs=logp,
                           state=state if keep_state else None)

    def sample_budget(self, video: Tensor, *, training: bool, group_size: int = 1, gazing_ratio=None,
                      task_loss_requirement=None, generator: torch.Generator | None = None,
                      temperature: float = 1.0, vision_tokens: Tensor | None = None) -> Budget:
        """Budget for ``video`` [G*B, T, ...] (group-major copies) with the strategies of the ``model`` group (TRAINING.md).

        Explicit ``gazing_ratio`` (scalar, T values, [B] or [B, T]) and/or ``task_loss_requirement``
        win; otherwise the config's strategies for the mode (``training``) are used. Draws are made
        for the first copy of each clip and repeated to every group member. ``vision_tokens``
        [G*B, T, V_tok, D] (``encode_video(video)``) lets the ``self`` probe skip the encoder.
        """
        rows, T = video.shape[:2]
        if rows % group_size:
            raise ValueError(f"batch of {rows} rows is not a multiple of group_size={group_size}")
        B, dev = rows // group_size, video.device
        if gazing_ratio is not None or task_loss_requirement is not None:
            budget = self.budget_sampler.from_user(B, T, dev, gazing_ratio, task_loss_requirement)
            return budget.map(lambda t: expand_groups(t, group_size))
        bs = self.budget_sampler
        ratio = bs.video_ratio(training, dev, generator)
        if self.config.budget.frame_strategy[training] == "self":
            tokens = None if vision_tokens is None else vision_tokens[:B]
            max_gazes, tau = self._self_budget(video[:B], ratio, training, generator, temperature, tokens)
        else:
            max_gazes = ratios_to_budget(bs.frame_ratios(ratio, B, T, training, generator), self.tokens_per_frame)
            tau = bs.requirement(training, dev, generator)
        tau = None if tau is None else tau.float().expand(B, T).clone()
        return Budget(max_gazes, tau).map(lambda t: expand_groups(t, group_size))

    def _self_budget(self, clips: Tensor, ratio: Tensor, training: bool, generator, temperature: float,
                     vision_tokens: Tensor | None = None):
        """On-policy budgets: gaze with the cap and a forced tau, count the real gazes per frame.

        clips [B, T, ...] (first group copy) -> (max_gazes [B, T] long, tau for the real rollout or None).
        """
        B, T = clips.shape[:2]
        bs = self.budget_sampler
        tau = bs.requirement(training, clips.device, generator, force=True)
        probe = Budget(ratios_to_budget(ratio.float().expand(B, T), self.tokens_per_frame),
                       tau.float().expand(B, T).clone())
        rollout = self.generate(clips, probe, temperature=temperature, do_sample=training, generator=generator,
                                vision_tokens=vision_tokens)
        counts = rollout.gazes.to_mask().sum(-1).long().clamp_min(1)  # [B, T] real gazes per frame
        # The real rollout keeps tau only when the mode asks for it (upstream: not during training).
        return counts, (tau if self.config.budget.has_requirement[training] else None)

    # ------------------------------------------------------------------ upstream dict call
    def forward(self, inputs: dict, **kwargs) -> dict:
        """Upstream's call convention; see ``dict_api.forward_dict`` for the arguments and keys."""
        from autogaze.models.autogaze.dict_api import forward_dict

        return forward_dict(self, inputs, **kwargs)
