"""`python -m autogaze.gaze` and `gaze_video` on tiny synthetic videos with a tiny AutoGaze.

The model has the real token space (32+64+112+224, P = 265, 224-px input) but a 16-wide, one-layer
decoder with K = 4, and max_num_frames = 4, so a 10-frame video gives chunks of 4, 4 and 2 frames.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from autogaze.datasets.synthetic import make_clip, write_mp4
from autogaze.gaze import load_checkpoint, main
from autogaze.inference import FrameGeometry, gaze_video
from autogaze.inference.geometry import FramePreparer
from autogaze.inference.result import describe_frame
from autogaze.models.autogaze import AutoGaze, AutoGazeImageProcessor
from autogaze.models.autogaze.config import tiny_config

REPO = Path(__file__).resolve().parents[1]
P, T_CHUNK, H, W, F = 265, 4, 96, 160, 10  # tokens/frame, chunk, non-square video of F frames


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    cfg = tiny_config(
        scales="32+64+112+224", num_vision_tokens_each_frame=P, max_num_frames=T_CHUNK,
        gaze_model_config=dict(
            input_img_size=224, vision_model_config=dict(hidden_dim=16, out_dim=16), connector_config=dict(hidden_dim=16),
            gaze_decoder_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                                     num_multi_token_pred=4)))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt")
    AutoGaze(cfg).save_pretrained(path)
    AutoGazeImageProcessor(size={"shortest_edge": 224}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(ckpt):
    return AutoGaze.from_pretrained(ckpt).eval()


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """Moving textured shapes, 96 x 160 (non-square), 10 frames, mp4."""
    return write_mp4(tmp_path_factory.mktemp("vid") / "clip.mp4", make_clip(F, (H, W), seed=3))


@pytest.fixture(scope="module")
def odd_video(tmp_path_factory) -> Path:
    """75 x 121 (odd sides: mp4/yuv420p cannot hold them, so FFV1 yuv444p in mkv), 5 frames."""
    frames = make_clip(5, (76, 122), seed=4)[:, :75, :121]
    path = tmp_path_factory.mktemp("odd") / "odd.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=8)
        s.width, s.height, s.pix_fmt = 121, 75, "yuv444p"
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def check_consistent(d: dict, height: int, width: int) -> None:
    """Invariants of a gazes.json dict: ids, scales, rows/cols and boxes agree with each other."""
    ts = d["token_space"]
    Pt, gazes = ts["tokens_per_frame"], d["gazes"]
    assert sum(d["counts"]) == len(gazes) == d["num_gazes"]
    frames = np.array([g["frame"] for g in gazes], dtype=np.int64)
    assert np.array_equal(np.bincount(frames, minlength=d["num_frames"]), d["counts"])
    for g in gazes:
        k = ts["scales"].index(g["scale"])
        assert g["local"] == ts["offsets"][k] + g["row"] * ts["grid_sides"][k] + g["col"]
        assert g["id"] == g["frame"] * Pt + g["local"]
        x0, y0, x1, y1 = g["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, g
    # ids per chunk: t * P + local with t inside the chunk, in the same order as the gaze list
    chunk_ids = np.concatenate([np.asarray(c, dtype=np.int64) for c in d["ids_per_chunk"]])
    expected = [g["local"] + (g["frame"] % d["chunk_size"]) * Pt for g in gazes]
    assert chunk_ids.tolist() == expected
    assert len(d["ids_per_chunk"]) == -(-d["num_frames"] // d["chunk_size"])
    for f in range(d["num_frames"]):  # no patch twice in a frame
        local = [g["local"] for g in gazes if g["frame"] == f]
        assert len(set(local)) == len(local)


# ------------------------------------------------------------------------------------ CLI
def test_cli_writes_consistent_outputs(ckpt, video, tmp_path):
    out = tmp_path / "out"
    rc = main([str(video), "--checkpoint", str(ckpt), "--gazing-ratio", "0.3", "--task-loss-requirement", "none",
               "--out", str(out), "--device", "cpu", "--quiet"])
    assert rc == 0
    d = json.loads((out / "gazes.json").read_text())
    assert (d["num_frames"], d["height"], d["width"], d["chunk_size"]) == (F, H, W, T_CHUNK)
    assert d["counts"] == [int(0.3 * P)] * F  # no early stop: every frame uses its whole cap (79)
    check_consistent(d, H, W)

    z = np.load(out / "gazes.npz")  # no pickle needed
    assert z["counts"].tolist() == d["counts"]
    assert z["id"].tolist() == [g["id"] for g in d["gazes"]]
    assert z["scale"].tolist() == [g["scale"] for g in d["gazes"]]
    np.testing.assert_allclose(z["box"], [g["box"] for g in d["gazes"]], atol=1e-3)
    off = z["chunk_offsets"]
    assert [z["chunk_ids"][a:b].tolist() for a, b in zip(off[:-1], off[1:])] == d["ids_per_chunk"]
    assert json.loads(str(z["meta"]))["num_gazes"] == d["num_gazes"]

    frames = decode_all(out / "overlay.mp4")
    assert len(frames) == F and frames[0].shape == (H, W, 3)
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overlay_dims_ungazed_and_keeps_gazed(ckpt, video, tmp_path):
    """Crop rule on 96x160: the ends of the long side are never gazed, so they come out dimmed."""
    out = tmp_path / "o"
    assert main([str(video), "--checkpoint", str(ckpt), "--gazing-ratio", "0.5", "--task-loss-requirement", "none",
                 "--out", str(out), "--format", "json", "--no-summary", "--dim", "0.25", "--quiet"]) == 0
    assert not (out / "gazes.npz").exists() and not (out / "summary.png").exists()
    original, overlay = decode_all(video)[0].astype(float), decode_all(out / "overlay.mp4")[0].astype(float)
    left = slice(0, 25)  # x < 31.7: left of the centre crop (hand-computed below)
    assert overlay[:, left].mean() < 0.4 * original[:, left].mean()  # ~0.25 plus codec error
    boxes = np.array([g["box"] for g in json.loads((out / "gazes.json").read_text())["gazes"] if g["frame"] == 0])
    assert boxes[:, 0].min() >= 74 * W / 373 - 1e-3 and boxes[:, 2].max() <= 298 * W / 373 + 1e-3


def test_crop_and_squash_box_rules_by_hand():
    from autogaze.models.autogaze.token_space import TokenSpace

    space = TokenSpace((32, 64, 112, 224), 16)
    # crop: 96x160 -> shortest edge 224 -> 224x373 (int(224*160/96)) -> left = (373-224)//2 = 74
    g = FrameGeometry.make(H, W, 224, "crop")
    assert (g.resized_h, g.resized_w, g.top, g.left) == (224, 373, 0, 74)
    fg = describe_frame(np.array([69, 0, 264]), space, g)  # 224-scale (0,0), 32-scale (0,0), 224-scale (13,13)
    sx, sy = W / 373, H / 224
    np.testing.assert_allclose(fg.boxes[0], [74 * sx, 0, 90 * sx, 16 * sy], rtol=1e-5)
    np.testing.assert_allclose(fg.boxes[1], [74 * sx, 0, 186 * sx, 112 * sy], rtol=1e-5)
    np.testing.assert_allclose(fg.boxes[2], [282 * sx, 208 * sy, 298 * sx, 224 * sy], rtol=1e-5)
    assert fg.scale.tolist() == [3, 0, 3] and fg.row.tolist() == [0, 0, 13] and fg.col.tolist() == [0, 0, 13]
    # portrait: 160x96 -> 373x224, top = 74
    assert FrameGeometry.make(W, H, 224, "crop").top == 74
    # squash: the whole frame; the 32-scale patch (1,1) is the bottom-right quarter
    sq = FrameGeometry.make(H, W, 224, "squash")
    np.testing.assert_allclose(describe_frame(np.array([3]), space, sq).boxes[0], [80, 48, 160, 96], rtol=1e-6)


def test_odd_sized_input(ckpt, odd_video, tmp_path):
    out = tmp_path / "odd"
    assert main([str(odd_video), "--checkpoint", str(ckpt), "--gazing-ratio", "0.2", "--task-loss-requirement",
                 "none", "--resize", "squash", "--out", str(out), "--quiet"]) == 0
    d = json.loads((out / "gazes.json").read_text())
    assert (d["height"], d["width"], d["num_frames"]) == (75, 121, 5)
    check_consistent(d, 75, 121)
    xs = [g["box"][2] for g in d["gazes"]]  # squash reaches the whole frame: some box touches the right edge
    assert d["preprocess"]["mode"] == "squash" and max(xs) <= 121
    frames = decode_all(out / "overlay.mp4")
    assert len(frames) == 5 and frames[0].shape == (76, 122, 3)  # yuv420p: rounded up to even sides


def test_anyres_tiling_matches_dict_call(ckpt, model, video, tmp_path):
    out = tmp_path / "anyres"
    assert main([str(video), "--checkpoint", str(ckpt), "--gazing-ratio", "0.1", "--task-loss-requirement", "none",
                 "--target-scales", "56+112+196+392", "--target-patch-size", "14", "--out", str(out), "--quiet",
                 "--max-frames", "4"]) == 0
    d = json.loads((out / "gazes.json").read_text())
    assert d["token_space"]["counts"] == [16, 64, 196, 784] and d["preprocess"]["side"] == 392
    check_consistent(d, H, W)
    # The same chunk through the upstream dict call (tiles inside the model): same gazed patches.
    frames = decode_all(video)[:4]
    prepare = FramePreparer(FrameGeometry.make(H, W, 392, "crop"), AutoGazeImageProcessor.from_pretrained(ckpt))
    with torch.inference_mode():
        ref = model({"video": prepare(np.stack(frames))[None]}, gazing_ratio=0.1, target_scales=[56, 112, 196, 392],
                    target_patch_size=14, generate_only=True)
    real = ~ref["if_padded_gazing"][0]
    assert ref["gazing_pos"][0][real].tolist() == d["ids_per_chunk"][0]


def test_bad_inputs_exit_2_with_clear_message(ckpt, video, tmp_path, capsys):
    def err(argv):
        rc = main(argv + ["--out", str(tmp_path / "x"), "--quiet"])
        msg = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in msg, msg
        return msg

    missing = tmp_path / "nope.mp4"
    assert f"video not found: {missing}" in err([str(missing), "--checkpoint", str(ckpt)])
    assert "is a directory" in err([str(tmp_path), "--checkpoint", str(ckpt)])
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    assert f"cannot read video {junk}" in err([str(junk), "--checkpoint", str(ckpt)])
    assert "checkpoint not found: ./no/such/dir" in err([str(video), "--checkpoint", "./no/such/dir"])
    assert "has no config.json" in err([str(video), "--checkpoint", str(tmp_path)])
    assert "--gazing-ratio" in err([str(video), "--checkpoint", str(ckpt), "--gazing-ratio", "1.5"])
    assert "--batch-chunks" in err([str(video), "--checkpoint", str(ckpt), "--stream", "--batch-chunks", "2"])
    assert "must have 4 scales" in err([str(video), "--checkpoint", str(ckpt), "--target-scales", "56+112+196"])
    if not torch.cuda.is_available():
        assert "CUDA is not available" in err([str(video), "--checkpoint", str(ckpt), "--device", "cuda"])
    assert not (tmp_path / "x").exists()  # nothing written on a user error


def test_hub_id_offline_is_a_clear_error(video, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main([str(video), "--checkpoint", "nobody-xyz/no-such-autogaze", "--out", str(tmp_path / "x"), "--quiet"])
    msg = capsys.readouterr().err
    assert rc == 2 and "offline" in msg and "nobody-xyz/no-such-autogaze" in msg and "Traceback" not in msg


@pytest.mark.slow
def test_subprocess_stream_run(ckpt, video, tmp_path):
    out = tmp_path / "sub"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "autogaze.gaze", str(video), "--checkpoint", str(ckpt),
                           "--gazing-ratio", "0.2", "--task-loss-requirement", "0.7", "--out", str(out), "--stream",
                           "--format", "npz"], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"{F} frames ({W}x{H}) in 3 chunks" in proc.stdout and "chunk/s" in proc.stderr  # report + tqdm bar
    z = np.load(out / "gazes.npz")
    assert z["counts"].shape == (F,) and ((z["counts"] >= 1) & (z["counts"] <= int(0.2 * P))).all()
    assert len(decode_all(out / "overlay.mp4")) == F


# ------------------------------------------------------------------------------------ Python API
def _ids(result):
    return [c.tolist() for c in result.ids_per_chunk]


@pytest.mark.parametrize("tau", [None, 0.7])
def test_stream_and_batched_chunks_equal_offline(model, video, tau):
    """Streaming frame by frame, and padding the short last chunk in a batch, change no gaze."""
    kw = dict(gazing_ratio=0.2, task_loss_requirement=tau)
    offline = gaze_video(str(video), model, **kw)
    assert [len(c) for c in offline.ids_per_chunk] == [int(offline.counts[i:i + 4].sum()) for i in (0, 4, 8)]
    for other in (gaze_video(str(video), model, stream=True, **kw), gaze_video(str(video), model, batch_chunks=3, **kw)):
        assert _ids(other) == _ids(offline)
        assert np.array_equal(other.counts, offline.counts) and np.array_equal(other.boxes, offline.boxes)


def test_stream_equals_offline_when_sampling_and_anyres(model, video):
    kw = dict(gazing_ratio=0.1, task_loss_requirement=None, do_sample=True, temperature=2.0, seed=5, max_frames=6)
    a, b = gaze_video(str(video), model, **kw), gaze_video(str(video), model, stream=True, **kw)
    assert a.num_frames == 6 and _ids(a) == _ids(b)
    assert _ids(gaze_video(str(video), model, **{**kw, "seed": 6})) != _ids(a)
    kw = dict(gazing_ratio=0.05, task_loss_requirement=None, target_scales=[56, 112, 196, 392], target_patch_size=14,
              max_frames=5)
    a, b = gaze_video(str(video), model, **kw), gaze_video(str(video), model, stream=True, **kw)
    assert a.tokens_per_frame == 1060 and _ids(a) == _ids(b)
    for f in range(a.num_frames):  # any-resolution ids come out ascending within each frame
        loc = a.local[a.frame == f]
        assert np.all(np.diff(loc) > 0)


def test_bf16_and_result_api(model, video):
    r = gaze_video(str(video), model, gazing_ratio=0.1, task_loss_requirement=None, precision="bf16", max_frames=3)
    assert r.num_frames == 3 and r.counts.tolist() == [26, 26, 26]
    assert np.array_equal(r.ids, r.frame * P + r.local) and r.scale_px.max() <= 224
    np.testing.assert_allclose(r.kept_per_scale() @ np.array([4, 16, 49, 196]), 26)  # shares weighted by n_s
    with pytest.raises(ValueError, match="gazing_ratio"):
        gaze_video(str(video), model, gazing_ratio=0.0)


def test_released_format_fixture_checkpoint(fixtures_dir, video):
    model, processor = load_checkpoint(str(fixtures_dir / "autogaze_model"), torch.device("cpu"))
    assert model.config.num_multi_token_pred == 10 and processor.size == {"shortest_edge": 224}
    r = gaze_video(str(video), model, processor, gazing_ratio=0.1, task_loss_requirement=None, max_frames=2)
    assert r.counts.tolist() == [26, 26] and r.chunk_size == 16 and len(r.ids_per_chunk) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_encoder_writes_the_gazed_features(ckpt, model, video, fixtures_dir, tmp_path, stream):
    """--encoder: features.npz holds, per chunk, the tower's features of the real gazes only, equal
    to running the tower on that chunk's square frames with those gazes (offline and streaming)."""
    from autogaze.inference.encode import load_tower, tower_preparer
    from autogaze.inference.geometry import FrameGeometry
    from autogaze.types import Gazes

    tower_dir = fixtures_dir / "siglip" / "p16_224"
    out = tmp_path / "out"
    args = [str(video), "--checkpoint", str(ckpt), "--gazing-ratio", "0.05", "--task-loss-requirement", "none",
            "--out", str(out), "--encoder", str(tower_dir), "--no-overlay", "--no-summary", "--quiet"]
    assert main(args + (["--stream"] if stream else [])) == 0
    feats = np.load(out / "features.npz")
    gz = json.loads((out / "gazes.json").read_text())
    assert int(feats["tokens_per_frame"]) == P and list(feats["chunk_start_frames"]) == [0, 4, 8]
    tower, tproc = load_tower(str(tower_dir))
    prepare = tower_preparer(FrameGeometry.make(H, W, 224, "crop"), None, tproc)
    frames = decode_all(video)
    for c, start in enumerate(feats["chunk_start_frames"]):
        ids = feats[f"chunk{c}_ids"]
        assert np.array_equal(ids, np.asarray(gz["ids_per_chunk"][c]))  # same gazes, gaze order
        T = min(T_CHUNK, F - start)
        counts = np.bincount(ids // P, minlength=T)
        g = Gazes(torch.from_numpy(ids)[None], torch.zeros(1, ids.size, dtype=torch.bool), torch.from_numpy(counts), P)
        with torch.inference_mode():
            want = tower(prepare(np.stack(frames[start:start + T]))[None], gazing_info=g).last_hidden_state[0]
        assert feats[f"chunk{c}_features"].shape == (ids.size, tower.config.hidden_size)
        np.testing.assert_allclose(feats[f"chunk{c}_features"], want.numpy(), atol=1e-5)


def test_encoder_with_another_token_space_is_a_clear_error(ckpt, video, fixtures_dir, tmp_path, capsys):
    rc = main([str(video), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), "--quiet",
               "--encoder", str(fixtures_dir / "siglip" / "p14_392")])
    assert rc == 2 and "scales" in capsys.readouterr().err
