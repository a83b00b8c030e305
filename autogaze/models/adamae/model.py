"""AdaMAE's adaptive token sampler (Bandara et al., CVPR 2023) as a gaze model.

    X [B, N, D] (the MAE's tubelet embedding) + learnable positions [1, N, D] (zero-initialised)
      -> one ViT block (pre-LN, MHA without qkv bias, MLP 4D, dropout 0.1) -> Linear(D, 1) -> z [B, N]
      -> nan_to_num -> p = softmax(z) ;  visible set ~ multinomial(p, N_v, replacement=False)

The block is transformers' ``VideoMAELayer`` (the ViT block). Choices where the sources are silent
or where this port departs (see also token_sampler.py):

* Tokens: AdaMAE reads the MAE's own embedding with its gradient reaching the Conv3d; here that is
  ``model.embedding=shared`` (the default): the algorithm passes ``tokens=task.embed_tokens(...)``.
  ``embedding=own`` gives the sampler its own Conv3d instead (a deviation, for evaluation or a
  frozen task).
* The position table covers ``max_num_frames``; a shorter clip uses its first T' * P rows.
* "dropout 0.1" is applied where timm's ``drop`` acts (attention-output projection and MLP);
  attention-probability dropout stays 0.
* Temperature: AdaMAE parses one but never applies it; ``temperature`` defaults to 1 (= none).
* The loss lives in the algorithm: -mean_{i masked} log p_i * sg(e_i) (a heuristic score function,
  not the set's REINFORCE term), with weight 1e-4 next to the MAE loss.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers.models.videomae.modeling_videomae import VideoMAELayer

from .config import ADAMAE_PRESETS, AdaMAEConfig, parse_sampler_config
from .token_sampler import TokenSampler


class AdaMAE(TokenSampler):
    """MHA token sampler: ``pos_table`` [1, N_max, D], ``block`` (VideoMAELayer), ``head`` Linear(D, 1)."""

    def __init__(self, config: AdaMAEConfig | None = None, **model_keys: Any):
        if config is None:
            config = parse_sampler_config(AdaMAEConfig, model_keys, ADAMAE_PRESETS)
        super().__init__(config)
        self.pos_table = nn.Parameter(torch.zeros(1, config.max_tokens, config.hidden_size))
        self.block = VideoMAELayer(self.videomae_config(qkv_bias=False, hidden_dropout_prob=config.dropout,
                                                        attention_probs_dropout_prob=0.0))
        self.head = nn.Linear(config.hidden_size, 1)
        self.init_weights()

    @classmethod
    def validate_config(cls, cfg: Any) -> AdaMAEConfig:
        """Parse and check the ``model`` group (see config.py) without building anything."""
        return parse_sampler_config(AdaMAEConfig, cfg, ADAMAE_PRESETS)

    @classmethod
    def from_config(cls, cfg: Any) -> "AdaMAE":
        return cls(cls.validate_config(cfg))

    def token_logits(self, tokens: Tensor) -> Tensor:
        """tokens X [B, N, D] -> z [B, N]."""
        N = tokens.shape[1]
        h = self.block(tokens + self.pos_table[:, :N].to(tokens.dtype))  # [B, N, D]
        return self.head(h).squeeze(-1)
