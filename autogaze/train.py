"""Training entry point.

    torchrun --nproc_per_node=N -m autogaze.train --config-name <experiment> key=value ...
    python -m autogaze.train --config-name <experiment> key=value ...

The Hydra configs ship inside the package (``autogaze/configs``), so an installed wheel and an editable
checkout both work from any directory.
"""
from __future__ import annotations

import gc
import logging
import random
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from autogaze.build import build_algorithm, build_datasets, build_gaze_model, build_task, validate_components
from autogaze.checkpoint import load_gaze_weights
from autogaze.config import CONFIG_DIR, ExperimentConfig, config_to_dict, parse_config
from autogaze.utils.distributed import cleanup_distributed, init_distributed
from autogaze.utils.metric_logger import MetricLogger, setup_logging
from autogaze.utils.runtime import tune_cpu

log = logging.getLogger("autogaze.train")


def experiment_name(exp: ExperimentConfig) -> str:
    t = exp.trainer
    if t.exp_name:
        return t.exp_name
    name = f"{exp.config_name}_lr{t.lr}_bs{t.batch_size}_{time.strftime('%d%m%Y-%H%M')}"
    if dist.is_initialized():  # ranks could straddle a minute: rank 0 decides
        box = [name]
        dist.broadcast_object_list(box, src=0)
        name = box[0]
    return name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run(cfg: DictConfig | dict, config_name: str = "experiment"):
    """Parse, validate, build and train. Returns the final TrainState."""
    exp = parse_config(cfg, config_name)
    validate_components(exp)  # every bad key fails here, before data, weights or processes
    info = init_distributed(exp.trainer.device)
    trainer = None
    try:
        seed_everything(exp.trainer.seed * (info.rank + 1))  # upstream: seed * (rank + 1)
        exp_dir = Path(exp.trainer.logdir) / experiment_name(exp)
        setup_logging(exp_dir, info.is_main)
        config = config_to_dict(exp)
        if info.is_main:
            exp_dir.mkdir(parents=True, exist_ok=True)
            (exp_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        train_set, val_set, collate = build_datasets(exp)
        gaze_model = build_gaze_model(exp)
        if exp.trainer.gaze_weights:
            load_gaze_weights(gaze_model, exp.trainer.gaze_weights, exp.trainer.allow_missing_keys,
                              exp.trainer.allow_unexpected_keys)
        task = build_task(exp)
        if exp.trainer.task_weights:
            task.load_task_weights(exp.trainer.task_weights, allow_missing=exp.trainer.allow_missing_keys,
                                   allow_unexpected=exp.trainer.allow_unexpected_keys)
        algorithm = build_algorithm(exp)
        from autogaze.trainer import Trainer

        metric_logger = MetricLogger(exp.logger, exp_dir, exp_dir.name, config, info.is_main)
        trainer = Trainer(exp.trainer, gaze_model, task, algorithm, train_set, val_set, collate, info,
                          exp_dir, metric_logger, config)
        state = trainer.fit()
        metric_logger.finish()
        return state
    finally:
        # DDP's reducer holds the gloo process group, and freeing it while holding the GIL can
        # join gloo's worker threads while one of them waits for the GIL to free a tensor: a
        # deadlock at exit, about 1 two-rank run in 20 on CPU. Freed here, while the process group is still
        # registered, the reducer only drops a reference; the group itself is then destroyed by
        # destroy_process_group, whose binding releases the GIL.
        trainer = None
        gc.collect()
        cleanup_distributed()


# An absolute path, not "pkg://": the configs folder is package data, not an importable package.
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=None)
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from autogaze.utils.parsing import ConfigError

    tune_cpu()
    try:
        run(cfg, HydraConfig.get().job.config_name or "experiment")
    except ConfigError as e:  # a user error: one line naming key, value, rule and fix; no traceback
        print(f"autogaze.train: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
