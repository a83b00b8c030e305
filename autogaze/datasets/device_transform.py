"""``trainer.transform_on_device``: workers hand over uint8 clips and the training device finishes them.

The CPU path (default) turns every clip into float frames inside a DataLoader worker:
decode -> square crop -> random-resized crop -> antialiased uint8 resize -> normalise. On a GPU
the resize and the normalisation are cheap, but in a worker they cost about as much as the
decode itself. With ``transform_on_device`` a worker stops after the decode:

- The worker decodes the clip and draws its crop box from the per-clip generator, the same draws
  as the CPU path. The box is the square crop composed with the random-resized crop. No pixel is
  copied: the item keeps the decoded frames and the box. ``collate`` stacks the clips into one
  uint8 tensor (zero-padded when the videos have different sizes; a box never reaches into the
  padding) and builds the integer resize tables of ``aa_resize`` per clip. That is cheap numpy,
  cached per (size in, size out).
- ``RawBatch.to(device)`` copies the uint8 frames (pinned, non-blocking on CUDA), crops and resizes
  every clip to its box in one set of kernels, and normalises through the CPU-built lookup table.
  It returns the :class:`~autogaze.types.Batch` the CPU path would have produced.

Cropping on the device, instead of in the worker, keeps one tensor per batch even though every
clip's box has a different size. The cost is that the full decoded frame is transferred; a
448-px uint8 clip is as many bytes as a 224-px float32 one.

Equivalence: the result is bit-identical to the CPU path on every device. On a CPU device the
resize is the CPU path's own ``F.interpolate``, called per clip. Elsewhere it is the
integer re-implementation of that kernel (``aa_resize``): exact integer arithmetic with
CPU-computed weights. The normalisation gathers from a CPU-built table. Both are checked on CPU
in tests/test_device_transform.py, with the integer kernel that CUDA would run.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from autogaze.datasets.aa_resize import ResizeTables, resize_boxes
from autogaze.datasets.transforms import VideoTransform
from autogaze.types import Batch, GazeLabels

#: ``RawBatch.to(kernel=...)``: auto = torch's own kernel on CPU (fast there), the integer one elsewhere.
KERNELS = ("auto", "torch", "integer")

Box = tuple[int, int, int, int]  # (top, left, height, width) in the decoded frame


@dataclass
class RawPlan:
    """What ``RawBatch.to`` has to produce: the two transforms and one resize per output size.

    gaze / task: the VideoFolder's transforms; shared: they are equal (one output tensor).
    gaze_hw / task_hw: output (H', W') of each; tables: output size -> per-clip ResizeTables.
    """

    gaze: VideoTransform
    task: VideoTransform
    shared: bool
    gaze_hw: tuple[int, int]
    task_hw: tuple[int, int]
    tables: dict[tuple[int, int], ResizeTables]

    @classmethod
    def build(cls, gaze: VideoTransform, task: VideoTransform, boxes: list[Box],
              forced: tuple[int, int] | None) -> "RawPlan":
        """``forced``: the size the CPU path passes to its transforms (the random-resized crop's S x S)."""
        hw = {}
        for name, t in (("gaze", gaze), ("task", task)):
            sizes = {t.output_size(h, w, forced) for _, _, h, w in boxes}
            if len(sizes) != 1:  # the CPU path's torch.stack would fail the same way
                raise ValueError(f"{name} frames of one batch would have different sizes {sorted(sizes)} "
                                 "and cannot be stacked (as on the CPU path); set do_resize: true")
            hw[name] = sizes.pop()
        tables = {s: ResizeTables.build(boxes, s) for s in set(hw.values())}
        return cls(gaze, task, gaze == task, hw["gaze"], hw["task"], tables)


@dataclass
class RawBatch:
    """A collated batch whose crop, resize and normalisation happen in ``to(device)``.

    frames:        uint8 [B, T, 3, H, W]  decoded clips (zero-padded to the batch's largest H, W).
    boxes:         B crop boxes (top, left, height, width), each inside its clip's own frame.
    plan:          the transforms and resize tables (see :class:`RawPlan`).
    paths, labels, skipped_paths: as in :class:`~autogaze.types.Batch`.
    """

    frames: Tensor
    boxes: list[Box]
    plan: RawPlan
    paths: list[str]
    labels: GazeLabels | None = None
    skipped_paths: list[str] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return self.frames.shape[0]

    def pin_memory(self) -> "RawBatch":
        """Called by the DataLoader's pin thread (``pin_memory=True``, the trainer's choice on CUDA)."""
        plan = replace(self.plan, tables={k: t.pin_memory() for k, t in self.plan.tables.items()})
        labels = None if self.labels is None else self.labels.map(lambda t: t.pin_memory())
        return replace(self, frames=self.frames.pin_memory(), plan=plan, labels=labels)

    def to(self, device, non_blocking: bool = False, kernel: str = "auto") -> Batch:
        """Finish the preprocessing on ``device``.

        Returns a Batch with ``video`` float32 [B, T, 3, H', W'] (and ``video_for_task``), equal bit
        for bit to the CPU path's. ``kernel`` picks the resize (see ``KERNELS``); the tests force
        ``integer`` on CPU to check the code that CUDA runs.
        """
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        device = torch.device(device)
        use_torch = kernel == "torch" or (kernel == "auto" and device.type == "cpu")
        frames = self.frames.to(device, non_blocking=non_blocking)
        resized = {}
        for hw, tables in self.plan.tables.items():
            if use_torch:
                resized[hw] = torch.stack([_torch_resize(clip, box, hw) for clip, box in zip(frames, self.boxes)])
            else:
                resized[hw] = resize_boxes(frames, tables.to(device, non_blocking=non_blocking))
        p = self.plan
        video = _normalize(p.gaze, resized[p.gaze_hw])
        vft = video if p.shared else _normalize(p.task, resized[p.task_hw])
        labels = None if self.labels is None else self.labels.to(device)
        return Batch(video, vft, list(self.paths), labels, skipped_paths=list(self.skipped_paths))


def _torch_resize(clip: Tensor, box: Box, hw: tuple[int, int]) -> Tensor:
    """The CPU path's own ops on one clip: uint8 [T, 3, H, W] -> uint8 [T, 3, H', W']."""
    top, left, h, w = box
    return VideoTransform().resize(clip[..., top:top + h, left:left + w], hw)


def _normalize(t: VideoTransform, frames: Tensor) -> Tensor:
    """uint8 [B, T, 3, H, W] -> float32 [B, T, 3, H, W] with ``t``'s lookup table."""
    B, T = frames.shape[:2]
    return t.normalize(frames.flatten(0, 1)).view(B, T, *frames.shape[2:])


def stack_frames(clips: list[Tensor]) -> Tensor:
    """uint8 [T, 3, H_i, W_i] clips -> uint8 [B, T, 3, max H, max W], zero-padded at the bottom/right.

    Inside a DataLoader worker the result is allocated in shared memory, as torch's default
    collate does, so handing it to the main process does not copy it once more.
    """
    T, C = clips[0].shape[:2]
    H, W = max(c.shape[-2] for c in clips), max(c.shape[-1] for c in clips)
    shape = (len(clips), T, C, H, W)
    if torch.utils.data.get_worker_info() is not None:  # torch's default_collate does the same
        storage = clips[0]._typed_storage()._new_shared(len(clips) * T * C * H * W, device=clips[0].device)
        out = clips[0].new(storage).resize_(shape)
    else:
        out = torch.empty(shape, dtype=torch.uint8)
    if all(c.shape[-2:] == (H, W) for c in clips):
        return torch.stack(clips, out=out)
    out.zero_()
    for o, c in zip(out, clips):
        o[..., :c.shape[-2], :c.shape[-1]] = c
    return out


class LoaderBatch(Batch):
    """A :class:`Batch` that the DataLoader's pin thread can pin (CPU path, ``pin_memory=True``).

    The loader pins only objects with a ``pin_memory`` method, and ``Batch`` has none, so without
    this the float frames would be copied from pageable memory, synchronously.
    """

    def pin_memory(self) -> "LoaderBatch":
        return self.map(lambda t: t.pin_memory())  # map keeps video_for_task shared with video
