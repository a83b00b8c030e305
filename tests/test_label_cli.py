"""`python -m autogaze.label` end to end on a tiny MAE: sharding, resume after a kill, merge, format.

The clips come from an in-test dataset (``FakeClips``, selected with ``dataset._target_=``), so
these tests check the labeller, not video decoding; the demo e2e runs it on real mp4 files.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from autogaze.datasets.labels import collate_labels, load_labels
from autogaze.labeling import cli
from autogaze.types import Batch
from autogaze.utils.parsing import ConfigError

REPO = Path(__file__).resolve().parents[1]
N_CLIPS, T = 6, 3


class FakeClips(Dataset):
    """Deterministic random 64-px clips named ``fake/<split>/clip_i.mp4``."""

    def __init__(self, split: str, clip_len: int):
        self.paths = [f"/nowhere/fake/{split}/clip_{i}.mp4" for i in range(N_CLIPS)]
        self.clip_len = clip_len

    @classmethod
    def from_config(cls, cfg: dict, split: str, **_) -> "FakeClips":
        return cls(split, cfg["clip_len"])

    def __len__(self) -> int:
        return N_CLIPS

    def __getitem__(self, i: int):
        video = torch.randn(self.clip_len, 3, 64, 64, generator=torch.Generator().manual_seed(i))
        return video, self.paths[i]

    def collate(self, items) -> Batch:
        video = torch.stack([v for v, _ in items])
        return Batch(video, video, [p for _, p in items])


pytestmark = pytest.mark.usefixtures("one_thread")


def argv(out: Path, *extra: str) -> list[str]:
    return ["task.recon_model=tiny", "task.scales=32+64", "dataset._target_=tests.test_label_cli.FakeClips",
            "--data-root", "unused", "--clip-len", str(T), "--out", str(out), "--seed", "3",
            "--ratio-strategy", "fixed", "--ratio", "0.15", "--candidate-batch", "8", *extra]


def label(out: Path, *extra: str) -> dict:
    torch.manual_seed(0)  # the tiny MAE's random init: same weights in every run of a test
    return cli.run(cli.parse_args(argv(out, *extra)))


def test_labels_format_and_budgets(tmp_path):
    out = tmp_path / "gazing_labels.json"
    summary = label(out)
    assert summary == {**summary, "labelled": N_CLIPS, "skipped": 0, "missing": 0}
    data = json.loads(out.read_text())
    assert sorted(data) == [f"fake/train/clip_{i}.mp4" for i in range(N_CLIPS)]  # last three components
    for entry in data.values():
        assert len(entry["gazing_pos"]) == T == len(entry["task_losses"])
        for t, (ids, losses) in enumerate(zip(entry["gazing_pos"], entry["task_losses"])):
            assert len(ids) == len(losses) >= 1
            assert all(t * 20 <= i < (t + 1) * 20 for i in ids) and len(set(ids)) == len(ids)
        # ratio 0.15 over 3 frames = 0.45 x 20 patches shared by Dirichlet(10, 3, 3): sum ~ 9 (clamps/rounding)
        assert 3 <= sum(map(len, entry["gazing_pos"])) <= 9


def test_round_trip_through_label_loader(tmp_path):
    out = tmp_path / "gazing_labels.json"
    label(out)
    written = json.loads(out.read_text())
    loaded = load_labels(str(out), clip_len=T, tokens_per_frame=20)  # validates every entry
    assert {k: {"gazing_pos": p, "task_losses": l} for k, (p, l) in loaded.items()} == written
    # ... and the collate NTP trains on puts each frame's gazes first, then padding (+1 slot per frame)
    keys = sorted(loaded)
    labels = collate_labels([loaded[k] for k in keys], tokens_per_frame=20)
    for b, k in enumerate(keys):
        real = labels.gazes.ids[b][~labels.gazes.is_padded[b]].tolist()
        assert real == [i for frame in written[k]["gazing_pos"] for i in frame]
        torch.testing.assert_close(labels.task_losses[b][~labels.gazes.is_padded[b]],
                                   torch.tensor([v for frame in written[k]["task_losses"] for v in frame]))


def test_shards_merge_when_all_done(tmp_path):
    whole, parts = tmp_path / "whole.json", tmp_path / "parts.json"
    label(whole)
    first = label(parts, "--shard", "0/2")
    assert first["missing"] == N_CLIPS // 2 and not parts.exists()  # the other shard is not done yet
    second = label(parts, "--shard", "1/2")
    assert second["missing"] == 0 and second["labelled"] == N_CLIPS // 2
    assert json.loads(parts.read_text()) == json.loads(whole.read_text())


def test_resume_after_kill_redoes_no_clip(tmp_path, monkeypatch):
    clean, resumed = tmp_path / "clean.json", tmp_path / "resumed.json"
    label(clean)
    env = {**os.environ, "AUTOGAZE_LABEL_FAULT_AFTER": "2", "OMP_NUM_THREADS": "1"}
    code = "import sys, torch; torch.manual_seed(0); from autogaze.labeling.cli import main; main(sys.argv[1:])"
    p = subprocess.run([sys.executable, "-c", code, *argv(resumed)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=240)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    part = next((tmp_path / "resumed.json.parts").glob("shard-*.jsonl"))
    assert len(part.read_text().splitlines()) == 2 and not resumed.exists()
    with open(part, "a") as f:
        f.write('{"key": "fake/train/clip_2.mp4", "gazing_po')  # a write torn by the kill
    labelled = []
    real = cli.label_clip
    monkeypatch.setattr(cli, "label_clip", lambda *a, **k: labelled.append(1) or real(*a, **k))
    summary = label(resumed)
    assert len(labelled) == N_CLIPS - 2 and summary["skipped"] == 2  # the 2 finished clips are not redone
    assert json.loads(resumed.read_text()) == json.loads(clean.read_text())


def test_restart_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "l.json"
    label(out, "--limit", "1")
    with pytest.raises(ConfigError, match="other settings"):
        label(out, "--limit", "1", "--seed", "4")


def test_manifest_written_by_concurrent_shards(tmp_path):
    """Shards that start together each write the manifest through their own temp file; one with
    other settings is refused even when it renames first."""
    import multiprocessing as mp

    from autogaze.labeling.shards import check_manifest
    from autogaze.utils.parsing import ConfigError

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=check_manifest, args=(tmp_path, {"seed": 0})) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ConfigError, match="other settings"):
        check_manifest(tmp_path, {"seed": 1})


def test_candidate_sample_labels_same_budgets_and_is_part_of_the_settings(tmp_path):
    """--candidate-sample keeps each clip's budgets (its draws use their own stream), is reproducible,
    and a restart with another value is refused, since its labels differ."""
    label(tmp_path / "a.json")
    exact = json.loads((tmp_path / "a.json").read_text())
    label(tmp_path / "b.json", "--candidate-sample", "4")
    sampled = json.loads((tmp_path / "b.json").read_text())
    assert {k: [len(f) for f in e["gazing_pos"]] for k, e in sampled.items()} \
        == {k: [len(f) for f in e["gazing_pos"]] for k, e in exact.items()}
    label(tmp_path / "c.json", "--candidate-sample", "4")
    assert json.loads((tmp_path / "c.json").read_text()) == sampled
    with pytest.raises(ConfigError, match="other settings"):
        label(tmp_path / "b.json", "--candidate-sample", "5")
    with pytest.raises(ConfigError, match="--candidate-sample"):
        label(tmp_path / "d.json", "--candidate-sample", "-1")
