"""Gaze models, task and data for the evaluation CLI, named on the command line.

A model spec is ``NAME=REF`` or just ``REF`` (the name is then derived):

    random | grid | framediff | full   a baseline (models/baselines.py) on the task config's scales
    untrained:DIR                      a fresh AutoGaze with DIR's config.json (seeded init)
    DIR                                a save_pretrained folder, or an experiment folder holding
                                       checkpoint_latest_gaze/ (or a checkpoint_ep*_iter*/)

Each AutoGaze sees frames normalised by its own preprocessor_config.json (as in training);
baselines and checkpoints without one get the default normalisation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from autogaze.datasets.video_folder import TASK_PREPROCESSING
from autogaze.interfaces import GazeModel, Task

BASELINES = ("random", "grid", "framediff", "full")
#: preprocessor_config.json keys that VideoTransform reads; the rest (size, crop) is the task's.
_PREP_KEYS = ("do_resize", "do_rescale", "rescale_factor", "offset", "do_normalize", "image_mean", "image_std")


@dataclass
class GazeSpec:
    name: str
    model: GazeModel
    preprocessing: dict  # the gaze-side frame normalisation this model was trained with


def checkpoint_dir(ref: str | Path) -> Path:
    """An experiment folder -> its checkpoint_latest_gaze/; a numbered checkpoint_ep*_iter*/ -> its
    checkpoint_gaze/; a save_pretrained folder -> itself."""
    path = Path(ref).expanduser()
    for sub in ("checkpoint_latest_gaze", "checkpoint_gaze"):
        if (path / sub / "config.json").is_file():
            return path / sub
    if (path / "config.json").is_file():
        return path
    raise FileNotFoundError(f"{ref}: neither a save_pretrained folder (config.json) nor an experiment folder "
                            "with checkpoint_latest_gaze/")


def _preprocessing(ckpt: Path) -> dict:
    f = ckpt / "preprocessor_config.json"
    if not f.is_file():
        return dict(TASK_PREPROCESSING)
    raw = json.loads(f.read_text())
    return {k: raw[k] for k in _PREP_KEYS if k in raw}


def default_name(ref: str) -> str:
    if ref in BASELINES:
        return ref
    if ref.startswith("untrained:"):
        return "untrained"
    path = Path(ref.rstrip("/"))
    return path.parent.name if path.name.startswith("checkpoint") else path.name


def load_gaze_model(ref: str, model_cfg: dict, seed: int = 0) -> tuple[GazeModel, dict]:
    """One spec's REF -> (model in eval mode, its preprocessing). ``model_cfg``: the task
    experiment's ``model`` block (its scales and frame count size the baselines)."""
    from autogaze.models import baselines
    from autogaze.models.autogaze import AutoGaze, AutoGazeConfig

    if ref in BASELINES:
        # Only the token grid matters to a baseline; training-time strategies (e.g. `self`) are dropped.
        keep = ("scales", "num_vision_tokens_each_frame", "max_num_frames")
        cls = {"random": baselines.RandomGaze, "grid": baselines.GridGaze,
               "framediff": baselines.FrameDiffGaze, "full": baselines.FullGaze}[ref]
        return cls.from_config({k: model_cfg[k] for k in keep if k in model_cfg}).eval(), dict(TASK_PREPROCESSING)
    if ref.startswith("untrained:"):
        ckpt = checkpoint_dir(ref[len("untrained:"):])
        torch.manual_seed(seed)  # the same "untrained" model on every call
        return AutoGaze(AutoGazeConfig.from_pretrained(str(ckpt))).eval(), _preprocessing(ckpt)
    ckpt = checkpoint_dir(ref)
    return AutoGaze.from_pretrained(str(ckpt)).eval(), _preprocessing(ckpt)


def load_gaze_models(specs: list[str], model_cfg: dict, seed: int = 0) -> list[GazeSpec]:
    out, seen = [], set()
    for spec in specs:
        name, _, ref = spec.partition("=") if "=" in spec else (default_name(spec), "", spec)
        if name in seen:
            raise ValueError(f"two models are named {name!r}; name them: NAME=REF")
        seen.add(name)
        out.append(GazeSpec(name, *load_gaze_model(ref, model_cfg, seed)))
    return out


def load_experiment(config: str | Path, data_root: str | None = None, clip_len: int | None = None):
    """An experiment's config.yaml -> parsed ExperimentConfig, with the data overridden."""
    from omegaconf import OmegaConf

    from autogaze.config import parse_config

    raw = OmegaConf.to_container(OmegaConf.load(config), resolve=True)
    if data_root is not None:
        raw["dataset"]["root"] = str(data_root)
    if clip_len is not None:
        raw["dataset"]["clip_len"] = clip_len
    raw["dataset"].pop("gt_gazing_pos_paths", None)  # labels are for NTP training, not needed here
    return parse_config(raw, "evaluate")


def load_task(exp, config: str | Path, weights: str | Path | None = None) -> Task:
    """The frozen task. Weights: ``weights``, else the config's trainer.task_weights, else the
    experiment's own checkpoint_latest_task.pt (a demo_mae-style run that trained the task)."""
    from autogaze.build import build_task

    own = Path(config).parent / "checkpoint_latest_task.pt"
    weights = weights or exp.trainer.task_weights or (own if own.is_file() else None)
    if weights is None:
        raise FileNotFoundError(f"no task weights: pass --task-weights (none in {config} and no {own})")
    task = build_task(exp)
    task.load_task_weights(str(weights))
    task.set_trainable(False)
    return task.eval()


def make_loader(exp, split: str, preprocessing: dict, batch_size: int) -> DataLoader:
    """The ``split`` clips in a fixed order, gaze frames normalised with ``preprocessing``."""
    from autogaze.build import resolve_target
    from autogaze.utils.parsing import parse_scales

    cls = resolve_target("dataset", exp.dataset)
    body = {k: v for k, v in exp.dataset.items() if k != "_target_"}
    size = max(parse_scales("task.scales", exp.task.get("scales", "224")))
    data = cls.from_config(body, split=split, preprocessing=preprocessing, size=size, seed=exp.trainer.seed,
                           tokens_per_frame=exp.model.get("num_vision_tokens_each_frame"))
    return DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=data.collate)
