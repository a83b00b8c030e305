"""``VideoFolder``: clips from folders of mp4 files.

``dataset.root`` lists one or more roots (``'a,b'``), each holding ``train/`` and ``val/`` with
``*.mp4`` files (sorted). Each item is decoded, made square (centre crop, see
``transforms.center_square``), optionally random-resized-cropped (one box per clip), and turned
into ``video`` (gaze-model input) and ``video_for_task`` (task input). With the default configs both
transforms are the same, so the two are one tensor object (computed once).

With ``trainer.transform_on_device`` (``set_transform_on_device``) an item stops after the decode:
it keeps the uint8 frames and the crop box (the square crop composed with the random-resized
crop, drawn from the same generator), ``collate`` returns a ``RawBatch``, and its ``to(device)``
does the resize and normalisation there, bit-identical to this file's CPU path (see
``device_transform.py``).

Bad files are skipped and counted, never replaced: ``__getitem__`` returns a :class:`Skipped`
marker (one warning per file), ``collate`` drops it and lists its path in ``Batch.skipped_paths``.
A batch whose clips are all bad has zero rows; the trainer treats it as empty.

Randomness (window position, crop box) comes from a generator seeded with (seed, epoch, index), so
an item does not depend on which worker loads it, and a resumed run sees the same pixels.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autogaze.datasets.decode import BACKENDS, BadVideo, load_clip
from autogaze.datasets.labels import collate_labels, label_key, load_labels
from autogaze.datasets.device_transform import LoaderBatch, RawBatch, RawPlan, stack_frames
from autogaze.datasets.transforms import RandomResizedCrop, VideoTransform, center_square, square_box
from autogaze.interfaces import DatasetBase
from autogaze.types import Batch
from autogaze.utils.normalization import IMAGENET_MEAN, IMAGENET_STD
from autogaze.utils.parsing import ConfigError, check_choice, check_keys, parse_scales, parse_str_list

log = logging.getLogger("autogaze.data")

#: Upstream's task processor is Vivit's defaults at the largest task scale.
TASK_PREPROCESSING = dict(do_resize=True, do_rescale=True, rescale_factor=1 / 127.5, offset=True,
                          do_normalize=True, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)


@dataclass
class DatasetConfig:
    """Every ``dataset.*`` key (upstream keys first)."""

    root: list[str]
    clip_len: int = 64
    frame_sample_rate: int = 1
    gt_gazing_pos_paths: dict = field(default_factory=lambda: {"train": None, "val": None})
    random_sample_frame: bool = False
    train_data_aug: dict = field(default_factory=lambda: {"aug_type": None})
    backend: str = "decord"       # ours: decord | pyav
    min_frames: int = 1           # ours: fewer decodable frames -> the video is skipped
    decode_resize: bool = False   # ours: resize in the decoder (faster, NOT bit-identical, see decode.py)
    tokens_per_frame: int = 265   # ours, derived: model.num_vision_tokens_each_frame (label checks)

    @classmethod
    def parse(cls, cfg: dict) -> "DatasetConfig":
        cfg = {k: v for k, v in cfg.items() if k != "_target_"}
        check_keys("dataset", cfg.keys(), cls.__dataclass_fields__)
        if "root" not in cfg:
            raise ConfigError("dataset.root", None, "is required", "dataset.root=/path/to/videos (comma-separated for several)")
        cfg["root"] = parse_str_list("dataset.root", cfg["root"], sep=",")
        c = cls(**cfg)
        for key, v in (("dataset.clip_len", c.clip_len), ("dataset.frame_sample_rate", c.frame_sample_rate)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(key, v, "must be a positive integer", f"e.g. {key}=16")
        check_choice("dataset.backend", c.backend, BACKENDS)
        aug = (c.train_data_aug or {}).get("aug_type")
        if aug not in (None, "random_resized_crop"):
            raise ConfigError("dataset.train_data_aug.aug_type", aug, "must be null or random_resized_crop",
                              "dataset.train_data_aug.aug_type=random_resized_crop")
        if c.random_sample_frame and any((c.gt_gazing_pos_paths or {}).values()):
            raise ConfigError("dataset.random_sample_frame", True, "labels describe the first clip_len frames, "
                              "so a random window would misalign them", "set dataset.random_sample_frame=False")
        return c


@dataclass
class Skipped:
    """Marker for an item that could not be decoded."""

    path: str
    reason: str


class VideoFolder(DatasetBase):
    def __init__(self, cfg: DatasetConfig, split: str, gaze_transform: VideoTransform,
                 task_transform: VideoTransform, seed: int = 0):
        self.cfg, self.split, self.seed, self.epoch = cfg, split, seed, 0
        self.gaze_transform, self.task_transform = gaze_transform, task_transform
        self.shared = gaze_transform == task_transform
        self.paths = self._list_videos(cfg.root, split)
        aug = (cfg.train_data_aug or {}) if split == "train" else {}
        self.crop = None
        if aug.get("aug_type") == "random_resized_crop":
            r = aug.get("random_resized_crop") or {}
            self.crop = RandomResizedCrop((r.get("scale_min", 0.08), r.get("scale_max", 1.0)),
                                          (r.get("ratio_min", 0.75), r.get("ratio_max", 4 / 3)))
        self.labels = None
        spec = (cfg.gt_gazing_pos_paths or {}).get(split)
        if spec:
            self.labels = load_labels(spec, cfg.clip_len, cfg.tokens_per_frame,
                                      key=f"dataset.gt_gazing_pos_paths.{split}")
            kept = [p for p in self.paths if label_key(p) in self.labels]
            if not kept:
                raise ConfigError(f"dataset.gt_gazing_pos_paths.{split}", spec,
                                  f"no label key matches a video under {cfg.root} ({split})",
                                  "labels are keyed by <dataset_dir>/<split>/<file>.mp4")
            if len(kept) < len(self.paths):
                log.warning("%s: %d of %d videos have no gaze label and are left out", split,
                            len(self.paths) - len(kept), len(self.paths))
            self.paths = kept
        self._warned: set[str] = set()
        self.on_device = False  # see set_transform_on_device

    @staticmethod
    def _list_videos(roots: list[str], split: str) -> list[str]:
        paths = []
        for root in roots:
            d = Path(root).expanduser() / split
            if not d.is_dir():
                raise ConfigError("dataset.root", root, f"has no {split}/ folder ({d})",
                                  "each root must hold train/ and val/ folders of .mp4 clips")
            found = sorted(str(p) for p in d.glob("*.mp4"))
            if not found:
                raise ConfigError("dataset.root", root, f"{d} holds no .mp4 files", "add clips or fix the path")
            paths += found
        return paths

    @classmethod
    def validate_config(cls, cfg: dict) -> DatasetConfig:
        return DatasetConfig.parse(cfg)

    @classmethod
    def from_config(cls, cfg: dict, split: str, preprocessing: dict | None = None, size: int = 224,
                    seed: int = 0, tokens_per_frame: int | None = None) -> "VideoFolder":
        c = DatasetConfig.parse(cfg)
        if tokens_per_frame is not None:
            c.tokens_per_frame = tokens_per_frame
        gaze_t = VideoTransform.from_preprocessing(preprocessing or TASK_PREPROCESSING, size=size)
        task_t = VideoTransform.from_preprocessing(TASK_PREPROCESSING, size=size)
        return cls(c, split, gaze_t, task_t, seed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_transform_on_device(self, on: bool) -> None:
        """``trainer.transform_on_device``: items keep uint8 frames and a crop box, ``collate`` returns a
        :class:`RawBatch`, and ``RawBatch.to(device)`` crops, resizes and normalises there."""
        self.on_device = bool(on)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) % 2**63)
        c = self.cfg
        try:
            frames = load_clip(path, c.clip_len, c.frame_sample_rate, c.random_sample_frame and self.split == "train",
                               g, c.backend, c.min_frames, self.gaze_transform.shortest_edge if c.decode_resize else None)
        except BadVideo as e:
            if path not in self._warned:  # one warning per file (per worker process)
                self._warned.add(path)
                log.warning("skipping unreadable video %s: %s", path, e)
            return Skipped(path, str(e))
        if self.on_device:  # the worker stops here: the training device crops and resizes (device_transform.py)
            box = square_box(*frames.shape[-2:])            # the square rule: see transforms.center_square
            if self.crop is not None:                       # the same draw from g as the CPU path's
                top, left, h, w = self.crop.box(box[2], box[3], g)
                box = (box[0] + top, box[1] + left, h, w)
            item = {"frames": frames, "box": box, "path": path}
            if self.labels is not None:
                item["labels"] = self.labels[label_key(path)]
            return item
        frames = center_square(frames)                      # the square rule: see transforms.center_square
        size = None
        if self.crop is not None:
            frames = self.crop(frames, g)
            s = self.gaze_transform.shortest_edge
            size = (s, s)
        video = self.gaze_transform(frames, size)
        video_for_task = video if self.shared else self.task_transform(frames, size)
        item = {"video": video, "video_for_task": video_for_task, "path": path}
        if self.labels is not None:
            item["labels"] = self.labels[label_key(path)]
        return item

    def collate(self, items: list) -> Batch | RawBatch:
        """Stack good items into a :class:`Batch` (a :class:`RawBatch` with ``transform_on_device``);
        undecodable ones go to ``skipped_paths``."""
        good = [it for it in items if not isinstance(it, Skipped)]
        skipped = [it.path for it in items if isinstance(it, Skipped)]
        if not good:  # every clip was bad: a zero-row batch (B=0) that still lists the skipped paths
            S = self.gaze_transform.shortest_edge
            empty = torch.empty(0, self.cfg.clip_len, 3, S, S)
            return LoaderBatch(empty, empty, [], None, skipped_paths=skipped)
        labels = None
        if "labels" in good[0]:
            labels = collate_labels([it["labels"] for it in good], self.cfg.tokens_per_frame)
        paths = [it["path"] for it in good]
        if self.on_device:
            boxes = [it["box"] for it in good]
            S = self.gaze_transform.shortest_edge
            plan = RawPlan.build(self.gaze_transform, self.task_transform, boxes,
                                 (S, S) if self.crop is not None else None)
            return RawBatch(stack_frames([it["frames"] for it in good]), boxes, plan, paths, labels, skipped)
        video = torch.stack([it["video"] for it in good])
        shared = all(it["video_for_task"] is it["video"] for it in good)
        vft = video if shared else torch.stack([it["video_for_task"] for it in good])
        return LoaderBatch(video, vft, paths, labels, skipped_paths=skipped)
