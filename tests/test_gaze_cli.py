"""`python -m autogaze.gaze`: outputs, consistency, streaming, odd sizes and user errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from autogaze.datasets.synthetic import make_clip, write_mp4
from autogaze.gaze import main
from autogaze.models.autogaze import AutoGaze
from autogaze.models.autogaze.config import tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("gazecli")
    torch.manual_seed(0)
    AutoGaze(tiny_config()).save_pretrained(d / "ckpt")
    # 10 frames of 96x128 (non-square, not a multiple of the chunk length)
    write_mp4(d / "clip.mp4", make_clip(10, (96, 128), seed=3))
    return d


def _run(setup, out, *extra):
    return main([str(setup / "clip.mp4"), "--checkpoint", str(setup / "ckpt"), "--out", str(out),
                 "--gazing-ratio", "0.3", "--task-loss-requirement", "none", "--quiet", *extra])


def test_outputs_exist_and_agree(setup):
    out = setup / "out"
    assert _run(setup, out) == 0
    meta = json.loads((out / "gazes.json").read_text())
    npz = np.load(out / "gazes.npz")
    assert meta["num_frames"] == 10 and len(meta["counts"]) == 10
    assert meta["counts"] == npz["counts"].tolist()
    assert all(c == int(0.3 * 20) for c in meta["counts"])          # budget 6 of 20, no early stop
    boxes = np.array([g["box"] for g in meta["gazes"]])
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= 128).all()   # inside the original frame
    assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= 96).all()
    for g in meta["gazes"]:                                          # (scale, row, col) <-> local id
        side = g["scale"] // 16
        offset = {32: 0, 64: 4}[g["scale"]]
        assert g["local"] == offset + g["row"] * side + g["col"]
    import decord

    vr = decord.VideoReader(str(out / "overlay.mp4"))
    assert len(vr) == 10 and vr[0].shape == (96, 128, 3)
    assert (out / "summary.png").stat().st_size > 0


def test_streaming_equals_offline(setup):
    assert _run(setup, setup / "off", "--no-overlay", "--no-summary") == 0
    assert _run(setup, setup / "stream", "--stream", "--no-overlay", "--no-summary") == 0
    off = json.loads((setup / "off" / "gazes.json").read_text())["gazes"]
    st = json.loads((setup / "stream" / "gazes.json").read_text())["gazes"]
    assert [(g["frame"], g["local"]) for g in off] == [(g["frame"], g["local"]) for g in st]


def test_user_errors_exit_2_with_a_message(setup, tmp_path, capsys):
    assert main([str(tmp_path / "missing.mp4"), "--checkpoint", str(setup / "ckpt"), "--out", str(tmp_path)]) == 2
    assert "video not found" in capsys.readouterr().err
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 50)
    assert main([str(tmp_path / "bad.mp4"), "--checkpoint", str(setup / "ckpt"), "--out", str(tmp_path)]) == 2
    assert "bad.mp4" in capsys.readouterr().err
    assert main([str(setup / "clip.mp4"), "--checkpoint", str(tmp_path / "nockpt"), "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_subprocess_run(setup, tmp_path):
    p = subprocess.run([sys.executable, "-m", "autogaze.gaze", str(setup / "clip.mp4"), "--checkpoint",
                        str(setup / "ckpt"), "--out", str(tmp_path / "o"), "--gazing-ratio", "0.2", "--no-overlay"],
                       cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "o" / "gazes.npz").exists() and (tmp_path / "o" / "summary.png").exists()
