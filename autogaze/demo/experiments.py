"""The demo's experiments: Hydra configs composed from the upstream experiment files plus CPU-sized
overrides, run in-process exactly as ``python -m autogaze.train --config-name ...`` would run them."""
from __future__ import annotations

import time
from pathlib import Path

from autogaze.demo.settings import Demo
from autogaze.train import CONFIG_DIR


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


def ntp_overrides(demo: Demo) -> list[str]:
    """Stage 1's seed command (TRAINING.md, "The two upstream command lines"), key for key, at CPU sizes.

    Changed from the seed command: paths, clip_len, scales and tokens (64-px frames), the task
    (tiny MAE with l1 instead of vit-mae-large with l1+dinov2_reg+siglip2), batch and step counts,
    the LR (5e-4 -> ``ntp_lr``, 2e-3 by default, for few steps) and K, the gazes per decoder step (10 ->
    ``multi_token_pred``, 1 by default); added: small gaze-model widths and CPU trainer settings.
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
        f"model.gaze_model_config.gaze_decoder_config.num_multi_token_pred={demo.multi_token_pred}",
        "task.recon_model=tiny", "task.recon_sample_rate=0.125",
        "task.recon_model_config.loss_type=l1", "task.recon_model_config.loss_weights=1", f"task.scales={s}",
        "algorithm.optimize_task_loss_prediction=True",
        "trainer.train_gaze=True", "trainer.train_task=False", "trainer.detach_task=True",
        f"trainer.lr={demo.ntp_lr:g}", "trainer.lr_schedule=linear", "trainer.optimizer=adam",
        "trainer.n_epochs=1000", "trainer.batch_size=16", "trainer.per_gpu_max_batch_size=16",
        "trainer.temp_schedule_args.exp.temp_end=0.3", "trainer.temp_schedule_args.exp.temp_start=3",
        "trainer.val_nsteps=100", "trainer.save_nsteps=100", f"trainer.task_weights={demo.task_weights}",
        # ---- CPU sizes (appended)
        *cpu_gaze_model_overrides(demo.frame_size, demo.gaze_width, demo.gaze_layers),
        f"trainer.max_steps={demo.ntp_steps}", "trainer.device=cpu", "trainer.num_workers=1",
        "trainer.visualize_every=0", "trainer.max_val_batches=2", "logger=none", *demo.task_extra,
        *([f"algorithm.soft_label_temperature={demo.ntp_soft_label_temperature}"]
          if demo.ntp_soft_label_temperature > 0 else []),
    ]


def cpu_gaze_model_overrides(frame_size: int, width: int = 64, layers: int = 2) -> list[str]:
    """A small AutoGaze for CPU (released: 192 wide, 4 layers, 224 px). The demo's default, 64 wide
    with 2 decoder layers, has ~0.2M parameters; ``Demo.gaze_width`` / ``gaze_layers`` change it."""
    g = "model.gaze_model_config"
    return [f"{g}.input_img_size={frame_size}", f"{g}.vision_model_config.hidden_dim={width}",
            f"{g}.vision_model_config.out_dim={width}", f"{g}.connector_config.hidden_dim={width}",
            f"{g}.gaze_decoder_config.hidden_size={width}", f"{g}.gaze_decoder_config.intermediate_size={2 * width}",
            f"{g}.gaze_decoder_config.num_attention_heads=4", f"{g}.gaze_decoder_config.num_hidden_layers={layers}"]


def grpo_overrides(demo: Demo, gaze_weights: Path | None) -> list[str]:
    """Stage 2's seed command (TRAINING.md, "The two upstream command lines"), key for key, at CPU sizes.

    Changed from the seed command, as for NTP: paths, clip_len, scales and tokens, the task (tiny
    l1 MAE), G (12 -> ``grpo_group``), batch (64 -> ``grpo_batch``, micro-batches of 2 kept, with the
    ``self`` budgets upstream ran at 1) and steps. Changed for the toy, measured on 64 held-out clips
    (TRAINING.md): the video ratio cap 0.75 -> ``grpo_ratio`` (train near the ratios evaluated);
    K 10 -> ``multi_token_pred`` (as for NTP: the checkpoint's decoder); ``task.recon_sample_rate``
    0.125 -> 1 (1 rebuilt frame of 8 gives too sparse a reward to learn from in ~200 steps); SGD
    lr 5e-4 -> Adam ``grpo_lr`` (SGD barely moves in ~200 steps); the temperature 3 -> 0.3 -> a
    constant ``grpo_temp``; gamma 0.995 -> ``grpo_discount``; and two of our GRPO options
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
        f"model.gaze_model_config.gaze_decoder_config.num_multi_token_pred={demo.multi_token_pred}",
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
        *cpu_gaze_model_overrides(demo.frame_size, demo.gaze_width, demo.gaze_layers), "task.recon_sample_rate=1.0",
        f"algorithm.discount_factor={demo.grpo_discount}",
        "algorithm.normalize_advantage_std=true", "algorithm.score_under_sampling_distribution=true",
        f"trainer.optimizer={demo.grpo_optimizer}", "trainer.lr_schedule=constant",
        f"trainer.max_steps={demo.grpo_steps}", "trainer.device=cpu", "trainer.num_workers=1",
        "trainer.visualize_every=0", "trainer.max_val_batches=1", "logger=none", *demo.task_extra,
    ]
