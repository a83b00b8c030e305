"""AdaMAE (CVPR 2023) token sampler as a gaze model, plus the pieces TATS reuses.

Modules: config (``SamplerConfig`` shared keys, ``AdaMAEConfig``), sampling (Gumbel-top-k draw
without replacement, Plackett-Luce log-prob, ``Gazes`` layout), token_sampler (``TokenSampler``:
the sample_budget / generate / score interface), model (``AdaMAE``).
"""
from .config import ADAMAE_PRESETS, AdaMAEConfig, SamplerConfig, parse_sampler_config
from .model import AdaMAE
from .sampling import (gazes_from_visible, gumbel_keys, plackett_luce_log_prob, sample_without_replacement,
                       visible_mask)
from .token_sampler import TokenDistribution, TokenSampler

__all__ = ["AdaMAE", "AdaMAEConfig", "SamplerConfig", "ADAMAE_PRESETS", "parse_sampler_config", "TokenSampler",
           "TokenDistribution", "gazes_from_visible", "gumbel_keys", "plackett_luce_log_prob",
           "sample_without_replacement", "visible_mask"]
