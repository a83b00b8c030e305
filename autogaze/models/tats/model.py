"""TATS, the trajectory-aware token sampler (ICCVW 2025), as a gaze model.

    X [B, N, D] + fixed sin-cos positions -> one trajectory-attention block (attention.py)
      -> actor Linear(D, 1) -> z [B, N] -> p = softmax(z / tau)
    mean_i X_i [B, D] -> critic Linear -> ReLU -> Linear -> V [B]

Sampling, budgets and scores are the shared ``TokenSampler`` (adamae/token_sampler.py): the
visible set is N_v = int(N (1 - rho)) tokens drawn without replacement from p. The PPO
loss (advantage R - V_old, clip, value and entropy terms, warm-up, K / P_s alternation) belongs in
the algorithm.

Choices where the sources are silent:

* Embedding: ``model.embedding=shared`` by default, X = the MAE's tubelet embedding
  (``tokens=task.embed_tokens(...)``), as in AdaMAE, which TATS extends. Its PPO phase recomputes
  p on the *stored, detached* X, so a Conv3d of the sampler's own would never be trained; the MAE
  trains the shared one. ``embedding=own`` exists for a frozen task or evaluation. Whether X is
  detached for the sampler in the MAE phase is the algorithm's call (the sampler is frozen then).
* No learnable position table (AdaMAE has one); the paper only names a fixed code.
* Positions: the paper names a fixed periodic 3-D code without its formula; this uses VideoMAE's
  1-D sinusoid over the flat (t', h', w') id, a non-persistent buffer, first T' * P rows.
* No CLS token (Motionformer assumes one): the actor scores tokens and the critic pools them.
* Heads: 12 at ViT-B width, 4 in ``tiny``; exact attention unless ``landmarks`` is set;
  stage-2 values are projected (``trajectory_values=False``).
* The critic reads the embedding X (not the block output), as the method's description has it;
  hidden width ``critic_hidden_size`` (default D). V is one number per clip: with a per-token
  reward R_i the advantage R_i - V broadcasts it; per-token vs clip-mean R, advantage
  normalisation, the clip epsilon and the loss signs are the algorithm's choices.
* No dropout anywhere, so train / eval mode does not change p.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

from autogaze.models.adamae.config import parse_sampler_config
from autogaze.models.adamae.token_sampler import TokenSampler

from .attention import TrajectoryBlock
from .config import TATS_PRESETS, TATSConfig, check_tats


class TATS(TokenSampler):
    """Actor (``block`` + ``actor``) and critic over tubelet tokens."""

    def __init__(self, config: TATSConfig | None = None, **model_keys: Any):
        if config is None:
            config = self.validate_config(model_keys)
        super().__init__(config)
        D = config.hidden_size
        self.register_buffer("positions", get_sinusoid_encoding_table(config.max_tokens, D), persistent=False)
        self.block = TrajectoryBlock(self.videomae_config(), landmarks=config.landmarks,
                                     trajectory_values=config.trajectory_values)
        self.actor = nn.Linear(D, 1)
        hidden = config.critic_hidden_size or D
        self.critic = nn.Sequential(nn.Linear(D, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.init_weights()

    @classmethod
    def validate_config(cls, cfg: Any) -> TATSConfig:
        """Parse and check the ``model`` group without building anything."""
        return check_tats(parse_sampler_config(TATSConfig, cfg, TATS_PRESETS))

    @classmethod
    def from_config(cls, cfg: Any) -> "TATS":
        return cls(cls.validate_config(cfg))

    def token_logits(self, tokens: Tensor) -> Tensor:
        """tokens X [B, N, D] -> z [B, N]."""
        N = tokens.shape[1]
        h = self.block(tokens + self.positions[:, :N].to(tokens.dtype), num_frames=N // self.tokens_per_frame)
        return self.actor(h).squeeze(-1)

    def token_value(self, tokens: Tensor) -> Tensor:
        """tokens X [B, N, D] -> V [B]."""
        return self.critic(tokens.mean(1)).squeeze(-1)
