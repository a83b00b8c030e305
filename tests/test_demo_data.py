"""The demo's ``--data-root``: a flat folder of videos is cut into train/val clips under the demo
root (the user's folder is never written to); a folder with train/ and val/ is used as is."""
from __future__ import annotations

from autogaze.datasets.decode import load_clip
from autogaze.datasets.synthetic import make_clip, write_mp4
from autogaze.demo import Demo, main, run_demo


def test_flat_folder_is_cut_into_clips(tmp_path):
    videos = tmp_path / "videos"
    write_mp4(videos / "a.mp4", make_clip(40, (48, 80), seed=1))   # 5 clips of 8 frames, 80x48 -> 64x64
    write_mp4(videos / "sub" / "b.mp4", make_clip(27, 96, seed=2))  # 3 clips; the last 3 frames dropped
    demo = Demo(root=tmp_path / "demo", data_dir=videos)
    assert demo.data == tmp_path / "demo" / "data" / "user"
    assert demo.labels.parent == tmp_path / "demo" / "data"
    timings = run_demo(demo, only=["data"])
    assert set(timings) == {"data"}
    train, val = sorted((demo.data / "train").glob("*.mp4")), sorted((demo.data / "val").glob("*.mp4"))
    assert len(train) == 7 and len(val) == 1                       # every 8th clip goes to val
    assert sorted(p.name for p in videos.rglob("*")) == ["a.mp4", "b.mp4", "sub"]  # untouched
    frames = load_clip(str(val[0]), 8)
    assert tuple(frames.shape) == (8, 3, 64, 64)                    # [T, 3, H, W], square at frame_size
    assert run_demo(demo, only=["data"]) == {}                     # cached on a re-run


def test_split_folder_is_used_as_is(tmp_path):
    for split in ("train", "val"):
        write_mp4(tmp_path / "clips" / split / "x.mp4", make_clip(8, 64, seed=3))
    demo = Demo(root=tmp_path / "demo", data_dir=tmp_path / "clips")
    assert demo.data == tmp_path / "clips"
    main(["--root", str(tmp_path / "demo"), "--data-root", str(tmp_path / "clips"), "--only", "data"])
    assert sorted(p.name for p in (tmp_path / "clips").rglob("*")) == ["train", "val", "x.mp4", "x.mp4"]
