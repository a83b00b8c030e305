"""Upstream's QUICK_START helpers (autogaze.datasets.video_utils) on a synthetic mp4 written here."""
from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from autogaze.datasets.decode import load_clip, sample_indices
from autogaze.datasets.synthetic import make_clip, write_mp4
from autogaze.datasets.video_utils import read_video_pyav, sample_frame_indices, transform_video_for_pytorch
from autogaze.models.autogaze import AutoGazeImageProcessor


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 30-frame 48x64 mp4 and its decoded frames (decoded once with PyAV, frame by frame)."""
    path = write_mp4(tmp_path_factory.mktemp("vu") / "clip.mp4", make_clip(30, (48, 64), seed=4))
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return path, frames


def test_sample_frame_indices_follows_the_window_rule():
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        idx = sample_frame_indices(clip_len=4, frame_sample_rate=3, seg_len=40, generator=g)
        assert idx.dtype == np.int64 and idx.shape == (4,)
        start = idx[0]
        end = start + 12  # converted_len = clip_len * frame_sample_rate
        assert 12 <= end < 40 and np.all(np.diff(idx) >= 0) and idx[-1] <= end - 1
        expect = np.clip(np.linspace(start, end, 4), start, end - 1).astype(np.int64)
        assert np.array_equal(idx, expect)
        # the same rule, and the same draw, as the training data path
        assert idx.tolist() == sample_indices(40, 4, 3, True, torch.Generator().manual_seed(seed))
    first = sample_frame_indices(4, 3, 40, random_window=False)
    assert first.tolist() == [0, 4, 8, 11]  # linspace(0, 12, 4) clipped to end - 1, as upstream


def test_sample_frame_indices_short_video_is_edge_padded():
    # seg_len <= clip_len * rate: frames 0 .. min(clip_len, n) - 1, then the last index repeats
    assert sample_frame_indices(16, 1, 10).tolist() == list(range(10)) + [9] * 6
    assert sample_frame_indices(4, 4, 16).tolist() == [0, 1, 2, 3]  # seg_len == converted_len: no random range
    assert sample_frame_indices(16, 1, 16).tolist() == list(range(16))
    with pytest.raises(ValueError, match="seg_len"):
        sample_frame_indices(16, 1, 0)


def test_read_video_pyav_returns_exactly_the_indexed_frames(clip):
    path, frames = clip
    idx = sample_frame_indices(8, 2, len(frames), generator=torch.Generator().manual_seed(1))
    with av.open(str(path)) as container:
        video = read_video_pyav(container, idx)
        assert video.dtype == np.uint8 and video.shape == (8, 48, 64, 3)
        assert np.array_equal(video, frames[idx])
        again = read_video_pyav(container, [0, 5, 5])  # rewinds; a repeated index repeats the frame
    assert np.array_equal(again, frames[[0, 5, 5]])
    # the training data path (PyAV backend) reads the same clip
    ours = load_clip(str(path), 8, 2, random_window=True, generator=torch.Generator().manual_seed(1), backend="pyav")
    assert torch.equal(ours, torch.from_numpy(video).permute(0, 3, 1, 2))


def test_read_video_pyav_pads_past_the_end_and_checks_order(clip):
    path, frames = clip
    with av.open(str(path)) as container:
        tail = read_video_pyav(container, [28, 29, 40])  # a stored frame count can overstate the stream
        assert np.array_equal(tail, frames[[28, 29, 29]])
        with pytest.raises(ValueError, match="sorted"):
            read_video_pyav(container, [3, 1])


def test_transform_video_for_pytorch_is_the_processor_per_frame(clip):
    _, frames = clip
    proc = AutoGazeImageProcessor(size={"shortest_edge": 32})
    x = transform_video_for_pytorch(frames[:5], proc)
    assert x.shape == (1, 5, 3, 32, 42) and x.dtype == torch.float32
    for t in (0, 4):
        assert torch.equal(x[0, t], proc(frames[t:t + 1])["pixel_values"][0, 0])
    assert torch.equal(transform_video_for_pytorch(torch.from_numpy(frames[:5]), proc), x)
