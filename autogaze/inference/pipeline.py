"""`gaze_video`: run AutoGaze over a whole video of any length and resolution.

Chunking (offline): the video is cut into consecutive chunks of ``max_num_frames`` (16) frames and
every chunk is gazed as an independent clip (chunks share no context; the decode
state starts empty at each chunk). The last chunk holds the remaining 1..15 frames. When it is alone
in its forward pass it runs as a shorter clip; when it shares a forward with full chunks
(``batch_chunks > 1``) it is padded to full length by repeating its last frame, and the gazes of the
padded frames are dropped. Padding cannot change the real frames' gazes, because the gaze model is
causal in time (the conv trunk looks back only, the decoder attends to the past only).

Streaming (``stream=True``): frames are decoded and gazed one at a time, carrying the decode state
(KV cache and conv cache) from frame to frame and resetting it every
``max_num_frames`` frames, exactly where an offline chunk starts. So streaming gives the same gazes
as the offline run, while holding one frame in memory and producing each frame's gazes before the
next frame is read.

Resolution: frames are made square by the resize rule of geometry.py (crop or squash). With
``target_scales`` / ``target_patch_size`` (any-resolution mode) the square has
side max(target_scales), is tiled by ``AnyResPlan`` (the same plan the dict call uses), gazed per
tile with the budget applied per tile, and stitched back: ids then live in the target token space
and come out ascending within each frame (the gaze order is lost, as upstream).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from autogaze.inference.geometry import FrameGeometry, FramePreparer
from autogaze.inference.result import FrameGazes, GazeResult, ResultBuilder, describe_frame
from autogaze.inference.video_io import iter_chunks, iter_frames, probe_video
from autogaze.models.autogaze import AutoGaze, AutoGazeImageProcessor
from autogaze.models.autogaze.anyres import AnyResPlan
from autogaze.types import Gazes

FrameSink = Callable[[np.ndarray, Sequence[FrameGazes]], None]  # (uint8 frames [t, H, W, 3], their gazes)


@dataclass
class _Runner:
    """One gaze-model call on a batch of clips: tile, budget, generate, stitch, split per frame."""

    model: AutoGaze
    plan: AnyResPlan | None
    gazing_ratio: float
    task_loss_requirement: float | None
    precision: str
    do_sample: bool
    temperature: float
    generator: torch.Generator | None

    def __call__(self, clips: Tensor, state=None):
        """clips [B, T, 3, S, S] -> (per clip, per frame: int64 local ids [k] of real gazes, new state)."""
        rows = self.plan.tile(clips) if self.plan is not None else clips  # [(B n n), T, 3, s, s]
        budget = self.model.sample_budget(rows, training=False, gazing_ratio=self.gazing_ratio,
                                          task_loss_requirement=self.task_loss_requirement, generator=self.generator)
        dev = rows.device
        autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if self.precision == "bf16"
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            rollout = self.model.generate(rows, budget, do_sample=self.do_sample, temperature=self.temperature,
                                          generator=self.generator, state=state, keep_state=True)
            state = rollout.state
        gazes = rollout.gazes if self.plan is None else self.plan.stitch(rollout.gazes)
        return split_per_frame(gazes), state


def split_per_frame(gazes: Gazes) -> list[list[np.ndarray]]:
    """Gazes [B, N] -> per row, per frame: frame-local ids of the real gazes in slot order."""
    local = gazes.local_ids().cpu().numpy()
    is_real = (~gazes.is_padded).cpu().numpy()
    bounds = np.concatenate([[0], np.cumsum(gazes.num_per_frame.cpu().numpy())])
    return [[local[b, s:e][is_real[b, s:e]] for s, e in zip(bounds[:-1], bounds[1:])] for b in range(local.shape[0])]


def _batches(chunks: Iterator[np.ndarray], n: int) -> Iterator[list[np.ndarray]]:
    batch = []
    for c in chunks:
        batch.append(c)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _pad_time(x: Tensor, T: int) -> Tensor:
    """[t, ...] -> [T, ...] by repeating the last frame (see the chunking rule above)."""
    return torch.cat([x, x[-1:].expand(T - x.shape[0], *x.shape[1:])]) if x.shape[0] < T else x


def gaze_video(
    path: str,
    model: AutoGaze,
    processor: AutoGazeImageProcessor | None = None,
    gazing_ratio: float = 0.75,
    task_loss_requirement: float | None = 0.7,
    *,
    resize: str = "crop",
    target_scales: Sequence[int] | None = None,
    target_patch_size: int | None = None,
    stream: bool = False,
    batch_chunks: int = 1,
    precision: str = "fp32",
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int | None = None,
    max_frames: int | None = None,
    progress: bool = False,
    on_frames: FrameSink | None = None,
) -> GazeResult:
    """Gaze every frame of the video at ``path`` (rules: module docstring).

    gazing_ratio: per-frame cap, ``max(int(ratio * P), 1)`` gazes (per tile in any-resolution mode).
    task_loss_requirement: stop a frame once the predicted task loss is <= this (None: never).
    resize: 'crop' | 'squash' (geometry.py). batch_chunks: chunks per forward (offline only).
    do_sample / temperature / seed: multinomial sampling instead of greedy (eval default), drawn from a
    generator seeded with ``seed``. max_frames: gaze only the first frames. on_frames: called with
    each decoded group of original frames and their gazes (the CLI writes the overlay there).
    The model runs on its own device; inputs are moved there. Raises VideoError for a bad video.
    """
    if not 0 < gazing_ratio <= 1:
        raise ValueError(f"gazing_ratio={gazing_ratio} must lie in (0, 1]")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision={precision!r} must be 'fp32' or 'bf16'")
    if stream and batch_chunks != 1:
        raise ValueError("stream mode gazes one frame at a time; batch_chunks must be 1")
    if batch_chunks < 1:
        raise ValueError(f"batch_chunks={batch_chunks} must be >= 1")
    model.eval()
    dev = next(model.parameters()).device
    info = probe_video(path)
    side = max(target_scales) if target_scales else model.token_space.scales[-1]
    plan = AnyResPlan.make(model.token_space, side, target_scales, target_patch_size)
    space = plan.target if plan is not None else model.token_space
    geometry = FrameGeometry.make(info.height, info.width, side, resize)
    prepare = FramePreparer(geometry, processor)
    T = model.config.max_num_frames
    generator = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
    run = _Runner(model, plan, gazing_ratio, task_loss_requirement, precision, do_sample, temperature, generator)
    settings = dict(gazing_ratio=gazing_ratio, task_loss_requirement=task_loss_requirement, resize=resize,
                    target_scales=list(target_scales) if target_scales else None, target_patch_size=target_patch_size,
                    stream=stream, batch_chunks=batch_chunks, precision=precision, do_sample=do_sample,
                    temperature=temperature, seed=seed, max_frames=max_frames)
    builder = ResultBuilder(info, geometry, space, T, settings)
    describe = lambda ids: describe_frame(ids, space, geometry)  # noqa: E731

    n_frames = info.num_frames  # None when the container does not tell; the bar then counts up
    if max_frames is not None:
        n_frames = min(n_frames, max_frames) if n_frames else max_frames
    bar = tqdm(total=None if n_frames is None else math.ceil(n_frames / T), unit="chunk", disable=not progress,
               desc=f"gazing {info.path}")
    with bar:
        if stream:
            _stream(path, run, prepare, T, dev, builder, describe, on_frames, bar, max_frames)
        else:
            for batch in _batches(iter_chunks(path, T, max_frames), batch_chunks):
                lengths = [len(c) for c in batch]
                T_b = max(lengths)  # the chunks are equal unless the short last chunk is in this batch
                clips = torch.stack([_pad_time(prepare(c), T_b) for c in batch]).to(dev)  # [B, T_b, 3, S, S]
                per_clip, _ = run(clips)
                for chunk, frames_ids, t_real in zip(batch, per_clip, lengths):
                    described = [describe(ids) for ids in frames_ids[:t_real]]  # padded frames dropped
                    builder.add_chunk(described)
                    if on_frames is not None:
                        on_frames(chunk, described)
                bar.update(len(batch))
    return builder.build()


def _stream(path, run: _Runner, prepare: FramePreparer, T: int, dev, builder: ResultBuilder, describe,
            on_frames: FrameSink | None, bar, max_frames: int | None) -> None:
    """Frame-by-frame loop of stream mode (module docstring); the state resets every T frames."""
    state, chunk = None, []
    for i, frame in enumerate(iter_frames(path, max_frames)):
        x = prepare(frame[None]).to(dev)[None]  # [1, 1, 3, S, S]
        per_clip, state = run(x, state)
        fg = describe(per_clip[0][0])
        chunk.append(fg)
        if on_frames is not None:
            on_frames(frame[None], [fg])
        if (i + 1) % T == 0:  # chunk boundary: a fresh context, like the offline run
            builder.add_chunk(chunk)
            state, chunk = None, []
            bar.update(1)
    if chunk:
        builder.add_chunk(chunk)
        bar.update(1)
