"""The synthetic world: static and panning cameras, object masks written beside each clip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from autogaze.datasets.synthetic import (World, clip_pans, load_masks, make_synthetic_dataset, masks_path, render_clip,
                                         write_mp4)
from autogaze.labeling.planted import main as planted_main


def test_static_camera_changes_only_object_pixels():
    frames, masks, pans = render_clip(6, 32, seed=3, world=World(pan_fraction=0.0, num_objects=(2, 2)))
    assert not pans
    assert frames.shape == (6, 32, 32, 3) and masks.shape == (6, 32, 32) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1, 2} and (masks > 0).any()
    for t in range(1, 6):
        background = (masks[t] == 0) & (masks[t - 1] == 0)          # background in both frames
        assert np.array_equal(frames[t][background], frames[t - 1][background])
        assert not np.array_equal(frames[t], frames[t - 1])          # the objects moved


def test_written_clips_stay_close_to_the_rendered_frames_in_every_frame(tmp_path):
    """The mp4 must not drift: a static background has to stay static after decoding, or the
    previous frame stops predicting the next (an ignored quantiser option once let PSNR fall from
    40 dB at frame 0 to 28 dB at frame 15)."""
    import decord

    frames, _, _ = render_clip(16, 128, seed=3, world=World(pan_fraction=0.0))
    path = write_mp4(tmp_path / "c.mp4", frames)
    decoded = decord.VideoReader(str(path)).get_batch(list(range(16))).asnumpy().astype(np.float32)
    mse = ((decoded - frames.astype(np.float32)) ** 2).mean(axis=(1, 2, 3))
    psnr = 10 * np.log10(255.0 ** 2 / mse)
    assert psnr.min() > 36.0, psnr.round(1)


def test_panning_camera_moves_the_background():
    frames, masks, pans = render_clip(4, 32, seed=3, world=World(pan_fraction=1.0, pan_speed=3.0))
    assert pans
    background = (masks[1] == 0) & (masks[0] == 0)
    assert not np.array_equal(frames[1][background], frames[0][background])


def test_pan_fraction_is_the_share_of_panning_clips():
    world = World(pan_fraction=0.25)
    pans = []
    for seed in range(200):
        f, m, pan = render_clip(4, 16, seed, world)
        bg = (m[0] == 0) & (m[3] == 0)
        if not pan:  # (a slow pan may move less than a pixel in a few frames)
            assert np.array_equal(f[0][bg], f[3][bg])
        pans.append(pan)
    assert 0.15 < np.mean(pans) < 0.35  # 200 draws of Bernoulli(0.25)


def test_dataset_writes_masks_beside_clips_and_planted_cli(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", n_train=2, n_val=1, num_frames=4, size=32, seed=0)
    clip = root / "train" / "clip_00000.mp4"
    assert masks_path(clip).name == "clip_00000_masks.npz"
    masks = load_masks(clip)
    assert masks.shape == (4, 32, 32) and isinstance(clip_pans(clip), bool)
    out = tmp_path / "planted.json"
    planted_main(["--data-root", str(root), "--split", "train", "--scales", "16+32", "--clip-len", "4",
                  "--out", str(out)])
    labels = json.loads(out.read_text())
    assert sorted(labels) == ["d/train/clip_00000.mp4", "d/train/clip_00001.mp4"]
    entry = labels["d/train/clip_00000.mp4"]
    assert len(entry["gazing_pos"]) == 4 and all(len(f) >= 1 for f in entry["gazing_pos"])
    with pytest.raises(ValueError, match="fewer than clip_len"):
        planted_main(["--data-root", str(root), "--split", "val", "--scales", "16+32", "--clip-len", "9",
                      "--out", str(out)])


def test_demo_object_radius_reaches_the_rendered_clips(tmp_path):
    """``Demo.object_radius`` is the world's object half-size range: smaller objects cover fewer pixels."""
    from autogaze.demo.settings import Demo
    from autogaze.demo.stages import stage_data

    covered = {}
    for name, radius in (("default", Demo.object_radius), ("small", (0.05, 0.08))):
        demo = Demo(root=tmp_path / name, n_train=6, n_val=1, clip_len=2, frame_size=32, object_radius=radius)
        stage_data(demo)
        covered[name] = np.mean([(load_masks(c) > 0).mean() for c in sorted((demo.data / "train").glob("*.mp4"))])
    assert 0 < covered["small"] < covered["default"] / 3


def test_worker_processes_write_the_same_bytes(tmp_path):
    from autogaze.datasets.synthetic import make_synthetic_dataset

    one = make_synthetic_dataset(tmp_path / "one", n_train=3, n_val=2, num_frames=3, size=32, seed=4)
    two = make_synthetic_dataset(tmp_path / "two", n_train=3, n_val=2, num_frames=3, size=32, seed=4, workers=2)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) == 10  # 5 clips, each an mp4 and its masks
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
