"""Data pipeline: preprocessing parity, decoding, bad files, labels, crops, determinism."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from autogaze.datasets.decode import BadVideo, load_clip, sample_indices
from autogaze.datasets.labels import collate_labels, label_key, load_labels, write_labels
from autogaze.datasets.synthetic import make_clip, make_synthetic_dataset, write_mp4
from autogaze.datasets.transforms import RandomResizedCrop, VideoTransform, center_square
from autogaze.datasets.video_folder import VideoFolder
from autogaze.utils.parsing import ConfigError

CFG = {"root": None, "clip_len": 4, "num_workers": 0}


def folder(root, **kw):
    cfg = {"root": str(root), "clip_len": 4, **kw}
    return VideoFolder.from_config(cfg, split="train", size=32, tokens_per_frame=5)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), n_train=3, n_val=1, num_frames=6, size=64, seed=0)


def test_preprocessing_matches_upstream_fixture(reference):
    raw = reference["raw_frames_uint8"].permute(0, 3, 1, 2)          # [16, 3, 448, 448] uint8
    ours = VideoTransform(shortest_edge=224)(raw)
    err = (ours - reference["video"][0]).abs().max().item()
    assert err <= 1e-5, err


@pytest.mark.parametrize("hw", [(64, 64), (20, 20), (32, 32), (48, 80), (81, 47)])
@pytest.mark.parametrize("norm", [{}, {"offset": False, "rescale_factor": 1 / 255, "image_mean": [0.5] * 3,
                                       "image_std": [0.5] * 3}, {"do_normalize": False}])
def test_processor_equals_video_transform(hw, norm):
    """The model's processor and the training transform give the same tensor, bit for bit, where
    their settings coincide: bilinear, no crop, and a long edge both size rules agree on (the
    processor truncates it as transformers does, VideoTransform rounds; square frames always agree)."""
    from autogaze.datasets.transforms import shortest_edge_size
    from autogaze.models.autogaze import AutoGazeImageProcessor

    frames = torch.randint(0, 256, (3, *hw, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    proc = AutoGazeImageProcessor(size={"shortest_edge": 32}, **norm)
    transform = VideoTransform.from_preprocessing(proc.to_dict())
    assert shortest_edge_size(*hw, 32, long_edge=int) == shortest_edge_size(*hw, 32, long_edge=round)
    ours = proc(frames)["pixel_values"][0]
    assert ours.shape[-2:] == transform.output_size(*hw)
    assert torch.equal(ours, transform(frames.permute(0, 3, 1, 2)))
    assert torch.equal(proc(frames.float())["pixel_values"][0],  # float frames: same resize, no lookup table
                       transform.normalize(transform.resize(frames.permute(0, 3, 1, 2).float())))


def test_size_rules_differ_only_in_rounding():
    from autogaze.datasets.transforms import shortest_edge_size

    assert shortest_edge_size(300, 451, 224, long_edge=int) == (224, 336)  # 336.75 truncated (transformers)
    assert shortest_edge_size(300, 451, 224, long_edge=round) == (224, 337)  # rounded (VideoTransform)
    assert shortest_edge_size(451, 300, 224, long_edge=int) == (336, 224)


def test_inverse_transform_round_trip():
    t = VideoTransform(shortest_edge=8)
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.allclose(t.inverse(t(x)), x.float() / 255, atol=1e-5)


def test_sample_indices_upstream_rule():
    assert sample_indices(100, 4, 1) == [0, 1, 2, 3]
    assert sample_indices(3, 4, 2) == [0, 1, 2]                      # short: caller edge-pads
    assert sample_indices(100, 4, 2) == [0, 2, 5, 7]  # int(linspace(0, 8, 4) = [0, 2.67, 5.33, 8]), clipped to 7
    g = torch.Generator().manual_seed(0)
    idx = sample_indices(100, 4, 2, random_window=True, generator=g)
    assert idx[-1] - idx[0] <= 7 and idx == sorted(idx)


def test_clips_decode_deterministic_and_short_videos_edge_pad(synth, tmp_path):
    ds = folder(synth)
    a, b = ds[0], ds[0]
    assert a["video"].shape == (4, 3, 32, 32) and a["video"].dtype == torch.float32
    assert torch.equal(a["video"], b["video"]) and a["video_for_task"] is a["video"]
    short = write_mp4(tmp_path / "short.mp4", make_clip(2, 32, seed=1))
    clip = load_clip(str(short), clip_len=5)
    assert clip.shape == (5, 3, 32, 32) and torch.equal(clip[2], clip[4])   # last frame repeated
    for backend in ("decord", "pyav"):
        assert load_clip(str(short), 2, backend=backend).shape == (2, 3, 32, 32)


def test_bad_files_are_skipped_counted_and_warned_once(synth, tmp_path, caplog):
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    good = sorted((synth / "train").glob("*.mp4"))[0]
    (root / "train" / "a_good.mp4").write_bytes(good.read_bytes())
    (root / "train" / "b_zero.mp4").write_bytes(b"")
    (root / "train" / "c_corrupt.mp4").write_bytes(b"not a video" * 100)
    (root / "train" / "d_truncated.mp4").write_bytes(good.read_bytes()[:300])
    ds = folder(root, min_frames=1)
    with caplog.at_level(logging.WARNING, logger="autogaze.data"):
        items = [ds[i] for i in range(4)] + [ds[1]]                   # the zero-byte file twice
        batch = ds.collate(items)
    assert batch.batch_size == 1 and batch.paths[0].endswith("a_good.mp4")
    assert sorted(p.rsplit("/", 1)[1] for p in batch.skipped_paths) == \
        ["b_zero.mp4", "b_zero.mp4", "c_corrupt.mp4", "d_truncated.mp4"]
    warned = [r.getMessage() for r in caplog.records if "skipping unreadable" in r.getMessage()]
    assert len(warned) == 3                                         # one warning per file
    empty = ds.collate([ds[1]])
    assert empty.batch_size == 0 and len(empty.skipped_paths) == 1


def test_too_few_frames_is_bad(tmp_path):
    p = write_mp4(tmp_path / "two.mp4", make_clip(2, 32, seed=2))
    with pytest.raises(BadVideo, match="decodable frames"):
        load_clip(str(p), clip_len=8, min_frames=3)


def test_missing_split_or_empty_root_is_a_clear_error(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(ConfigError, match="no .mp4 files"):
        folder(tmp_path)
    with pytest.raises(ConfigError, match="has no val/ folder"):
        VideoFolder.from_config({"root": str(tmp_path), "clip_len": 4}, split="val")


def test_non_square_and_odd_sizes_centre_crop():
    frames = torch.arange(2 * 3 * 5 * 9, dtype=torch.uint8).view(2, 3, 5, 9)
    sq = center_square(frames)
    assert sq.shape[-2:] == (5, 5) and torch.equal(sq, frames[..., :, 2:7])


def test_random_resized_crop_shared_by_frames_and_videos(synth):
    ds = folder(synth, train_data_aug={"aug_type": "random_resized_crop"})
    a = ds[1]
    assert a["video"].shape == (4, 3, 32, 32) and a["video_for_task"] is a["video"]
    box = RandomResizedCrop().box(64, 64, torch.Generator().manual_seed(3))
    assert 0 < box[2] <= 64 and 0 < box[3] <= 64
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["video"], a["video"])              # a new box each epoch
    ds.set_epoch(0)
    assert torch.equal(ds[1]["video"], a["video"])                  # ...but fixed by (seed, epoch, index)


def test_items_do_not_depend_on_worker_assignment(synth):
    ds = folder(synth, random_sample_frame=True, train_data_aug={"aug_type": "random_resized_crop"})
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, collate_fn=ds.collate)
    via_workers = [b.video[0] for b in loader]
    in_process = [ds[i]["video"] for i in range(len(ds))]
    assert all(torch.equal(a, b) for a, b in zip(via_workers, in_process))


def _labels(P=5):
    # clip 0: frame 0 gazes [1, 3], frame 1 gazes [5+2];  clip 1: frame 0 [0], frame 1 [5+0, 5+4]
    return [([[1, 3], [7]], [[0.9, 0.5], [0.4]]), ([[0], [5, 9]], [[0.8], [0.7, 0.6]])]


def test_label_collation_layout():
    lab = collate_labels(_labels(), tokens_per_frame=5)
    g = lab.gazes
    assert g.num_per_frame.tolist() == [3, 3]                        # max length 2 + 1 extra pad slot
    assert g.ids.tolist() == [[1, 3, 0, 7, 5, 5], [0, 0, 0, 5, 9, 5]]  # pads hold t*P
    assert g.is_padded.tolist() == [[False, False, True, False, True, True],
                                    [False, True, True, False, False, True]]
    # padded slots repeat the frame's last loss
    torch.testing.assert_close(lab.task_losses, torch.tensor([[0.9, 0.5, 0.5, 0.4, 0.4, 0.4],
                                                             [0.8, 0.8, 0.8, 0.7, 0.6, 0.6]]))


def test_labels_load_validate_and_match_videos(synth, tmp_path):
    paths = sorted((synth / "train").glob("*.mp4"))
    good = {str(p): {"gazing_pos": [[t * 5 + 1] for t in range(4)], "task_losses": [[0.5]] * 4} for p in paths[:2]}
    write_labels(tmp_path / "labels.json", good)
    ds = folder(synth, gt_gazing_pos_paths={"train": str(tmp_path / "labels.json")})
    assert len(ds) == 2                                              # the unlabelled video is left out
    batch = ds.collate([ds[0], ds[1]])
    assert batch.labels.gazes.ids.shape == (2, 8)
    assert label_key("/x/y/ds/train/a.mp4") == "ds/train/a.mp4"
    bad = {str(paths[0]): {"gazing_pos": [[7]] * 4, "task_losses": [[0.5]] * 4}}  # id 7 is not in frame 0
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"frame 0 has ids outside \[0, 5\)"):
        load_labels(str(tmp_path / "bad.json"), clip_len=4, tokens_per_frame=5)
    with pytest.raises(ValueError, match="4 frames of gazing_pos"):
        load_labels(str(tmp_path / "labels.json"), clip_len=3, tokens_per_frame=5)
    with pytest.raises(ConfigError, match="random window"):
        folder(synth, random_sample_frame=True, gt_gazing_pos_paths={"train": str(tmp_path / "labels.json")})


def test_synthetic_clips_are_deterministic():
    a, b = make_clip(3, 32, seed=5), make_clip(3, 32, seed=5)
    assert a.dtype == np.uint8 and np.array_equal(a, b) and not np.array_equal(a, make_clip(3, 32, seed=6))
