"""Checkpoints with upstream's names, written atomically, and an exact resume.

Layout of ``exps/<exp_name>/`` (upstream names):

* ``checkpoint_latest_gaze/``    ``save_pretrained`` of the gaze model (+ preprocessor config) and
  ``trainer_step.json``;
* ``checkpoint_latest_task.pt``  the task's *trainable* weights (only when ``train_task``: the frozen
  MAE and the frozen DINOv2/SigLIP feature models are never re-saved, they come from
  ``task_weights``);
* ``checkpoint_latest_train.pt`` optimizer, scheduler, :class:`TrainState`, every rank's RNG states,
  every rank's ``algorithm.state_dict()`` (a rollout memory that outlives a step, e.g. TATS's PPO
  episodes) and the config; written last, so it always names a complete checkpoint;
* ``checkpoint_ep{E}_iter{I}/{checkpoint_gaze/, checkpoint_task.pt, checkpoint_train.pt}``, the
  newest ``keep_checkpoints`` of them (by step, not ctime).

Resume restores gaze weights (upstream discarded them, bug 14.3), task weights, optimizer,
scheduler, step, data position, RNG and the algorithm's state, so a killed run continues
bit-identically.
"""
from __future__ import annotations

import json
import logging
import random
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from autogaze.interfaces import GazeModel, Task
from autogaze.utils.distributed import DistInfo, barrier
from autogaze.utils.io import atomic_torch_save, atomic_write_dir

log = logging.getLogger("autogaze.checkpoint")
STEP_FILE = "trainer_step.json"


def rng_state(device: torch.device) -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_gaze_model(model: GazeModel, out: Path) -> None:
    """``save_pretrained`` (model.safetensors, and config.json for HF models) and the preprocessor config."""
    model.save_pretrained(out)
    if model.image_processor is not None:
        model.image_processor.save_pretrained(out)


def load_gaze_weights(model: torch.nn.Module, path: Path, allow_missing: bool = False,
                      allow_unexpected: bool = False) -> None:
    """Copy the weights of an HF-format dir into ``model`` through an explicit, loud key check."""
    from safetensors.torch import load_file

    file = Path(path) / "model.safetensors"
    if not file.exists():
        raise FileNotFoundError(f"gaze weights: no model.safetensors in {path} (expected a save_pretrained dir)")
    sd = load_file(str(file))
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing:
        log.warning("gaze weights %s: %d missing keys: %s", path, len(missing), missing[:10])
    if unexpected:
        log.warning("gaze weights %s: %d unexpected keys: %s", path, len(unexpected), unexpected[:10])
    if (missing and not allow_missing) or (unexpected and not allow_unexpected):
        raise KeyError(f"gaze weights {path} do not match the model ({len(missing)} missing, "
                       f"{len(unexpected)} unexpected; first: {(missing + unexpected)[:3]}). "
                       "Fix the model config, or set trainer.allow_missing_keys / allow_unexpected_keys")
    for k in unexpected:
        sd.pop(k)
    model.load_state_dict(sd, strict=False)


def task_state_dict(task: Task) -> dict:
    return task.trainable_state_dict()


