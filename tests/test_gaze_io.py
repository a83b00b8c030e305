"""save_pretrained / from_pretrained round trips (model and processor), offline."""
import contextlib
import json
import logging
import warnings

import torch

from autogaze.models.autogaze import AutoGaze, AutoGazeConfig, AutoGazeImageProcessor
from autogaze.models.autogaze.config import tiny_config
from autogaze.types import Budget


def test_tiny_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model = AutoGaze(tiny_config(sampling_top_k=7)).eval()
    model.save_pretrained(tmp_path)
    loaded, info = AutoGaze.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert isinstance(loaded.config, AutoGazeConfig) and loaded.config.sampling_top_k == 7
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert set(sd) == set(sd2) and all(torch.equal(sd[k], sd2[k]) for k in sd)
    video = torch.randn(1, 3, 3, 64, 64)
    budget = Budget(torch.full((1, 3), 4))
    a, b = model.generate(video, budget), loaded.eval().generate(video, budget)
    assert torch.equal(a.gazes.ids, b.gazes.ids)
    assert torch.equal(model.score(video, a.gazes).log_probs, loaded.score(video, a.gazes).log_probs)


def test_saved_config_has_upstream_keys(fixtures_dir, tmp_path):
    upstream = json.loads((fixtures_dir / "autogaze_model" / "config.json").read_text())
    AutoGaze(tiny_config()).save_pretrained(tmp_path)
    ours = json.loads((tmp_path / "config.json").read_text())
    assert set(upstream) - set(ours) == set() and set(ours) - set(upstream) <= {"dtype"}
    assert set(ours["gaze_model_config"]) == set(upstream["gaze_model_config"])
    for sub in ("vision_model_config", "connector_config"):
        model_keys = {"hidden_dim", "out_dim", "depth", "kernel_size", "temporal_patch_size",
                      "trunk_temporal_kernel_size", "trunk_spatial_kernel_size", "num_tokens"}
        assert set(ours["gaze_model_config"][sub]) == set(upstream["gaze_model_config"][sub]) & model_keys
    dec = ours["gaze_model_config"]["gaze_decoder_config"]
    assert dec["vocab_size"] == 21 and dec["eos_token_id"] == 20 and dec["num_multi_token_pred"] == 3


def test_processor_round_trip_keeps_upstream_keys(fixtures_dir, tmp_path):
    upstream = json.loads((fixtures_dir / "autogaze_model" / "preprocessor_config.json").read_text())
    proc = AutoGazeImageProcessor.from_pretrained(fixtures_dir / "autogaze_model")
    proc.save_pretrained(tmp_path)
    ours = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert ours == upstream


def test_processor_inputs_and_shapes():
    proc = AutoGazeImageProcessor(size={"shortest_edge": 32})
    frames = torch.randint(0, 256, (3, 48, 64, 3), dtype=torch.uint8)  # [T, H, W, C]
    one = proc(frames)["pixel_values"]
    assert one.shape == (1, 3, 3, 32, 42)  # shortest edge 32, long edge int(32 * 64 / 48)
    batch = proc([frames.numpy(), frames.numpy()])["pixel_values"]
    assert batch.shape == (2, 3, 3, 32, 42) and torch.equal(batch[0], one[0])
    chw = proc(frames.permute(0, 3, 1, 2))["pixel_values"]
    assert torch.equal(chw, one)
    # white maps to (1 - mean) / std, black to (-1 - mean) / std
    flat = AutoGazeImageProcessor(do_resize=False)(torch.full((1, 4, 4, 3), 255, dtype=torch.uint8))
    assert torch.allclose(flat["pixel_values"][0, 0, :, 0, 0], (1 - torch.tensor(proc.image_mean)) /
                          torch.tensor(proc.image_std))


@contextlib.contextmanager
def _captured_warnings():
    """Python warnings and transformers' log records (its loggers do not propagate to the root, so
    caplog would miss them); ``warning_once`` caches are cleared so an earlier test cannot hide one."""
    import transformers.utils.logging as hf_logging

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(f"{record.name}: {record.getMessage()}")

    root, level, handler = hf_logging.get_logger(), hf_logging.get_verbosity(), Keep(logging.WARNING)
    hf_logging.set_verbosity_warning()
    logging.Logger.warning_once.cache_clear()  # transformers' lru_cache'd Logger method
    root.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield records
        records += [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, ResourceWarning)]
    finally:
        root.removeHandler(handler)
        hf_logging.set_verbosity(level)


def test_load_and_save_print_no_warnings(fixtures_dir, tmp_path):
    """No "`torch_dtype` is deprecated!" (or any other warning) from loading the released format, saving
    our own, and loading that again; config.json still carries torch_dtype for transformers 4.51."""
    import transformers.utils.logging as hf_logging

    with _captured_warnings() as probe:  # the capture itself works
        hf_logging.get_logger("transformers.configuration_utils").warning_once("probe")
    assert probe == ["transformers.configuration_utils: probe"]

    folder = fixtures_dir / "autogaze_model"
    with _captured_warnings() as seen:
        model = AutoGaze.from_pretrained(folder)
        proc = AutoGazeImageProcessor.from_pretrained(folder)
        model.save_pretrained(tmp_path)
        proc.save_pretrained(tmp_path)
        AutoGaze.from_pretrained(tmp_path)
        AutoGazeImageProcessor.from_pretrained(tmp_path)
        AutoGaze(tiny_config()).save_pretrained(tmp_path / "tiny")
        AutoGaze.from_pretrained(tmp_path / "tiny")
    assert seen == []
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["torch_dtype"] == saved["dtype"] == "float32"
