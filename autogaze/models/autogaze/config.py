"""`AutoGazeConfig`: reads and writes upstream's `config.json` unchanged.

Upstream stores lists as strings (``scales='32+64+112+224'``, ``dirichlet.alpha='10,3,3'``) and the
sub-models as nested dicts. We keep those raw values as attributes, so a checkpoint round-trips
key for key, and parse them once into typed views (``scale_list``, ``budget``, ``decoder_config()``).
``validate()`` checks every rule up front and raises ``ConfigError`` naming key, value, rule and fix.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from transformers import LlamaConfig, PretrainedConfig

from autogaze.utils.parsing import ConfigError, check_choice, parse_float_list, parse_scales

RATIO_STRATEGIES = ("fixed", "uniform", "exponential")
FRAME_STRATEGIES = ("uniform", "dirichlet", "self")
REQUIREMENT_STRATEGIES = ("fixed", "uniform")
ATTN_MODES = ("sdpa", "eager", "flash_attention_2")
GAZE_PATCH_SIZE = 16  # the gaze token space is defined on 16-px patches

# Our keys that upstream lacks; written to config.json only when they differ from these defaults,
# so a default config saves exactly upstream's key set.
EXTRA_DEFAULTS = {
    "sampling_top_k": 50,  # upstream samples with HF's default top-k 50
    "score_under_sampling_distribution": False,  # dict call re-scores unmasked, like upstream
}

DEFAULT_VISION = dict(hidden_dim=192, out_dim=192, depth=1, kernel_size=16, temporal_patch_size=1,
                      trunk_temporal_kernel_size=3, trunk_spatial_kernel_size=3)
DEFAULT_CONNECTOR = dict(hidden_dim=192)
DEFAULT_DECODER = dict(
    hidden_size=192, intermediate_size=384, max_position_embeddings=131072, num_attention_heads=6,
    num_hidden_layers=4, rms_norm_eps=1e-5, rope_theta=500000.0, use_cache=True, num_multi_token_pred=1,
    rope_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                      original_max_position_embeddings=8192, rope_type="llama3"),
)
DEFAULT_RATIO = {
    "sample_strategy_during_training": "fixed", "sample_strategy_during_inference": "fixed",
    "fixed": {"gazing_ratio": 0.5},
    "uniform": {"gazing_ratio_min": 0, "gazing_ratio_max": 1},
    "exponential": {"gazing_ratio_min": 0, "gazing_ratio_max": 1, "lambda": 10},
}
DEFAULT_FRAME = {
    "sample_strategy_during_training": "uniform", "sample_strategy_during_inference": "uniform",
    "uniform": None, "dirichlet": {"alpha": 0.5}, "self": None,
}
DEFAULT_REQUIREMENT = {
    "sample_strategy_during_training": "fixed", "sample_strategy_during_inference": "fixed",
    "fixed": {"task_loss_requirement": 0.7},
    "uniform": {"task_loss_requirement_min": 0.6, "task_loss_requirement_max": 0.9},
}


@dataclass(frozen=True)
class BudgetSettings:
    """Typed view of the three budget sub-configs."""

    ratio_strategy: dict[bool, str]         # training? -> 'fixed' | 'uniform' | 'exponential'
    ratio_fixed: float
    ratio_uniform: tuple[float, float]      # (min, max)
    ratio_exponential: tuple[float, float, float]  # (min, max, lambda)
    frame_strategy: dict[bool, str]         # training? -> 'uniform' | 'dirichlet' | 'self'
    dirichlet_alpha: tuple[float, ...]      # one value (shared) or one per frame
    has_requirement: dict[bool, bool]       # training? -> use a task-loss requirement
    requirement_strategy: dict[bool, str]   # training? -> 'fixed' | 'uniform'
    requirement_fixed: float
    requirement_uniform: tuple[float, float]


def _merge(default: dict, given: dict | None) -> dict:
    """Deep-merge ``given`` over a copy of ``default`` (given keys win, unknown keys kept)."""
    out = copy.deepcopy(default)
    for k, v in (given or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _to_plain(obj: Any) -> Any:
    """OmegaConf containers -> plain dicts/lists (so Hydra's ``cfg.model`` can be passed as is)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # omegaconf is a dependency, but the model must not need it
        pass
    return obj


class AutoGazeConfig(PretrainedConfig):
    """Configuration of the AutoGaze gaze model; keys and nesting exactly as upstream's config.json.

    Typed views (parsed once): ``scale_list`` [ascending ints], ``tokens_per_frame`` (P),
    ``num_multi_token_pred`` (K), ``budget`` (BudgetSettings), ``vision_config`` / ``connector_config``
    (dicts), ``decoder_config()`` (a LlamaConfig with vocab P+1, eos P and the attention mode).
    """

    model_type = "autogaze"

    def __init__(
        self,
        gaze_model_config: dict | None = None,
        gazing_ratio_config: dict | None = None,
        gazing_ratio_each_frame_config: dict | None = None,
        task_loss_requirement_config: dict | None = None,
        scales: str | int | list = "224",
        num_vision_tokens_each_frame: int = 196,
        max_num_frames: int = 16,
        use_flash_attn: bool = False,
        has_task_loss_requirement_during_training: bool = False,
        has_task_loss_requirement_during_inference: bool = False,
        max_batch_size: int | None = None,
        attn_mode: str | None = None,
        sampling_top_k: int = EXTRA_DEFAULTS["sampling_top_k"],
        score_under_sampling_distribution: bool = EXTRA_DEFAULTS["score_under_sampling_distribution"],
        **kwargs,
    ):
        gaze_model_config = copy.deepcopy(_to_plain(gaze_model_config) or {})
        gaze_model_config.setdefault("input_img_size", 224)
        gaze_model_config["vision_model_config"] = _merge(DEFAULT_VISION, gaze_model_config.get("vision_model_config"))
        gaze_model_config["connector_config"] = _merge(DEFAULT_CONNECTOR, gaze_model_config.get("connector_config"))
        gaze_model_config["gaze_decoder_config"] = _merge(DEFAULT_DECODER, gaze_model_config.get("gaze_decoder_config"))
        self.gaze_model_config = gaze_model_config
        self.gazing_ratio_config = _merge(DEFAULT_RATIO, _to_plain(gazing_ratio_config))
        self.gazing_ratio_each_frame_config = _merge(DEFAULT_FRAME, _to_plain(gazing_ratio_each_frame_config))
        self.task_loss_requirement_config = _merge(DEFAULT_REQUIREMENT, _to_plain(task_loss_requirement_config))
        self.scales = scales if isinstance(scales, str) else "+".join(str(s) for s in _to_plain(scales))
        self.num_vision_tokens_each_frame = int(num_vision_tokens_each_frame)
        self.max_num_frames = int(max_num_frames)
        self.use_flash_attn = bool(use_flash_attn)
        self.has_task_loss_requirement_during_training = bool(has_task_loss_requirement_during_training)
        self.has_task_loss_requirement_during_inference = bool(has_task_loss_requirement_during_inference)
        self.max_batch_size = max_batch_size
        self.attn_mode = attn_mode or ("flash_attention_2" if use_flash_attn else "sdpa")
        self.sampling_top_k = int(sampling_top_k)
        self.score_under_sampling_distribution = bool(score_under_sampling_distribution)
        super().__init__(**kwargs)
        self._fill_derived()

    def _fill_derived(self) -> None:
        """Fill the values upstream derives (connector tokens, vocab, eos) when they are absent."""
        g = self.gaze_model_config
        v, c, d = g["vision_model_config"], g["connector_config"], g["gaze_decoder_config"]
        g.setdefault("num_vision_tokens_each_frame", self.num_vision_tokens_each_frame)
        g.setdefault("model_type", "")
        c.setdefault("num_tokens", (g["input_img_size"] // v["kernel_size"]) ** 2)
        d.setdefault("vocab_size", self.num_vision_tokens_each_frame + 1)
        d.setdefault("eos_token_id", self.num_vision_tokens_each_frame)
        d.setdefault("num_key_value_heads", d["num_attention_heads"])
        d.setdefault("head_dim", d["hidden_size"] // d["num_attention_heads"])
        d.setdefault("model_type", "llama")
        d.setdefault("tie_word_embeddings", False)

    # ------------------------------------------------------------------ Hydra entry point
    @classmethod
    def from_hydra(cls, model_cfg: Any) -> "AutoGazeConfig":
        """Build from the Hydra ``model`` group (autogaze/configs/model/autogaze.yaml).

        ``_target_`` is dropped (upstream's train.py ignores it too) and ``preprocessing`` belongs to
        the image processor (``AutoGazeImageProcessor.from_hydra``), so neither lands in config.json.
        """
        d = dict(_to_plain(model_cfg))
        d.pop("_target_", None)
        d.pop("preprocessing", None)
        cfg = cls(**d)
        cfg.validate()
        return cfg

    # ------------------------------------------------------------------ typed views
    @property
    def scale_list(self) -> list[int]:
        return parse_scales("scales", self.scales)

    @property
    def tokens_per_frame(self) -> int:
        return self.num_vision_tokens_each_frame

    @property
    def num_multi_token_pred(self) -> int:
        return int(self.gaze_model_config["gaze_decoder_config"].get("num_multi_token_pred", 1))

    @property
    def input_img_size(self) -> int:
        return int(self.gaze_model_config["input_img_size"])

    @property
    def vision_config(self) -> dict:
        return self.gaze_model_config["vision_model_config"]

    @property
    def connector_config(self) -> dict:
        return self.gaze_model_config["connector_config"]

    def decoder_config(self) -> LlamaConfig:
        """The LlamaConfig of the decoder body; unknown HF bookkeeping keys are passed through."""
        d = {k: v for k, v in self.gaze_model_config["gaze_decoder_config"].items()
             if k not in ("num_multi_token_pred", "model_type", "_attn_implementation_autoset")}
        d["vocab_size"] = self.num_vision_tokens_each_frame + 1
        d["eos_token_id"] = self.num_vision_tokens_each_frame
        d["attn_implementation"] = self.attn_mode
        return LlamaConfig(**d)

    @property
    def budget(self) -> BudgetSettings:
        r, f, q = self.gazing_ratio_config, self.gazing_ratio_each_frame_config, self.task_loss_requirement_config
        alpha = (f.get("dirichlet") or {}).get("alpha", 0.5)
        return BudgetSettings(
            ratio_strategy={True: r["sample_strategy_during_training"], False: r["sample_strategy_during_inference"]},
            ratio_fixed=float(r["fixed"]["gazing_ratio"]),
            ratio_uniform=(float(r["uniform"]["gazing_ratio_min"]), float(r["uniform"]["gazing_ratio_max"])),
            ratio_exponential=(float(r["exponential"]["gazing_ratio_min"]),
                               float(r["exponential"]["gazing_ratio_max"]), float(r["exponential"]["lambda"])),
            frame_strategy={True: f["sample_strategy_during_training"], False: f["sample_strategy_during_inference"]},
            dirichlet_alpha=tuple(parse_float_list("gazing_ratio_each_frame_config.dirichlet.alpha", alpha, sep=",")),
            has_requirement={True: self.has_task_loss_requirement_during_training,
                             False: self.has_task_loss_requirement_during_inference},
            requirement_strategy={True: q["sample_strategy_during_training"],
                                  False: q["sample_strategy_during_inference"]},
            requirement_fixed=float(q["fixed"]["task_loss_requirement"]),
            requirement_uniform=(float(q["uniform"]["task_loss_requirement_min"]),
                                 float(q["uniform"]["task_loss_requirement_max"])),
        )

    # ------------------------------------------------------------------ validation
    def validate(self) -> "AutoGazeConfig":
        """Raise ConfigError on the first broken rule; return self so calls can chain."""
        scales = self.scale_list
        counts = [(s // GAZE_PATCH_SIZE) ** 2 for s in scales]
        for s in scales:
            if s % GAZE_PATCH_SIZE:
                raise ConfigError("scales", self.scales, f"every scale must be a multiple of {GAZE_PATCH_SIZE}",
                                  "use scales such as 32+64+112+224")
        if sum(counts) != self.num_vision_tokens_each_frame:
            raise ConfigError("num_vision_tokens_each_frame", self.num_vision_tokens_each_frame,
                              f"must equal sum((s//16)^2) over scales {scales} = {sum(counts)}",
                              f"set num_vision_tokens_each_frame={sum(counts)}")
        for key, strategies, choices in (
            ("gazing_ratio_config", self.gazing_ratio_config, RATIO_STRATEGIES),
            ("gazing_ratio_each_frame_config", self.gazing_ratio_each_frame_config, FRAME_STRATEGIES),
            ("task_loss_requirement_config", self.task_loss_requirement_config, REQUIREMENT_STRATEGIES),
        ):
            for mode in ("training", "inference"):
                check_choice(f"{key}.sample_strategy_during_{mode}", strategies[f"sample_strategy_during_{mode}"], choices)
        b = self.budget
        self._check_ranges(b)
        if len(b.dirichlet_alpha) not in (1, self.max_num_frames) or min(b.dirichlet_alpha) <= 0:
            raise ConfigError("gazing_ratio_each_frame_config.dirichlet.alpha",
                              self.gazing_ratio_each_frame_config["dirichlet"]["alpha"],
                              f"must be one positive number or max_num_frames={self.max_num_frames} of them",
                              f"give {self.max_num_frames} comma-separated values, e.g. '10,3,...,3'")
        check_choice("attn_mode", self.attn_mode, ATTN_MODES)
        self._check_shapes()
        if self.sampling_top_k < 0:
            raise ConfigError("sampling_top_k", self.sampling_top_k, "must be >= 0", "use 0 to disable top-k")
        return self

    def _check_ranges(self, b: BudgetSettings) -> None:
        for key, (lo, hi) in {"gazing_ratio_config.uniform": b.ratio_uniform,
                              "gazing_ratio_config.exponential": b.ratio_exponential[:2]}.items():
            if not 0 <= lo <= hi <= 1:
                raise ConfigError(f"{key}.gazing_ratio_min/max", (lo, hi), "need 0 <= min <= max <= 1",
                                  "pick a sub-range of [0, 1]")
        if not 0 < b.ratio_fixed <= 1:
            raise ConfigError("gazing_ratio_config.fixed.gazing_ratio", b.ratio_fixed, "must lie in (0, 1]",
                              "e.g. 0.1 or 0.75")
        if b.ratio_exponential[2] <= 0:
            raise ConfigError("gazing_ratio_config.exponential.lambda", b.ratio_exponential[2], "must be > 0",
                              "e.g. 10")
        lo, hi = b.requirement_uniform
        if lo > hi:
            raise ConfigError("task_loss_requirement_config.uniform", (lo, hi), "need min <= max", "swap them")

    def _check_shapes(self) -> None:
        v, c = self.vision_config, self.connector_config
        d = self.gaze_model_config["gaze_decoder_config"]
        size = self.input_img_size
        if size % v["kernel_size"] or c["num_tokens"] != (size // v["kernel_size"]) ** 2:
            raise ConfigError("gaze_model_config.connector_config.num_tokens", c["num_tokens"],
                              f"must equal (input_img_size/kernel_size)^2 = ({size}/{v['kernel_size']})^2",
                              "drop the key and let it be derived")
        if not v["out_dim"] == c["hidden_dim"] == d["hidden_size"]:
            raise ConfigError("gaze_model_config.*.hidden", (v["out_dim"], c["hidden_dim"], d["hidden_size"]),
                              "vision out_dim, connector hidden_dim and decoder hidden_size must agree",
                              "set all three to the same width")
        if d["vocab_size"] != self.num_vision_tokens_each_frame + 1 or d["eos_token_id"] != self.num_vision_tokens_each_frame:
            raise ConfigError("gaze_model_config.gaze_decoder_config.vocab_size", d["vocab_size"],
                              "must be num_vision_tokens_each_frame + 1 with eos = num_vision_tokens_each_frame",
                              "drop vocab_size/eos_token_id and let them be derived")
        if int(d.get("num_multi_token_pred", 1)) < 1:
            raise ConfigError("gaze_model_config.gaze_decoder_config.num_multi_token_pred",
                              d.get("num_multi_token_pred"), "must be >= 1", "the released model uses 10")
        if self.gaze_model_config["num_vision_tokens_each_frame"] != self.num_vision_tokens_each_frame:
            raise ConfigError("gaze_model_config.num_vision_tokens_each_frame",
                              self.gaze_model_config["num_vision_tokens_each_frame"],
                              f"must equal num_vision_tokens_each_frame={self.num_vision_tokens_each_frame}",
                              "drop the nested key and let it be derived")
        if v["temporal_patch_size"] != 1 or v["trunk_temporal_kernel_size"] < 1 or v["trunk_spatial_kernel_size"] % 2 == 0:
            raise ConfigError("gaze_model_config.vision_model_config", v,
                              "temporal_patch_size must be 1 and the trunk spatial kernel odd",
                              "use the released values (1, 3, 3)")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Upstream's key set: our extra keys only when non-default."""
        d = super().to_dict()
        for k, default in EXTRA_DEFAULTS.items():
            if d.get(k) == default:
                d.pop(k, None)
        return d

    def to_diff_dict(self) -> dict[str, Any]:
        """What config.json holds: ``to_dict``'s keys plus ``torch_dtype`` for transformers 4.51 readers.

        Added here, not in ``to_dict``: transformers >= 4.56 reads ``getattr(self, key)`` for every
        ``to_dict`` key while diffing, and ``torch_dtype`` is a deprecated property that warns.
        """
        d = super().to_diff_dict()
        if d.get("dtype") is not None:
            d["torch_dtype"] = d["dtype"]
        return d


def tiny_config(**overrides) -> AutoGazeConfig:
    """A seconds-fast debug model for tests: scales 32+64 (P = 20), 64-px frames (16 vision tokens),
    width 32, one decoder layer, K = 3. ``overrides`` are top-level AutoGazeConfig keys."""
    kw = dict(
        scales="32+64", num_vision_tokens_each_frame=20, max_num_frames=4,
        gaze_model_config=dict(
            input_img_size=64,
            vision_model_config=dict(hidden_dim=32, out_dim=32),
            connector_config=dict(hidden_dim=32),
            gaze_decoder_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                     num_hidden_layers=1, num_multi_token_pred=3),
        ),
    )
    kw.update(overrides)
    return AutoGazeConfig(**kw).validate()

