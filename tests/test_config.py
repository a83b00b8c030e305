"""Config boundary: the seed command lines parse verbatim into typed values; bad configs fail early."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from autogaze.build import validate_components
from autogaze.config import parse_config
from autogaze.train import CONFIG_DIR
from autogaze.utils.parsing import ConfigError, parse_float_list, parse_scales, parse_str_list

SEED_DOC = Path(__file__).resolve().parents[1] / ".." / "shared" / "docs" / "seed-commands.md"


def seed_commands(tmp_path: Path) -> dict[str, list[str]]:
    """{config name: overrides} from seed-commands.md, tokenised as a shell would, with every
    ``<path to ...>`` placeholder replaced by a path under ``tmp_path``."""
    if not SEED_DOC.is_file():
        pytest.skip(f"seed commands doc not found at {SEED_DOC.resolve()} (it lives in ../shared)")
    out = {}
    for block in re.findall(r"```bash\n(.*?)```", SEED_DOC.read_text(), re.S):
        text = block.replace("\\\n", " ")
        text = re.sub(r"<path to ([^>]*)>", lambda m: str(tmp_path / re.sub(r"\W+", "_", m.group(1))), text)
        argv = shlex.split(text)
        name = argv[argv.index("--config-name") + 1]
        out[name] = [a for a in argv[argv.index("--config-name") + 2:]]
    assert len(out) == 2, out.keys()
    return out


def compose_exp(name: str, overrides: list[str]):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return parse_config(compose(config_name=name, overrides=overrides), name)


def test_seed_commands_parse_into_typed_values(tmp_path):
    cmds = seed_commands(tmp_path)
    ntp = compose_exp("video_folder_video_mae_reconstruction_ar_gaze_ntp",
                      cmds["video_folder_video_mae_reconstruction_ar_gaze_ntp"])
    validate_components(ntp)
    assert ntp.trainer.optimizer == "adam" and ntp.trainer.lr == 5e-4 and ntp.trainer.batch_size == 1024
    assert ntp.trainer.temp_schedule_args.exp == {"temp_start": 3, "temp_end": 0.3}
    # the '...' strings arrive as strings and become typed lists once, here
    assert len(parse_str_list("dataset.root", ntp.dataset["root"], sep=",")) == 5
    assert parse_float_list("alpha", ntp.model["gazing_ratio_each_frame_config"]["dirichlet"]["alpha"], sep=",") \
        == [10.0] + [3.0] * 15
    assert parse_scales("model.scales", ntp.model["scales"]) == [32, 64, 112, 224]
    assert parse_float_list("w", ntp.task["recon_model_config"]["loss_weights"]) == [1.0, 0.3, 0.3]
    assert ntp.model["max_num_frames"] == 16  # set from dataset.clip_len, as upstream

    grpo = compose_exp("video_folder_video_mae_reconstruction_ar_gaze_grpo",
                       cmds["video_folder_video_mae_reconstruction_ar_gaze_grpo"])
    validate_components(grpo)
    assert grpo.algorithm["group_size"] == 12 and grpo.algorithm["discount_factor"] == 0.995
    assert grpo.trainer.gaze_weights.endswith("checkpoint_latest_gaze")
    assert grpo.model["gazing_ratio_each_frame_config"]["sample_strategy_during_training"] == "self"


def test_upstream_plus_syntax_for_hidden_trainer_keys():
    exp = compose_exp("video_folder_video_mae_reconstruction_ar_gaze_ntp",
                      ["+trainer.truncate_grads=true", "+trainer.grad_norm=0.5"])
    assert exp.trainer.truncate_grads is True and exp.trainer.grad_norm == 0.5


@pytest.mark.parametrize("override,key", [
    ("trainer.lr_schedule=cosine", "trainer.lr_schedule"),
    ("trainer.optimizer=lamb", "trainer.optimizer"),  # adam | adamw | sgd
    ("task.scales=32+64+112", "task.scales"),
    ("trainer.precision=fp16", "trainer.precision"),
    ("+trainer.bach_size=3", "trainer.bach_size"),
    ("dataset.clip_len=0", "dataset.clip_len"),
])
def test_bad_values_name_key_rule_and_fix(override, key):
    with pytest.raises(ConfigError) as e:
        compose_exp("video_folder_video_mae_reconstruction_ar_gaze_ntp", [override])
    assert e.value.key == key and "Fix:" in str(e.value)


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean trainer.batch_size"):
        compose_exp("video_folder_video_mae_reconstruction_ar_gaze_ntp", ["+trainer.bach_size=3"])


def test_string_parsers():
    assert parse_scales("s", "224+32+112+64") == [32, 64, 112, 224]
    assert parse_scales("s", 224) == [224]
    assert parse_str_list("r", "'a,b'", sep=",") == ["a", "b"]
    assert parse_float_list("a", 0.5, sep=",") == [0.5]
    with pytest.raises(ConfigError, match="model.scales"):
        parse_scales("model.scales", "32+x")


def test_cli_reports_config_errors_in_one_line(tmp_path):
    """A bad override stops `python -m autogaze.train` before any work: exit 2, no traceback."""
    import os
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "autogaze.train", "--config-name",
                        "video_folder_video_mae_reconstruction_ar_gaze_ntp", "trainer.optimizer=lamb"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 2
    assert "trainer.optimizer='lamb'" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "exps").exists()  # nothing was created
