"""AutoGazeConfig: upstream config.json round trip, Hydra group, typed views, validation errors."""
import json

import pytest
from omegaconf import OmegaConf

from autogaze.config import CONFIG_DIR
from autogaze.models.autogaze import AutoGazeConfig, AutoGazeImageProcessor
from autogaze.models.autogaze.config import tiny_config
from autogaze.utils.parsing import ConfigError

YAML = CONFIG_DIR / "model" / "autogaze.yaml"
SEED_OVERRIDES = [
    "scales=32+64+112+224",
    "num_vision_tokens_each_frame=265",
    "gazing_ratio_each_frame_config.dirichlet.alpha='10,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3'",
    "gaze_model_config.gaze_decoder_config.num_multi_token_pred=10",
]


def test_fixture_config_round_trips_key_for_key(fixtures_dir, tmp_path):
    raw = json.loads((fixtures_dir / "autogaze_model" / "config.json").read_text())
    cfg = AutoGazeConfig.from_pretrained(fixtures_dir / "autogaze_model")
    assert cfg.scale_list == [32, 64, 112, 224]
    assert cfg.tokens_per_frame == 265 and cfg.num_multi_token_pred == 10
    cfg.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    # Top level: upstream's keys (4.57 also writes "dtype"; "torch_dtype" is kept for 4.51 readers).
    assert set(raw) <= set(saved) and set(saved) - set(raw) <= {"dtype"}
    for sub in ("vision_model_config", "connector_config", "gaze_decoder_config"):
        assert saved["gaze_model_config"][sub] == raw["gaze_model_config"][sub], sub
    for key in ("gazing_ratio_config", "gazing_ratio_each_frame_config", "task_loss_requirement_config", "scales"):
        assert saved[key] == raw[key]


def _hydra_model(overrides=()):
    cfg = OmegaConf.load(YAML)
    cfg.merge_with(OmegaConf.from_dotlist(list(overrides)))
    return cfg


def test_hydra_group_defaults_and_seed_overrides():
    default = AutoGazeConfig.from_hydra(_hydra_model())
    assert default.scale_list == [224] and default.tokens_per_frame == 196 and default.num_multi_token_pred == 1
    assert isinstance(default.decoder_config().rms_norm_eps, float)
    cfg = AutoGazeConfig.from_hydra(_hydra_model(SEED_OVERRIDES))
    assert cfg.scale_list == [32, 64, 112, 224]
    assert cfg.budget.dirichlet_alpha == (10.0,) + (3.0,) * 15
    assert cfg.num_multi_token_pred == 10
    assert "_target_" not in cfg.to_dict() and "preprocessing" not in cfg.to_dict()
    assert cfg.decoder_config().vocab_size == 266 and cfg.decoder_config().eos_token_id == 265
    proc = AutoGazeImageProcessor.from_hydra(_hydra_model())
    assert proc.size == {"shortest_edge": 224} and proc.offset


def test_our_extra_keys_only_saved_when_changed():
    assert "sampling_top_k" not in tiny_config().to_dict()
    assert tiny_config(sampling_top_k=5).to_dict()["sampling_top_k"] == 5


@pytest.mark.parametrize("overrides, key", [
    (["gazing_ratio_config.sample_strategy_during_training=uniformm"], "sample_strategy_during_training"),
    (["gazing_ratio_each_frame_config.sample_strategy_during_inference=dirichlett"], "sample_strategy_during_inference"),
    (["task_loss_requirement_config.sample_strategy_during_training=exponential"], "task_loss_requirement_config"),
    (["gazing_ratio_each_frame_config.dirichlet.alpha='10,3,3'"], "dirichlet.alpha"),
    (["scales=32+64+112+224"], "num_vision_tokens_each_frame"),
    (["scales=30+224", "num_vision_tokens_each_frame=197"], "scales"),
    (["gaze_model_config.connector_config.hidden_dim=64"], "hidden"),
    (["gazing_ratio_config.uniform.gazing_ratio_min=0.9", "gazing_ratio_config.uniform.gazing_ratio_max=0.1"],
     "gazing_ratio_config.uniform"),
    (["attn_mode=flash"], "attn_mode"),
])
def test_validation_names_key_and_fix(overrides, key):
    with pytest.raises(ConfigError) as err:
        AutoGazeConfig.from_hydra(_hydra_model(overrides))
    assert key in err.value.key and err.value.fix
    assert "Fix:" in str(err.value)
