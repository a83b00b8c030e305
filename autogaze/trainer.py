"""The training loop: micro-batches with accumulation, DDP, schedules, validation, checkpoints.

One trainer step consumes ``acc_steps`` micro-batches per rank. Micro-batches run back to back
across epoch boundaries, so the data position is a single counter (``micro_step``) that resume
restores exactly; the sampler's order depends only on (seed, epoch).

What a step does is the algorithm's ``update`` (autogaze/algorithms/base.py): by default one joint
optimizer step over the micro-batches; TATS's PPO makes an MAE step and then several sampler steps
over its rollout memory. Every optimizer step goes through :meth:`Trainer.optimizer_step`, which owns
backward, accumulation, DDP sync, non-finite skipping, clipping and ``optimizer.step``; the LR
scheduler advances once per trainer step.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from autogaze.algorithms.base import Algorithm, GazePolicy, Pass, ScoreAdapter, StepInfo, StepResult
from autogaze.checkpoint import Checkpointer
from autogaze.config import TrainerConfig
from autogaze.interfaces import DeviceTransformDataset, GazeModel, StepItem, Task, TrainDataset
from autogaze.types import Batch
from autogaze.utils.distributed import DistInfo, all_reduce_sum
from autogaze.utils.metric_logger import MetricLogger
from autogaze.utils.optim import build_optimizer, lr_scale, param_groups
from autogaze.utils.parsing import ConfigError
from autogaze.utils.sampler import ResumableDistributedSampler
from autogaze.utils.schedules import build_lr_scheduler, exp_temperature
from autogaze.validation import validate

log = logging.getLogger("autogaze.trainer")


@dataclass
class BatchGeometry:
    """Global batch -> (micro-batch per rank) x (accumulation steps) x (world size)."""

    micro_batch: int
    acc_steps: int
    world_size: int

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.acc_steps * self.world_size

    @classmethod
    def from_config(cls, batch_size: int, per_gpu_max: int, world: int) -> "BatchGeometry":
        local = max(1, batch_size // world)
        acc = 1
        if local > per_gpu_max:
            acc, local = local // per_gpu_max, per_gpu_max
        return cls(local, acc, world)


@dataclass
class TrainState:
    """Everything that advances during training (saved in checkpoint_latest_train.pt)."""

    train_step: int = 0     # optimizer steps done
    micro_step: int = 0     # micro-batches consumed on this rank (the data position)
    val_step: int = 0       # validations done
    nonfinite_steps: int = 0
    skipped_videos: int = 0


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


class Trainer:
    def __init__(self, cfg: TrainerConfig, gaze_model: GazeModel, task: Task | None,
                 algorithm: Algorithm, train_set: TrainDataset, val_set: TrainDataset | None, collate_fn,
                 dist: DistInfo, exp_dir: Path, metric_logger: MetricLogger, config_dict: dict):
        """The components follow autogaze/interfaces.py (autogaze.build checks them)."""
        self.cfg, self.dist, self.exp_dir = cfg, dist, exp_dir
        self.algorithm, self.metrics = algorithm, metric_logger
        self.geom = BatchGeometry.from_config(cfg.batch_size, cfg.per_gpu_max_batch_size, dist.world_size)
        self.gaze_model = gaze_model.to(dist.device)
        self.task = task.to(dist.device) if task is not None else None
        self.gaze_model.requires_grad_(cfg.train_gaze)
        if self.task is not None:
            # The task decides what "trainable" means (its fixed sin-cos tables stay frozen).
            self.task.set_trainable(cfg.train_task)
        scorer: nn.Module = ScoreAdapter(self.gaze_model)
        self.task_fn: nn.Module | None = self.task
        # Only modules that are trained are wrapped: a frozen module under DDP needs
        # find_unused_parameters and syncs nothing useful (style: frozen means frozen).
        if dist.is_distributed and cfg.train_gaze:
            scorer = DDP(scorer, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
        if dist.is_distributed and cfg.train_task and self.task is not None:
            self.task_fn = DDP(self.task, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
        self.ddp_modules = [m for m in (scorer, self.task_fn) if isinstance(m, DDP)]
        # Set samplers (TATS, AdaMAE) may read the task's tubelet embedding through the bare task: the
        # task loss still runs through its DDP wrapper, and the Conv3d's gradients from both paths meet
        # in one accumulation, which DDP syncs once (tests/test_trainer_ddp_paths.py).
        self.policy = GazePolicy(self.gaze_model, scorer, None if self.task is None else self.task.embed_tokens)

        # transform_on_device: workers stop after the decode; batches are cropped, resized and
        # normalised on dist.device by RawBatch.to (bit-identical; autogaze/datasets/device_transform.py).
        if cfg.transform_on_device:
            for ds in (train_set, val_set):
                # An optional capability that depends on this trainer key, so it is checked here too
                # (parse_config does for a configured dataset; a trainer can be built without one).
                if ds is not None and not isinstance(ds, DeviceTransformDataset):
                    raise ConfigError("trainer.transform_on_device", True,
                                      f"{type(ds).__name__} cannot hand over uint8 frames",
                                      "use the VideoFolder dataset or set trainer.transform_on_device=False")
                if ds is not None:
                    ds.set_transform_on_device(True)
        # Pinned pages (the loader's pin_memory, below) make this copy asynchronous on CUDA.
        self.non_blocking = dist.device.type == "cuda"
        self.sampler = ResumableDistributedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank,
                                                   shuffle=True, seed=cfg.seed, drop_last=True)
        self.train_set = train_set
        self.train_loader = self._loader(train_set, self.sampler, collate_fn)
        self.val_loader = None
        if val_set is not None:
            vs = ResumableDistributedSampler(val_set, num_replicas=dist.world_size, rank=dist.rank,
                                             shuffle=False, drop_last=False)
            self.val_loader = self._loader(val_set, vs, collate_fn, drop_last=False)
        self.micro_per_epoch = len(self.train_loader)
        if self.micro_per_epoch < self.geom.acc_steps:
            raise ConfigError("trainer.batch_size", cfg.batch_size,
                              f"one optimizer step needs {self.geom.acc_steps * self.geom.micro_batch} clips "
                              f"per rank but the train split gives {len(train_set)} clips over "
                              f"{dist.world_size} rank(s)", "lower trainer.batch_size or add videos")
        self.total_steps = self.micro_per_epoch * cfg.n_epochs // self.geom.acc_steps
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)

        scale = lr_scale(cfg, self.geom.global_batch)
        self.param_groups = param_groups(cfg, self._trained_modules(), scale)
        self.optimizer = build_optimizer(cfg, self.param_groups)
        self.scheduler = build_lr_scheduler(self.optimizer, cfg.lr_schedule, self.total_steps, cfg.lr * scale,
                                            cfg.min_lr * scale, cfg.warmup_ratio)
        self.state = TrainState()
        self.info: StepInfo | None = None      # the running step, for Algorithm.update (UpdateContext)
        self._last_items: dict[str, Any] = {}  # per item kind, for empty items under DDP (optimizer_step)
        self.ckpt = Checkpointer(exp_dir, dist, cfg.keep_checkpoints, config_dict)
        if dist.is_main:
            log.info("batch: global %d = micro %d x acc %d x world %d; %d optimizer steps (%d micro-batches/epoch); "
                     "resize+normalise in %s", self.geom.global_batch, self.geom.micro_batch, self.geom.acc_steps,
                     dist.world_size, self.total_steps, self.micro_per_epoch,
                     f"{dist.device} (transform_on_device)" if cfg.transform_on_device else "the data workers")
            log.info("optimizer %s: %s", cfg.optimizer, ", ".join(
                f"{g.name} lr {g.lr:.3g} wd {g.weight_decay:g} ({len(g.params)} tensors)" for g in self.param_groups)
                + (f"; lr x {scale:g} (global batch {self.geom.global_batch} / 256)" if scale != 1.0 else ""))

    # ------------------------------------------------------------------ set-up helpers
    def _loader(self, ds, sampler, collate_fn, drop_last: bool = True) -> DataLoader:
        workers = self.cfg.num_workers
        # pin_memory on CUDA: the pin thread pins each batch (VideoFolder's LoaderBatch and RawBatch
        # define pin_memory), so the copy in _forward can be non-blocking.
        # A loader-owned generator: creating an iterator would otherwise draw worker seeds from the
        # global RNG, and a resume (which creates one mid-epoch) would shift the training RNG stream.
        return DataLoader(ds, batch_size=self.geom.micro_batch, sampler=sampler, collate_fn=collate_fn,
                          num_workers=workers, drop_last=drop_last, pin_memory=self.dist.device.type == "cuda",
                          persistent_workers=False, prefetch_factor=2 if workers > 0 else None,
                          generator=torch.Generator())

    def _trained_modules(self) -> dict[str, list[nn.Parameter]]:
        """gaze / task -> their trained parameters (the optimizer's groups come from these)."""
        modules = {"gaze": list(self.gaze_model.parameters())} if self.cfg.train_gaze else {}
        if self.cfg.train_task and self.task is not None:
            modules["task"] = [p for p in self.task.parameters() if p.requires_grad]
        return modules

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for params in self._trained_modules().values() for p in params]

    def temperature(self) -> float:
        t = self.cfg.temp_schedule_args.exp
        return exp_temperature(self.state.train_step, self.total_steps, t["temp_start"], t["temp_end"])

    # ------------------------------------------------------------------ data
    def _micro_batches(self) -> Iterator[Batch]:
        """Endless micro-batches from the current data position, epoch after epoch."""
        while True:
            epoch, offset = divmod(self.state.micro_step, self.micro_per_epoch)
            self.sampler.set_epoch(epoch)
            self.sampler.set_start(offset * self.geom.micro_batch)
            self.train_set.set_epoch(epoch)
            self.train_loader.generator.manual_seed(self.cfg.seed * 100_003 + epoch)
            for batch in self.train_loader:
                yield batch

    # ------------------------------------------------------------------ one step
    @property
    def device(self) -> torch.device:
        return self.dist.device

    def autocast(self):
        return _autocast(self.dist.device, self.cfg.precision)

    def forward(self, batch: Batch) -> Pass:
        """The joint forward: rollout -> task -> algorithm; the scalar loss, detached metrics and the
        algorithm's record."""
        cfg = self.cfg
        batch = self.algorithm.prepare(batch.to(self.dist.device, non_blocking=self.non_blocking))
        with self.autocast():
            rollout = self.algorithm.rollout(self.policy, batch, self.temperature())
            task_out = None
            if self.algorithm.needs_task and self.task_fn is not None:
                grad = contextlib.nullcontext() if not cfg.detach_task else torch.no_grad()
                with grad:
                    if rollout.tokens is None:
                        task_out = self.task_fn(batch.video_for_task, rollout.gazes)
                    else:  # the sampler's X: the clip is embedded once
                        task_out = self.task_fn(batch.video_for_task, rollout.gazes, tokens=rollout.tokens)
            alg_out = self.algorithm.loss(batch, rollout, task_out)
        loss = alg_out.loss.float().mean() if cfg.train_gaze else alg_out.loss.new_zeros(())
        if cfg.train_task and task_out is not None:
            loss = loss + task_out.loss.float().mean()
        metrics = dict(alg_out.metrics)
        if task_out is not None:
            metrics.update(task_out.metrics)
        return Pass(loss, metrics, alg_out.record)

    def _forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`forward` as (loss, metrics)."""
        p = self.forward(batch)
        return p.loss, p.metrics

    def step_info(self, n_micro: int) -> StepInfo:
        """The step about to run; ``micro_step`` already counts its ``n_micro`` micro-batches."""
        first = max(0, self.state.micro_step - n_micro)
        return StepInfo(step=self.state.train_step, epoch=first // self.micro_per_epoch,
                        total_steps=self.total_steps,
                        steps_per_epoch=max(1, self.micro_per_epoch // self.geom.acc_steps),
                        seed=self.cfg.seed, temperature=self.temperature())

    def train_step(self, micro_batches: list[Batch]) -> dict[str, float]:
        """One trainer step over ``acc_steps`` micro-batches: the algorithm's update, then the LR
        scheduler once."""
        self.gaze_model.train()
        if self.task is not None:
            self.task.train(self.cfg.train_task)
        self.info = self.step_info(len(micro_batches))
        self.algorithm.on_step_start(self.info)
        sums = self.algorithm.update(self, micro_batches)
        with warnings.catch_warnings():  # a skipped step still advances the schedule, on purpose
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        lrs = self.scheduler.get_last_lr()
        sums.update(lr=lrs[0], temperature=self.temperature(),
                    nonfinite_steps=float(self.state.nonfinite_steps),
                    skipped_videos=float(self.state.skipped_videos))
        for g, lr in zip(self.param_groups, lrs):  # named groups: each module's lr after the step
            if len(self.param_groups) > 1:
                sums.setdefault(f"lr_{g.name.removesuffix('_no_decay')}", lr)
        return sums

    def optimizer_step(self, items: Sequence[StepItem], loss_fn: Callable[[Any], Pass] | None = None,
                       kind: str = "batch") -> StepResult:
        """One optimizer step over ``items`` (micro-batches, or an algorithm's minibatches; StepItems),
        one pass each, weighted 1/len(items); DDP syncs on the last only."""
        loss_fn = self.forward if loss_fn is None else loss_fn
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {"loss": 0.0}  # a step whose items were all empty logs loss 0
        records: list[Any] = [None] * len(items)
        nonfinite = torch.zeros((), device=self.dist.device)
        skipped = 0
        for i, item in enumerate(items):
            skipped += len(item.skipped_paths)
            is_last = i == len(items) - 1
            weight = 1.0
            if item.batch_size == 0:  # every clip of it was undecodable (counted above)
                if not (is_last and self.ddp_modules):
                    continue
                # DDP needs every rank in the final all-reduce: replay a previous item at weight 0
                # (on a rank whose run began with undecodable clips, a decodable clip of the split).
                last = self._last_items.get(kind)
                if last is None and kind == "batch":
                    last = self._replay_batch()
                if last is None:
                    raise RuntimeError(f"rank {self.dist.rank}: an empty {kind!r} item ends an optimizer step and "
                                       "no earlier item of that kind exists to join DDP's all-reduce with")
                item, weight = last, 0.0
            self._last_items[kind] = item
            with contextlib.ExitStack() as stack:
                if not is_last:  # accumulate locally; the last pass triggers the all-reduce
                    for m in self.ddp_modules:
                        stack.enter_context(m.no_sync())
                out = loss_fn(item)
                if not torch.isfinite(out.loss):
                    nonfinite += 1
                (out.loss * weight / len(items)).backward()
            if weight == 0.0:  # a replay only joins the all-reduce: it reports nothing, as a skipped batch
                continue
            records[i] = out.record
            for k, v in out.metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) / len(items)
            sums["loss"] = sums.get("loss", 0.0) + float(out.loss.detach()) / len(items)
        # All ranks must agree on skipping, or DDP would desynchronise on the next step. The skipped
        # clips are summed over ranks in the same all-reduce, so rank 0 (which logs and saves) counts all.
        flags = all_reduce_sum(torch.stack([nonfinite, torch.full_like(nonfinite, float(skipped))]))
        skip = bool(flags[0] > 0)
        self.state.skipped_videos += int(flags[1])
        grad_norm = self._clip_and_norm()
        stepped = not (skip or not math.isfinite(grad_norm))
        if not stepped:
            self.state.nonfinite_steps += 1
            self.optimizer.zero_grad(set_to_none=True)
            log.warning("non-finite loss or grad at step %d: step skipped (%d so far)",
                        self.state.train_step, self.state.nonfinite_steps)
        else:
            self.optimizer.step()
        sums["grad_norm"] = grad_norm
        return StepResult(sums, stepped, records)

    def _replay_batch(self) -> Batch:
        """One decodable clip of the train split, read in index order (not from the sampler, so the
        data order is untouched): the weight-0 replay of a rank with nothing earlier to replay."""
        collate = self.train_loader.collate_fn
        for i in range(len(self.train_set)):
            batch = collate([self.train_set[i]])
            if batch.batch_size:
                return batch
        raise RuntimeError(f"rank {self.dist.rank}: no clip of the train split can be decoded")

    def _clip_and_norm(self) -> float:
        """Total grad norm (gaze and task clipped separately when ``truncate_grads``)."""
        groups = [list(self.gaze_model.parameters())] if self.cfg.train_gaze else []
        if self.cfg.train_task and self.task is not None:
            groups.append([p for p in self.task.parameters() if p.requires_grad])
        total = 0.0
        for params in groups:
            params = [p for p in params if p.grad is not None]
            if not params:
                continue
            max_norm = self.cfg.grad_norm if self.cfg.truncate_grads else float("inf")
            total += float(torch.nn.utils.clip_grad_norm_(params, max_norm)) ** 2
        return math.sqrt(total)

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainState:
        cfg = self.cfg
        self.ckpt.maybe_resume(self)
        if cfg.val_only:
            self.run_validation()
            return self.state
        data = self._micro_batches()
        bar = tqdm(total=self.total_steps, initial=self.state.train_step, disable=not self.dist.is_main,
                   desc="train", dynamic_ncols=True)
        fault_at = int(os.environ.get("AUTOGAZE_FAULT_AT_STEP", "-1"))  # test hook: SIGKILL after a save
        # Console log lines go through tqdm.write while the bar is open, so they print above it
        # instead of splitting it; training.log (a file handler) is left as it is.
        with logging_redirect_tqdm(loggers=[logging.getLogger("autogaze")]):
            while self.state.train_step < self.total_steps:
                step = self.state.train_step
                if step % cfg.val_nsteps == 0 and not self.ckpt.resumed_at(step):
                    self.run_validation()
                if step % cfg.save_nsteps == 0 and not self.ckpt.resumed_at(step):
                    self.ckpt.save(self)
                if step == fault_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                micro = [next(data) for _ in range(self.geom.acc_steps)]
                self.state.micro_step += len(micro)
                metrics = self.train_step(micro)
                self.state.train_step += 1
                # Every step goes to metrics.jsonl / W&B (exact curves, resume checks); the human-readable
                # line only every log_nsteps steps and at the last one; the bar's postfix shows the loss.
                done = self.state.train_step
                echo = done % cfg.log_nsteps == 0 or done == self.total_steps
                self.metrics.log(metrics, done, "train", echo=echo)
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
            bar.close()
        self.run_validation()
        self.ckpt.save(self)
        return self.state

    def run_validation(self) -> dict[str, float]:
        if self.val_loader is None or self.task is None:
            return {}
        metrics = validate(self, self.val_loader)
        self.state.val_step += 1
        self.metrics.log(metrics, self.state.val_step, "val")
        return metrics
