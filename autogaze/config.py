"""Typed experiment config: the one place where the Hydra tree becomes typed values.

Hydra composes ``autogaze/configs/<experiment>.yaml`` (:data:`CONFIG_DIR`) with the groups
dataset, model, task, algorithm, trainer and logger, applies the command-line overrides, and hands
the tree to :func:`parse_config`. That function checks every trainer/logger key against the dataclasses
below, parses upstream's string encodings, and runs the cross-group checks (for example
``task.scales`` must equal ``model.scales``). The model, task and dataset groups are parsed by their
own components (``AutoGazeConfig``, ``VideoMAEReconstruction.from_config``, ``VideoFolder``), which
:func:`validate_components` calls before any work starts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from autogaze.utils.parsing import ConfigError, check_choice, check_keys, parse_scales

# The Hydra config tree ships inside the package (wheel package-data), so a non-editable install
# finds it next to this file from any working directory.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

LR_SCHEDULES = ("linear", "linear_w_warmup", "cosine_w_warmup", "constant")
OPTIMIZERS = ("adam", "adamw", "sgd")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TempScheduleConfig:
    """Sampling temperature schedule. Only ``exp``: T(s) = T0 * (T1/T0) ** (s / S)."""

    mode: str = "exp"
    exp: dict = field(default_factory=lambda: {"temp_start": 1e4, "temp_end": 1.0})


@dataclass
class TrainerConfig:
    """Every ``trainer.*`` key. Upstream keys keep upstream names and defaults."""

    batch_size: int = 256               # global batch (all ranks, all micro-batches)
    per_gpu_max_batch_size: int = 64    # micro-batch cap per rank; the rest becomes accumulation
    lr: float = 3e-4
    min_lr: float = 1e-5                # end of the `linear` schedule (ignored by linear_w_warmup)
    lr_schedule: str = "linear_w_warmup"  # linear | linear_w_warmup | cosine_w_warmup | constant
    warmup_ratio: float = 0.1           # ours: warm-up share for linear_w_warmup / cosine_w_warmup (upstream: fixed 10%)
    optimizer: str = "sgd"              # adam | adamw | sgd (upstream default sgd; the NTP script sets adam)
    train_gaze: bool = True
    train_task: bool = True
    detach_task: bool = False           # run the task under no_grad
    val_nsteps: int = 1000              # validate when step % val_nsteps == 0 (step 0 included)
    save_nsteps: int = 300              # checkpoint when step % save_nsteps == 0 (step 0 included)
    n_epochs: int = 10
    logdir: str = "exps/"
    exp_name: str | None = None         # default: <config>_lr<lr>_bs<bs>_<ddmmYYYY-HHMM>
    resume: str | None = "auto"         # auto: continue from <exp>/checkpoint_latest_* if present
    gaze_weights: str | None = None     # HF-format dir (save_pretrained) or hub id
    task_weights: str | None = None     # videomae.pt-style state dict (.pt / .safetensors)
    seed: int = 666
    val_only: bool = False
    temp_schedule_args: TempScheduleConfig = field(default_factory=TempScheduleConfig)
    # Upstream passed these two with `+trainer.…` (not in its yaml); we keep them out of the yaml
    # so that the same `+` syntax still works.
    truncate_grads: bool = False        # clip gaze and task grads separately to grad_norm
    grad_norm: float = 1.0
    # ---- ours ----
    device: str = "auto"                # auto | cpu | cuda
    precision: str = "fp32"             # fp32 (parity) | bf16 (autocast on CPU and CUDA)
    num_workers: int = 4                # DataLoader workers per rank
    transform_on_device: bool = False   # workers hand over uint8 frames; resize+normalise on `device` (bit-identical)
    max_steps: int | None = None        # stop after this many optimizer steps (None: n_epochs)
    keep_checkpoints: int = 2           # newest checkpoint_ep*_iter* folders kept
    visualize_every: int = 1            # draw the gaze grid every N validations (0: never)
    max_val_batches: int | None = None  # cap validation batches (None: the whole split)
    log_nsteps: int = 10                # console/training.log line every N steps (metrics.jsonl, W&B: every step)
    allow_missing_keys: bool = False    # weight loading: tolerate missing keys (still reported)
    allow_unexpected_keys: bool = False # weight loading: tolerate unexpected keys (still reported)
    # ---- ours: optimizer details (TATS / AdaMAE recipes) ----
    gaze_lr: float | None = None        # lr of the gaze model's parameter group (null: lr)
    task_lr: float | None = None        # lr of the task's parameter group (null: lr)
    betas: tuple[float, float] = (0.9, 0.999)  # adam / adamw betas (VideoMAE pre-training: 0.9, 0.95)
    weight_decay: float = 0.0           # adamw: decoupled; adam / sgd: L2. 1-D tensors (biases, norms) are exempt
    scale_lr_with_batch: bool = False   # lr, gaze_lr, task_lr and min_lr are per 256 clips: x global_batch / 256


@dataclass
class LoggerConfig:
    """``logger`` group: ``wandb`` (offline unless ``mode`` says otherwise) or ``none``."""

    name: str = "none"                  # wandb | none
    project: str = "autogaze"
    entity: str | None = None
    mode: str = "offline"               # online | offline | disabled (wandb only)


@dataclass
class ExperimentConfig:
    """The parsed experiment. Component groups stay plain dicts for their owners to parse."""

    config_name: str
    dataset: dict
    model: dict
    task: dict
    algorithm: dict
    trainer: TrainerConfig
    logger: LoggerConfig
    raw: dict = field(repr=False, default_factory=dict)  # the whole resolved tree, for config.yaml


def _to_dataclass(cls, key: str, data: dict):
    check_keys(key, data.keys(), [f.name for f in fields(cls)])
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        v = data[f.name]
        if f.name == "temp_schedule_args":
            v = _to_dataclass(TempScheduleConfig, f"{key}.temp_schedule_args", v or {})
        kwargs[f.name] = v
    return cls(**kwargs)


def _positive(key: str, value, fix: str, allow_zero: bool = False):
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        raise ConfigError(key, value, "must be " + (">= 0" if allow_zero else "> 0"), fix)


def validate_trainer(t: TrainerConfig) -> None:
    check_choice("trainer.lr_schedule", t.lr_schedule, LR_SCHEDULES)
    check_choice("trainer.optimizer", t.optimizer, OPTIMIZERS)
    check_choice("trainer.precision", t.precision, PRECISIONS)
    check_choice("trainer.device", t.device, ("auto", "cpu", "cuda"))
    check_choice("trainer.temp_schedule_args.mode", t.temp_schedule_args.mode, ("exp",))
    for k in ("temp_start", "temp_end"):
        v = t.temp_schedule_args.exp.get(k)
        if not isinstance(v, (int, float)) or v <= 0:
            raise ConfigError(f"trainer.temp_schedule_args.exp.{k}", v, "must be a positive number",
                              f"e.g. trainer.temp_schedule_args.exp.{k}=1.0")
    _positive("trainer.batch_size", t.batch_size, "set a positive global batch size")
    _positive("trainer.per_gpu_max_batch_size", t.per_gpu_max_batch_size, "set a positive micro-batch cap")
    _positive("trainer.lr", t.lr, "set a positive learning rate", allow_zero=True)
    _positive("trainer.val_nsteps", t.val_nsteps, "validate every N>0 steps")
    _positive("trainer.save_nsteps", t.save_nsteps, "save every N>0 steps")
    _positive("trainer.log_nsteps", t.log_nsteps, "print a metrics line every N>0 steps")
    _positive("trainer.n_epochs", t.n_epochs, "train for at least one epoch")
    _positive("trainer.num_workers", t.num_workers, "use 0 for in-process loading", allow_zero=True)
    if not isinstance(t.transform_on_device, bool):
        raise ConfigError("trainer.transform_on_device", t.transform_on_device, "must be true or false",
                          "trainer.transform_on_device=true (resize and normalise on the training device) "
                          "or false (in the DataLoader workers, the default)")
    _check_optimizer_keys(t)
    if not (0 <= t.warmup_ratio < 1):
        raise ConfigError("trainer.warmup_ratio", t.warmup_ratio, "must be in [0, 1)", "e.g. 0.1")
    if t.resume not in (None, "auto", "none", False) and not isinstance(t.resume, str):
        raise ConfigError("trainer.resume", t.resume, "must be 'auto', null or a checkpoint dir",
                          "trainer.resume=auto")
    if not (t.train_gaze or t.train_task):
        raise ConfigError("trainer.train_gaze", t.train_gaze, "nothing to train: train_gaze and "
                          "train_task are both false", "set trainer.train_gaze=True or trainer.train_task=True")
    if t.train_task and t.detach_task:
        raise ConfigError("trainer.detach_task", True, "a detached task (no_grad) cannot be trained",
                          "set trainer.detach_task=False or trainer.train_task=False")


def _check_optimizer_keys(t: TrainerConfig) -> None:
    """gaze_lr / task_lr / betas / weight_decay / scale_lr_with_batch (the keys the TATS and AdaMAE
    recipes need)."""
    for key in ("gaze_lr", "task_lr"):
        v = getattr(t, key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ConfigError(f"trainer.{key}", v, "must be null (use trainer.lr) or a number >= 0",
                              f"e.g. trainer.{key}=1.5e-4, or drop it")
    betas = t.betas
    ok = isinstance(betas, (list, tuple)) and len(betas) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)
    if not ok:
        raise ConfigError("trainer.betas", betas, "must be two numbers in [0, 1)", "e.g. trainer.betas=[0.9,0.95]")
    wd = t.weight_decay
    if isinstance(wd, bool) or not isinstance(wd, (int, float)) or wd < 0:
        raise ConfigError("trainer.weight_decay", wd, "must be a number >= 0", "e.g. trainer.weight_decay=0.05")
    if not isinstance(t.scale_lr_with_batch, bool):
        raise ConfigError("trainer.scale_lr_with_batch", t.scale_lr_with_batch, "must be true or false",
                          "trainer.scale_lr_with_batch=true (lr x batch / 256) or false")


def parse_config(cfg: Any, config_name: str = "experiment") -> ExperimentConfig:
    """Resolve a Hydra/OmegaConf tree (or plain dict) into an :class:`ExperimentConfig`."""
    from omegaconf import DictConfig, OmegaConf

    raw = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    check_keys("<root>", [k for k in raw if k != "hydra"],
               ["dataset", "model", "task", "algorithm", "trainer", "logger"])
    for group in ("dataset", "model", "task", "algorithm", "trainer"):
        if not isinstance(raw.get(group), dict):
            raise ConfigError(group, raw.get(group), "config group is missing",
                              f"add `- {group}: <name>` to the experiment's defaults list")
    trainer_raw = {k: v for k, v in raw["trainer"].items() if k != "_target_"}  # upstream key, unused
    trainer = _to_dataclass(TrainerConfig, "trainer", trainer_raw)
    validate_trainer(trainer)
    logger = _to_dataclass(LoggerConfig, "logger", raw.get("logger") or {})
    check_choice("logger.name", logger.name, ("wandb", "none"))
    exp = ExperimentConfig(config_name, raw["dataset"], raw["model"], raw["task"], raw["algorithm"],
                           trainer, logger, raw)
    _cross_checks(exp)
    return exp


def _cross_checks(exp: ExperimentConfig) -> None:
    """Rules that span groups."""
    clip_len = exp.dataset.get("clip_len")
    if not isinstance(clip_len, int) or clip_len <= 0:
        raise ConfigError("dataset.clip_len", clip_len, "must be a positive integer", "e.g. dataset.clip_len=16")
    # Upstream overwrites model.max_num_frames with clip_len before building the model; do the same,
    # once, here (the model then validates e.g. the dirichlet alpha length against it).
    exp.model["max_num_frames"] = clip_len
    if exp.trainer.transform_on_device:
        _check_uint8_dataset(exp.dataset.get("_target_"))
    model_scales = parse_scales("model.scales", exp.model.get("scales", "224"))
    task_scales = parse_scales("task.scales", exp.task.get("scales", "224"))
    if model_scales != task_scales:
        # Upstream bug 14.5: any mismatch triggers resolution adaptation, which drops the
        # log-probs that NTP and GRPO need.
        raise ConfigError("task.scales", "+".join(map(str, task_scales)),
                          f"must equal model.scales ({'+'.join(map(str, model_scales))}) for training",
                          "set task.scales and model.scales to the same value")


def _check_uint8_dataset(target) -> None:
    """transform_on_device needs a dataset that can hand over uint8 frames (``set_transform_on_device``).
    A target that does not import is left to ``build.validate_components``, which names it."""
    import importlib

    module, _, name = str(target).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return
    if not hasattr(cls, "set_transform_on_device"):
        raise ConfigError("trainer.transform_on_device", True, f"dataset {name} cannot hand over uint8 frames",
                          "use dataset=video_folder or set trainer.transform_on_device=False")


def config_to_dict(exp: ExperimentConfig) -> dict:
    """The resolved config as written to ``<exp>/config.yaml``."""
    out = dict(exp.raw)
    out.pop("hydra", None)
    out["trainer"] = asdict(exp.trainer)
    out["logger"] = asdict(exp.logger)
    out["model"], out["dataset"], out["task"], out["algorithm"] = exp.model, exp.dataset, exp.task, exp.algorithm
    return out