class Checkpointer:
    def __init__(self, exp_dir: Path, dist_info: DistInfo, keep: int, config: dict):
        self.exp_dir, self.dist, self.keep, self.config = Path(exp_dir), dist_info, keep, config
        self._resumed_step: int | None = None

    def resumed_at(self, step: int) -> bool:
        """True on the step a resume started from (its validation and save already happened)."""
        return self._resumed_step == step

    # ------------------------------------------------------------------ save
    def save(self, trainer) -> None:
        s = trainer.state
        # Every rank's RNG is saved, so each rank resumes its own stream.
        rngs = [None] * self.dist.world_size
        algorithm = [None] * self.dist.world_size  # each rank's own memory (its own episodes)
        if self.dist.is_distributed:
            dist.all_gather_object(rngs, rng_state(self.dist.device))
            dist.all_gather_object(algorithm, trainer.algorithm.state_dict())
        else:
            rngs = [rng_state(self.dist.device)]
            algorithm = [trainer.algorithm.state_dict()]
        if self.dist.is_main:
            epoch, it = divmod(s.micro_step, trainer.micro_per_epoch)
            train = {"state": asdict(s), "optimizer": trainer.optimizer.state_dict(),
                     "scheduler": trainer.scheduler.state_dict(), "rng": rngs, "algorithm": algorithm,
                     "config": self.config,
                     "epoch": epoch, "iteration": it, "train_step": s.train_step, "val_step": s.val_step}
            task = task_state_dict(trainer.task) if (trainer.cfg.train_task and trainer.task is not None) else None

            def write_gaze(d: Path) -> None:
                save_gaze_model(trainer.gaze_model, d)
                (d / STEP_FILE).write_text(json.dumps({"train_step": s.train_step}))

            folder = self.exp_dir / f"checkpoint_ep{epoch}_iter{it}"

            def write_folder(d: Path) -> None:
                write_gaze(d / "checkpoint_gaze")
                if task is not None:
                    torch.save(task, d / "checkpoint_task.pt")
                torch.save(train, d / "checkpoint_train.pt")

            atomic_write_dir(folder, write_folder)
            atomic_write_dir(self.exp_dir / "checkpoint_latest_gaze", write_gaze)
            if task is not None:
                atomic_torch_save(task, self.exp_dir / "checkpoint_latest_task.pt")
            atomic_torch_save(train, self.exp_dir / "checkpoint_latest_train.pt")  # last: marks completeness
            self._prune()
            log.info("saved checkpoint at step %d -> %s", s.train_step, folder.name)
        barrier()

    def _prune(self) -> None:
        def step_of(p: Path) -> int:
            try:
                return json.loads((p / "checkpoint_gaze" / STEP_FILE).read_text())["train_step"]
            except (OSError, ValueError, KeyError):
                return -1

        folders = [p for p in self.exp_dir.glob("checkpoint_ep*_iter*") if re.fullmatch(r"checkpoint_ep\d+_iter\d+", p.name)]
        for old in sorted(folders, key=step_of)[: max(0, len(folders) - self.keep)]:
            shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------ resume
    def _find(self, root: Path) -> tuple[Path, dict, Path | None] | None:
        """(gaze dir, loaded train state, task file) of the newest complete checkpoint under ``root``."""
        gaze, train, task = root / "checkpoint_latest_gaze", root / "checkpoint_latest_train.pt", root / "checkpoint_latest_task.pt"
        candidates = [(gaze, train, task)]
        for p in sorted(root.glob("checkpoint_ep*_iter*"), key=lambda p: p.stat().st_mtime, reverse=True):
            candidates.append((p / "checkpoint_gaze", p / "checkpoint_train.pt", p / "checkpoint_task.pt"))
        for g, t, k in candidates:
            if not (g.is_dir() and t.is_file() and (g / STEP_FILE).is_file()):
                continue
            step = json.loads((g / STEP_FILE).read_text())["train_step"]
            saved = torch.load(t, map_location="cpu", weights_only=False)
            if saved["train_step"] == step:  # a kill between the gaze and train writes is caught here
                return g, saved, (k if k.is_file() else None)
        return None

    def maybe_resume(self, trainer) -> bool:
        resume = trainer.cfg.resume
        if resume in (None, False, "none", "null"):
            return False
        root = self.exp_dir if resume == "auto" else Path(resume)
        found = self._find(root) if root.is_dir() else None
        if found is None:
            if resume != "auto":
                raise FileNotFoundError(f"trainer.resume={resume}: no complete checkpoint there")
            return False
        gaze_dir, saved, task_file = found
        load_gaze_weights(trainer.gaze_model, gaze_dir)
        if task_file is not None and trainer.task is not None:
            sd = torch.load(task_file, map_location="cpu", weights_only=False)
            trainer.task.load_trainable_state_dict(sd)
        trainer.optimizer.load_state_dict(saved["optimizer"])
        trainer.scheduler.load_state_dict(saved["scheduler"])
        for k, v in saved["state"].items():
            setattr(trainer.state, k, v)
        rngs = saved["rng"]
        if len(rngs) != self.dist.world_size:
            log.warning("resume: checkpoint has %d ranks' RNG, running with %d; RNG streams restart",
                        len(rngs), self.dist.world_size)
        else:
            set_rng_state(rngs[self.dist.rank], self.dist.device)
        states = saved.get("algorithm")  # absent in checkpoints written before the update hook
        if states is not None and len(states) == self.dist.world_size:
            trainer.algorithm.load_state_dict(states[self.dist.rank])
        elif states is not None and any(states):
            log.warning("resume: checkpoint has %d ranks' algorithm state, running with %d; it restarts empty",
                        len(states), self.dist.world_size)
        self._resumed_step = trainer.state.train_step
        log.info("resumed from %s at step %d", gaze_dir.parent, trainer.state.train_step)
        return True
