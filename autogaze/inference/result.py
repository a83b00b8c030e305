"""`GazeResult`: the gazes of a whole video, and its JSON / npz files.

Shape letters: F frames of the video, K real gazes over the whole video, N_c real gazes of chunk c.
Only real gazes are kept (the model's padded slots are dropped where they are made), so no array
here needs a validity mask.

Three id forms, all built from the frame-local id ``local`` in [0, P):
* ``local``: id inside the frame, scales ascending, row-major inside a scale;
* ``ids_per_chunk[c]``: chunk-global ``t * P + local`` with t the frame inside chunk c, which is
  what the gaze model returns and what a downstream ViT fed that chunk gathers with;
* ``ids``: video-global ``frame * P + local``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autogaze.inference.geometry import FrameGeometry
from autogaze.inference.video_io import VideoInfo
from autogaze.models.autogaze.token_space import TokenSpace


@dataclass
class FrameGazes:
    """Real gazes of one frame, in gaze order (ascending ids in any-resolution mode).

    local [k] int64; scale [k] int64 index into token_space.scales (0 = coarsest);
    row/col [k] int64 inside that scale's grid; boxes [k, 4] float32 (x0, y0, x1, y1) in pixels
    of the ORIGINAL frame.
    """

    local: np.ndarray
    scale: np.ndarray
    row: np.ndarray
    col: np.ndarray
    boxes: np.ndarray


def describe_frame(local: np.ndarray, space: TokenSpace, geometry: FrameGeometry) -> FrameGazes:
    """Frame-local ids [k] -> scale, row, col and original-pixel boxes."""
    local = np.asarray(local, np.int64)
    scale = np.searchsorted(np.asarray(space.offsets[1:]), local, side="right")  # [k]
    sides = np.asarray(space.grid_sides, np.int64)[scale]
    rel = local - np.asarray(space.offsets, np.int64)[scale]
    row, col = rel // sides, rel % sides
    cell = geometry.side / sides  # a patch of scale s covers S / (s / patch) model-input pixels
    boxes = np.stack([col * cell, row * cell, (col + 1) * cell, (row + 1) * cell], -1).reshape(-1, 4)
    return FrameGazes(local, scale, row, col, geometry.to_original(boxes))


@dataclass
class GazeResult:
    """Gazes of a video. Arrays are numpy (they go to files), with the shapes of the module docstring.

    counts [F]: real gazes per frame; frame/local/scale/row/col [K]; boxes [K, 4] float32 original
    pixels; ids_per_chunk: list over chunks of [N_c] chunk-global ids in gaze order.
    token_space: the space the ids live in (the model's, or the target's in any-resolution mode).
    """

    video: VideoInfo
    geometry: FrameGeometry
    token_space: TokenSpace
    chunk_size: int
    counts: np.ndarray
    ids_per_chunk: list[np.ndarray]
    frame: np.ndarray
    local: np.ndarray
    scale: np.ndarray
    row: np.ndarray
    col: np.ndarray
    boxes: np.ndarray
    settings: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.counts.shape[0])

    @property
    def tokens_per_frame(self) -> int:
        return self.token_space.tokens_per_frame

    @property
    def ids(self) -> np.ndarray:
        """[K] video-global ids ``frame * P + local``."""
        return self.frame * self.tokens_per_frame + self.local

    @property
    def scale_px(self) -> np.ndarray:
        """[K] the scale of each gaze in pixels (e.g. 32 ... 224)."""
        return np.asarray(self.token_space.scales, np.int64)[self.scale]

    def kept_per_scale(self) -> np.ndarray:
        """[S] share of the video's patches gazed at each scale (count / (F * n_s))."""
        gazed = np.bincount(self.scale, minlength=len(self.token_space.scales))
        return gazed / (self.num_frames * np.asarray(self.token_space.counts, np.float64))

    def meta(self) -> dict:
        """Everything but the per-gaze arrays, JSON-ready."""
        ts = self.token_space
        return dict(
            video=self.video.path, num_frames=self.num_frames, height=self.video.height, width=self.video.width,
            fps=self.video.fps, chunk_size=self.chunk_size, num_chunks=len(self.ids_per_chunk),
            token_space=dict(scales=list(ts.scales), patch_size=ts.patch, grid_sides=ts.grid_sides,
                             counts=ts.counts, offsets=ts.offsets, tokens_per_frame=ts.tokens_per_frame),
            preprocess=self.geometry.as_dict(), settings=self.settings,
            num_gazes=int(self.counts.sum()), kept_ratio=float(self.counts.sum() / (self.num_frames * ts.tokens_per_frame)),
            box_format="x0,y0,x1,y1 in original-frame pixels (x right, y down), float",
        )

    # ------------------------------------------------------------------ files
    def to_json_dict(self) -> dict:
        out = self.meta()
        out["counts"] = self.counts.tolist()
        out["ids_per_chunk"] = [c.tolist() for c in self.ids_per_chunk]
        scales, boxes = self.scale_px.tolist(), np.round(self.boxes.astype(np.float64), 3).tolist()
        out["gazes"] = [
            dict(frame=f, id=i, local=loc, scale=s, row=r, col=c, box=b)
            for f, i, loc, s, r, c, b in zip(self.frame.tolist(), self.ids.tolist(), self.local.tolist(), scales,
                                             self.row.tolist(), self.col.tolist(), boxes)
        ]
        return out

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json_dict()))
        return path

    def save_npz(self, path: str | Path) -> Path:
        """Columns of the JSON ``gazes`` list as arrays; chunk ids flattened with ``chunk_offsets``
        [C + 1] (chunk c is ``chunk_ids[chunk_offsets[c]:chunk_offsets[c + 1]]``); ``meta`` is the
        JSON of ``meta()`` as a 0-d string (no pickle needed to read the file)."""
        path = Path(path)
        sizes = [len(c) for c in self.ids_per_chunk]
        np.savez_compressed(
            path, counts=self.counts, frame=self.frame, id=self.ids, local=self.local, scale=self.scale_px,
            scale_index=self.scale, row=self.row, col=self.col, box=self.boxes,
            chunk_ids=np.concatenate(self.ids_per_chunk) if sizes else np.zeros(0, np.int64),
            chunk_offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            meta=np.array(json.dumps(self.meta())),
        )
        return path


