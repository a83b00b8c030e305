"""``python -m autogaze.evaluate``: the CLI on a tiny task and tiny clips (CSV columns, PNG, table),
and ``ratio_to_reach`` / ``crossing_ratio`` on hand-built curves."""
from __future__ import annotations

import csv

import pytest
import torch

from autogaze.evaluate import crossing_ratio, loss_curve, main, ratio_to_reach
from autogaze.evaluation.report import CURVE_COLUMNS, REACH_COLUMNS, format_reach


# ------------------------------------------------------------------ ratio to reach, hand-built
def curve(*pts):
    return [{"ratio": r, "gazing_ratio": r, "loss": loss} for r, loss in pts]


def test_crossing_ratio_interpolates_a_monotone_curve():
    c = curve((0.1, 1.2), (0.2, 1.0), (0.4, 0.8))
    assert crossing_ratio(c, 0.9) == pytest.approx(0.3)       # half-way between 0.2 and 0.4
    assert crossing_ratio(c, 1.1) == pytest.approx(0.15)
    assert crossing_ratio(c, 1.0) == pytest.approx(0.2)       # on a grid point
    assert crossing_ratio(c, 1.5) == pytest.approx(0.1)       # reached at once: the smallest ratio
    assert crossing_ratio(c, 0.5) is None                     # never reached
    assert format_reach(None, 0.4) == ">0.4" and format_reach(0.3, 0.4) == "0.300"


def test_crossing_ratio_uses_gazed_ratio_and_first_crossing():
    # asked 0.1/0.2/0.3 but int(r * P) rounded down: x is what was really gazed
    c = [{"ratio": 0.1, "gazing_ratio": 0.05, "loss": 1.0}, {"ratio": 0.2, "gazing_ratio": 0.15, "loss": 0.8},
         {"ratio": 0.3, "gazing_ratio": 0.25, "loss": 0.9}]
    assert crossing_ratio(c, 0.9) == pytest.approx(0.10)      # first crossing; the later bump is ignored
    assert crossing_ratio(list(reversed(c)), 0.9) == pytest.approx(0.10)  # order of points does not matter


# ------------------------------------------------------------------ the CLI on tiny models
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny clips, a VideoMAE trained a few steps, and an untrained AutoGaze checkpoint folder."""
    from autogaze.build import build_gaze_model
    from autogaze.config import parse_config
    from autogaze.demo import Demo, compose, ntp_overrides, run_demo

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    demo = Demo(root=root, n_train=8, n_val=3, clip_len=4, mae_steps=3)
    run_demo(demo, only=["data", "mae"])
    exp = parse_config(compose("video_folder_video_mae_reconstruction_ar_gaze_ntp", ntp_overrides(demo)), "t")
    torch.manual_seed(0)
    build_gaze_model(exp).save_pretrained(str(root / "exps" / "gaze" / "checkpoint_latest_gaze"))
    yield demo
    torch.set_num_threads(n)


@pytest.mark.slow
def test_cli_writes_csv_png_and_table(tiny, tmp_path, capsys):
    e = tiny.exps
    main(["--config", str(e / "demo_mae" / "config.yaml"), "--data-root", str(tiny.data), "--clip-len", "4",
          "--models", f"ag={e / 'gaze'}", f"untrained=untrained:{e / 'gaze'}", "random", "grid", "framediff", "full",
          "--ratios", "0.1,0.5", "--thresholds", "0.5,100", "--out", str(tmp_path)])
    rows = list(csv.DictReader((tmp_path / "loss_vs_ratio.csv").open()))
    assert tuple(rows[0]) == CURVE_COLUMNS
    models = ["ag", "untrained", "random", "grid", "framediff", "full"]
    assert [r["model"] for r in rows] == [m for m in models for _ in range(2)]
    assert all(r["split"] == "val" and float(r["clips"]) == 3 and float(r["loss"]) > 0 for r in rows)
    by = {(r["model"], float(r["ratio"])): r for r in rows}
    assert float(by[("random", 0.1)]["gazing_ratio"]) == pytest.approx(0.1)   # 2 of 20 patches
    assert float(by[("full", 0.1)]["gazing_ratio"]) == pytest.approx(1.0)     # full ignores the budget
    # same weights, same init seed: the saved checkpoint and "untrained:" give the same numbers
    assert by[("ag", 0.5)]["loss"] == by[("untrained", 0.5)]["loss"]

    reach = list(csv.DictReader((tmp_path / "ratio_to_reach.csv").open()))
    assert tuple(reach[0]) == REACH_COLUMNS and len(reach) == 2 * len(models)
    got = {(r["model"], float(r["threshold"])): r["ratio_to_reach"] for r in reach}
    assert got[("random", 100.0)] == "0.100"     # any loss is below 100: reached at the first ratio
    assert got[("random", 0.5)] in (">0.5", "0.100") or 0.1 <= float(got[("random", 0.5)]) <= 0.5

    png = (tmp_path / "loss_vs_ratio.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    out = capsys.readouterr().out
    assert "ratio@0.5" in out and all(m in out for m in models)


@pytest.mark.slow
def test_ratio_to_reach_matches_its_curve(tiny):
    from autogaze.evaluation import models as M

    e = tiny.exps
    exp = M.load_experiment(e / "demo_mae" / "config.yaml", str(tiny.data), 4)
    task = M.load_task(exp, e / "demo_mae" / "config.yaml")
    (spec,) = M.load_gaze_models(["random"], dict(exp.model))
    loader = M.make_loader(exp, "val", spec.preprocessing, batch_size=2)
    ratios = (0.1, 0.3, 0.5)
    c = loss_curve(spec.model, task, loader, ratios)
    mid = (c[0]["loss"] + c[-1]["loss"]) / 2
    r = ratio_to_reach(spec.model, task, loader, mid, ratios)
    assert r == pytest.approx(crossing_ratio(c, mid))            # deterministic: same draws per call
    assert ratio_to_reach(spec.model, task, loader, -1.0, ratios) is None   # a loss is never negative


@pytest.mark.slow
def test_frame_weights_reach_every_models_budget(tiny, tmp_path):
    """``frame_weights`` hands each model the split's per-frame counts; the clip's gazes stay the same."""
    from autogaze.evaluate import evaluate_at_ratio
    from autogaze.evaluation import models as M

    e = tiny.exps
    exp = M.load_experiment(e / "demo_mae" / "config.yaml", str(tiny.data), 4)
    task = M.load_task(exp, e / "demo_mae" / "config.yaml")
    for spec in M.load_gaze_models(["random", "framediff", f"ag={e / 'gaze'}"], dict(exp.model)):
        seen = []
        generate = spec.model.generate
        spec.model.generate = lambda video, budget, **kw: seen.append(budget.max_gazes) or generate(video, budget, **kw)
        loader = M.make_loader(exp, "val", spec.preprocessing, batch_size=2)
        split = evaluate_at_ratio(spec.model, task, loader, 0.1, frame_weights=(10, 3))
        uniform = evaluate_at_ratio(spec.model, task, loader, 0.1)
        # 8 gazes over 4 frames: 10:3 gives 4.2 / 1.26 / 1.26 / 1.26 -> [4, 2, 1, 1]; uniform [2, 2, 2, 2]
        assert all(m.tolist() == [[4, 2, 1, 1]] * len(m) for m in seen[:2]), spec.name
        assert all(m.tolist() == [[2, 2, 2, 2]] * len(m) for m in seen[2:]), spec.name
        assert split["gazing_ratio"] == pytest.approx(uniform["gazing_ratio"]) == pytest.approx(0.1)
        assert split["loss"] != uniform["loss"]
