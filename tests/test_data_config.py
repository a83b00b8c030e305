"""Data pipeline, second part: config parsing, HF-equivalent resizing off the square case,
decode-time resizing, label-file merging and the all-bad batch."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from autogaze.datasets.decode import load_clip, scaled_size
from autogaze.datasets.labels import load_labels, write_labels
from autogaze.datasets.synthetic import make_clip, make_synthetic_dataset, write_mp4
from autogaze.datasets.transforms import VideoTransform
from autogaze.datasets.video_folder import VideoFolder
from autogaze.utils.parsing import ConfigError

MODEL_PREPROCESSING = {  # autogaze/configs/model/autogaze.yaml
    "do_resize": True, "size": {"shortest_edge": 224}, "do_center_crop": False, "do_rescale": True,
    "rescale_factor": 1 / 127.5, "offset": True, "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
}


@pytest.fixture(scope="module")
def two_roots(tmp_path_factory):
    a = make_synthetic_dataset(tmp_path_factory.mktemp("a"), n_train=2, n_val=1, num_frames=4, size=32, seed=0)
    b = make_synthetic_dataset(tmp_path_factory.mktemp("b"), n_train=1, n_val=1, num_frames=4, size=32, seed=1)
    return a, b


def test_hydra_preprocessing_block_reproduces_fixture(reference, fixtures_dir):
    raw = reference["raw_frames_uint8"].permute(0, 3, 1, 2)               # [16, 3, 448, 448] uint8
    for cfg in (MODEL_PREPROCESSING, json.loads((fixtures_dir / "autogaze_model" / "preprocessor_config.json").read_text())):
        t = VideoTransform.from_preprocessing(cfg, size=224)
        err = (t(raw) - reference["video"][0]).abs().max().item()
        assert err <= 1e-5, err                                          # measured 9.5e-7


def test_unsupported_preprocessing_is_a_config_error():
    with pytest.raises(ConfigError, match="model.preprocessing.do_resise"):
        VideoTransform.from_preprocessing({**MODEL_PREPROCESSING, "do_resise": True})
    with pytest.raises(ConfigError, match="only bilinear"):
        VideoTransform.from_preprocessing({**MODEL_PREPROCESSING, "resample": 3})
    with pytest.raises(ConfigError, match="requires do_rescale"):
        VideoTransform.from_preprocessing({**MODEL_PREPROCESSING, "do_rescale": False})
    with pytest.raises(ConfigError, match="centre crop"):
        VideoTransform.from_preprocessing({**MODEL_PREPROCESSING, "do_center_crop": True, "crop_size": 200}, size=224)
    # An S x S crop is the identity on square frames, so it is accepted.
    VideoTransform.from_preprocessing({**MODEL_PREPROCESSING, "do_center_crop": True,
                                       "crop_size": {"height": 224, "width": 224}}, size=224)


def test_uint8_resize_equals_pil_bilinear_on_odd_non_square_frames():
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)           # odd, non-square
    for size in ((20, 29), (61, 90)):                                   # down- and up-sampling
        pil = np.asarray(Image.fromarray(frame).resize(size[::-1], Image.BILINEAR))
        ours = VideoTransform(shortest_edge=size[0]).resize(torch.from_numpy(frame).permute(2, 0, 1)[None], size)
        assert np.abs(ours[0].permute(1, 2, 0).numpy().astype(int) - pil).max() <= 1


def test_root_as_quoted_comma_string_lists_both_roots(two_roots):
    a, b = two_roots
    for root in (f"'{a},{b}'", f"{a},{b}", [str(a), str(b)]):
        ds = VideoFolder.from_config({"root": root, "clip_len": 4}, split="train", size=32, tokens_per_frame=5)
        assert len(ds) == 3 and ds.paths == sorted(str(p) for p in (a / "train").glob("*.mp4")) + [str(b / "train" / "clip_00000.mp4")]
    with pytest.raises(ConfigError, match="dataset.clip_lenn"):
        VideoFolder.from_config({"root": str(a), "clip_lenn": 4}, split="train")
    with pytest.raises(ConfigError, match="dataset.backend"):
        VideoFolder.from_config({"root": str(a), "backend": "opencv"}, split="train")
    with pytest.raises(ConfigError, match=f"has no train/ folder .*{b.name}/nope"):
        VideoFolder.from_config({"root": f"{a},{b}/nope", "clip_len": 4}, split="train")


def test_decode_time_resize_keeps_aspect_and_is_close_not_identical(tmp_path):
    p = write_mp4(tmp_path / "wide.mp4", make_clip(4, (48, 80), seed=3))
    assert scaled_size(48, 80, 24) == (24, 40) and scaled_size(80, 48, 24) == (40, 24)
    full = load_clip(str(p), 4)
    for backend in ("decord", "pyav"):
        small = load_clip(str(p), 4, backend=backend, size=24)
        assert small.shape == (4, 3, 24, 40)
        ref = VideoTransform(shortest_edge=24).resize(full, (24, 40))
        diff = (small.int() - ref.int()).abs().float()
        assert diff.mean() < 8                                          # same picture, different scaler


def test_decode_resize_option_reaches_the_decoder(two_roots):
    a, _ = two_roots
    ds = VideoFolder.from_config({"root": str(a), "clip_len": 4, "decode_resize": True}, split="train", size=16)
    item = ds[0]
    assert item["video"].shape == (4, 3, 16, 16)


def test_label_files_merge_from_globs_and_conflicts_are_errors(tmp_path):
    entry = lambda i: {"gazing_pos": [[i], [5 + i]], "task_losses": [[0.5], [0.4]]}
    write_labels(tmp_path / "shard_0.json", {"/x/ds/train/a.mp4": entry(1), "/x/ds/train/b.mp4": entry(2)})
    write_labels(tmp_path / "shard_1.json", {"/y/ds/train/b.mp4": entry(2), "/y/ds/train/c.mp4": entry(3)})
    merged = load_labels(str(tmp_path / "shard_*.json"), clip_len=2, tokens_per_frame=5)
    assert sorted(merged) == ["ds/train/a.mp4", "ds/train/b.mp4", "ds/train/c.mp4"]   # identical repeat is fine
    assert merged["ds/train/c.mp4"] == ([[3], [8]], [[0.5], [0.4]])
    write_labels(tmp_path / "other.json", {"ds/train/a.mp4": entry(4)})
    with pytest.raises(ValueError, match="ds/train/a.mp4: .* disagree"):
        load_labels(f"{tmp_path}/shard_0.json,{tmp_path}/other.json", clip_len=2, tokens_per_frame=5)
    with pytest.raises(ConfigError, match="no label file matches"):
        load_labels(str(tmp_path / "missing_*.json"), clip_len=2, tokens_per_frame=5)


@pytest.mark.parametrize("entry, match", [
    ({"gazing_pos": [[1], []], "task_losses": [[0.5], []]}, "frame 1 has no gazes"),
    ({"gazing_pos": [[1, 1], [6]], "task_losses": [[0.5, 0.4], [0.3]]}, "frame 0 repeats a patch"),
    ({"gazing_pos": [[1, 2], [6]], "task_losses": [[0.5], [0.3]]}, "frame 0 has 2 gazes but 1 task losses"),
])
def test_label_validation_names_clip_and_rule(tmp_path, entry, match):
    (tmp_path / "l.json").write_text(json.dumps({"/r/ds/train/clip_7.mp4": entry}))
    with pytest.raises(ValueError, match=f"clip_7.mp4.*{match}"):
        load_labels(str(tmp_path / "l.json"), clip_len=2, tokens_per_frame=5)


def test_all_bad_batch_has_zero_rows_of_the_right_shape(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "bad.mp4").write_bytes(b"")
    ds = VideoFolder.from_config({"root": str(tmp_path), "clip_len": 4}, split="train", size=16)
    batch = ds.collate([ds[0]])
    assert batch.video.shape == (0, 4, 3, 16, 16) and batch.video_for_task is batch.video
    assert batch.paths == [] and batch.skipped_paths == [str(tmp_path / "train" / "bad.mp4")]