class ResultBuilder:
    """Collects per-frame gazes chunk by chunk and assembles the GazeResult."""

    def __init__(self, video: VideoInfo, geometry: FrameGeometry, space: TokenSpace, chunk_size: int, settings: dict):
        self.video, self.geometry, self.space, self.chunk_size, self.settings = video, geometry, space, chunk_size, settings
        self.frames: list[FrameGazes] = []
        self.chunk_ids: list[np.ndarray] = []

    def add_chunk(self, frames: list[FrameGazes]) -> None:
        P = self.space.tokens_per_frame
        self.frames.extend(frames)
        ids = [fg.local + t * P for t, fg in enumerate(frames)]
        self.chunk_ids.append(np.concatenate(ids) if ids else np.zeros(0, np.int64))

    def build(self) -> GazeResult:
        fs = self.frames
        counts = np.asarray([len(f.local) for f in fs], np.int64)
        cat = lambda name, empty: np.concatenate([getattr(f, name) for f in fs]) if fs else empty  # noqa: E731
        z = np.zeros(0, np.int64)
        return GazeResult(
            video=self.video, geometry=self.geometry, token_space=self.space, chunk_size=self.chunk_size,
            counts=counts, ids_per_chunk=self.chunk_ids, frame=np.repeat(np.arange(len(fs)), counts),
            local=cat("local", z), scale=cat("scale", z), row=cat("row", z), col=cat("col", z),
            boxes=cat("boxes", np.zeros((0, 4), np.float32)), settings=self.settings,
        )
