"""End to end on CPU at toy size (the demo pipeline, smaller): synthetic clips -> small VideoMAE ->
greedy labels -> NTP -> evaluation. Marked slow (about 30-60 s on 2 cores).

What it checks, honestly: the NTP loss falls, and at one gazing ratio the NTP model reconstructs
*the train clips it fitted* better than the same model untrained. At this size (16 clips, 150 MAE + 80 NTP steps)
the held-out comparison is too noisy to assert; ``python -m autogaze.demo`` measures that at demo size.
"""
from __future__ import annotations

import json

import pytest
import torch

from autogaze.demo import Demo, run_demo
from autogaze.evaluate import compare_at_ratio


@pytest.mark.slow
def test_demo_pipeline_ntp_learns(tmp_path, one_thread):
    demo = Demo(root=tmp_path, n_train=16, n_val=4, clip_len=4, mae_steps=150, ntp_steps=80)
    timings = run_demo(demo, only=["data", "mae", "labels", "ntp"])
    assert set(timings) == {"data", "mae", "labels", "ntp"}
    labels = json.loads(demo.labels.read_text())
    assert len(labels) == 16 and all(len(v["gazing_pos"]) == 4 for v in labels.values())

    rows = [json.loads(line) for line in (demo.exps / "demo_ntp" / "metrics.jsonl").read_text().splitlines()]
    ntp = [r["train/ntp_loss"] for r in rows if "train/ntp_loss" in r]
    assert len(ntp) == 80
    assert sum(ntp[-10:]) / 10 < 0.8 * sum(ntp[:10]) / 10  # the NTP loss falls

    res = compare_at_ratio(demo.exps / "demo_ntp", 0.2, split="train")
    assert res["ntp"] < res["untrained"], res
    assert res["greedy_labels"] < res["random"], res  # the labels are a real ceiling on the MAE

    again = run_demo(demo, only=["data", "mae", "labels", "ntp"])
    assert again == {}  # every stage is cached on a re-run
