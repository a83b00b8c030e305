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

New stages (GRPO, plots, overlays) are new ``stage_*`` functions appended to ``STAGES``.
Sizes are CPU sizes (about 3 minutes on 2 cores; 64-px frames, scales 32+64 = 20 patches per frame, 8-frame clips); the
upstream command lines differ only in the overrides listed in ``ntp_overrides``.
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

log = logging.getLogger("autogaze.demo")


@dataclass
class Demo:
    """Where the demo writes and how big it is. Every field has a CPU-sized default."""

    root: Path = Path(".")                # data/ and exps/ are created under it
    n_train: int = 192                    # synthetic clips per split
    n_val: int = 16
    clip_len: int = 8                     # frames per clip (upstream: 16)
    frame_size: int = 64                  # pixels; scales 32+64 -> 4 + 16 = 20 patches per frame
    scales: str = "32+64"
    mae_steps: int = 600                  # optimizer steps of the small VideoMAE
    ntp_steps: int = 600                  # optimizer steps of NTP
    eval_ratio: float = 0.2               # NTP's validation ratio (4 of 20 patches per frame)
    compare_ratios: tuple[float, ...] = (0.1, 0.2)  # ratios of the final comparison (2 and 4 patches)
    seed: int = 0
    extra_overrides: list[str] = field(default_factory=list)  # appended to every composed experiment
    data_dir: Path | None = None          # clips; default <root>/data/synthetic (made by stage data)

    @property
    def tokens_per_frame(self) -> int:
        return sum((int(s) // 16) ** 2 for s in self.scales.split("+"))

    @property
    def data(self) -> Path:
        return self.data_dir or self.root / "data" / "synthetic"

    @property
    def exps(self) -> Path:
        return self.root / "exps"

    @property
    def labels(self) -> Path:
        return self.data / "gazing_labels.json"

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
    """Synthetic textured clips with moving shapes (autogaze/datasets/synthetic.py)."""
    from autogaze.datasets.synthetic import make_synthetic_dataset

    make_synthetic_dataset(demo.data, demo.n_train, demo.n_val, demo.clip_len, demo.frame_size, demo.seed)


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


def stage_evaluate(demo: Demo) -> None:
    """Held-out (val) reconstruction loss at each ``compare_ratios``: untrained vs NTP vs random vs
    the greedy labeller (the ceiling NTP imitates)."""
    from autogaze.evaluate import compare_at_ratio

    result = [compare_at_ratio(demo.exps / "demo_ntp", r, seed=demo.seed) for r in demo.compare_ratios]
    (demo.exps / "demo_eval.json").write_text(json.dumps(result, indent=1))
    for row in result:
        print(json.dumps(row))


@dataclass
class Stage:
    name: str
    run: Callable[[Demo], None]
    output: Callable[[Demo], Path]  # the stage is skipped when this exists


STAGES = [
    Stage("data", stage_data, lambda d: d.data / "val" / f"clip_{d.n_val - 1:05d}.mp4"),
    Stage("mae", stage_mae, lambda d: d.exps / "demo_mae" / "demo_done"),
    Stage("labels", stage_labels, lambda d: d.labels),
    Stage("ntp", stage_ntp, lambda d: d.exps / "demo_ntp" / "demo_done"),
    Stage("evaluate", stage_evaluate, lambda d: d.exps / "demo_eval.json"),
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
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; 1 is fastest for these tiny models (per-op overhead dominates)")
    p.add_argument("--only", nargs="*", help="run only these stages: " + " ".join(s.name for s in STAGES))
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every training stage")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    timings = run_demo(Demo(root=Path(args.root), extra_overrides=list(args.overrides)), args.only)
    print(json.dumps({"stage_seconds": timings}))


if __name__ == "__main__":
    main()
