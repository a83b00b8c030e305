"""Deterministic synthetic mp4 clips: textured shapes moving over textured backgrounds, with masks.

Most clips have a static camera (only the objects move); a share pan the camera. Every clip is
written with its per-pixel object ids beside it (``clip_00000_masks.npz``), for object-hit metrics.

Used by the tests, the data benchmark and the default demo run, so that everything works without the
real training videos. Each clip is a pure function of ``(seed, split, index)``: the pixels written
are identical on every call, and so are the mp4 bytes (mpeg4 encoder, one thread, no timestamps from
the wall clock). Only ``numpy`` and PyAV are needed; decord reads the files back.

CLI::

    python -m autogaze.datasets.synthetic OUT --n-train 32 --n-val 8 --frames 16 --size 224
"""
from __future__ import annotations

import argparse
import zlib
from dataclasses import dataclass
from typing import NamedTuple
from pathlib import Path

import av
import numpy as np

FPS = 8


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A colourful sum of random oriented gratings, float32 [h, w, 3] in [0, 1].

    Gratings (rather than white noise) survive mpeg4 compression and give the gaze model
    structure at every scale.
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w, 3), np.float32)
    for _ in range(3):
        freq = rng.uniform(0.02, 0.25)
        theta = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)  # [h, w]
        colour = rng.uniform(0.2, 1.0, size=3).astype(np.float32)
        out += wave[..., None] * colour
    out = (out - out.min()) / (out.max() - out.min() + 1e-6)
    return out


@dataclass(frozen=True)
class World:
    """What a synthetic clip looks like. Each clip draws its own values from these ranges.

    pan_fraction: share of clips whose camera pans (the background drifts); the rest have a static
        camera, so only the objects change and most patches are predictable from the previous frame,
        as in most real video.
    num_objects: (lo, hi) objects per clip, inclusive.
    radius: (lo, hi) object half-size as a fraction of the shorter side.
    speed: (lo, hi) object speed in pixels per frame at 64 px (scaled with the frame).
    pan_speed: maximum background drift in pixels per frame at 64 px (panning clips only).
    background_gain: background brightness factor (< 1 keeps objects visible against it).
    """

    pan_fraction: float = 0.25
    num_objects: tuple[int, int] = (1, 3)
    radius: tuple[float, float] = (0.1, 0.25)
    speed: tuple[float, float] = (1.0, 3.0)
    pan_speed: float = 1.5
    background_gain: float = 0.7


class RenderedClip(NamedTuple):
    """frames uint8 [T, H, W, 3] RGB; masks uint8 [T, H, W] (0 = background, k = k-th object, later
    objects drawn over earlier ones); pans: whether the camera pans in this clip."""

    frames: np.ndarray
    masks: np.ndarray
    pans: bool


def render_clip(num_frames: int, size: int | tuple[int, int], seed: int, world: World = World()) -> RenderedClip:
    """Render one clip and its object masks.

    Args:
        num_frames: T.
        size: side S (square) or (H, W); each must be even (yuv420p needs even sides).
        seed: the only source of randomness.
        world: the ranges the clip's camera and objects are drawn from.
    Returns:
        RenderedClip(frames, masks, pans).
    """
    H, W = (size, size) if isinstance(size, int) else size
    if H % 2 or W % 2:
        raise ValueError(f"synthetic clip sides must be even for yuv420p, got {H}x{W}")
    rng = np.random.default_rng(seed)
    # Background twice as large as the frame, so a panning camera never wraps.
    bg = _texture(rng, 2 * H, 2 * W) * world.background_gain
    pans = rng.uniform() < world.pan_fraction
    bg_vel = rng.uniform(-world.pan_speed, world.pan_speed, size=2) * max(H, W) / 64 if pans else np.zeros(2)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)

    shapes = []
    for _ in range(int(rng.integers(world.num_objects[0], world.num_objects[1] + 1))):
        r = rng.uniform(*world.radius) * min(H, W)
        angle = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(*world.speed) * min(H, W) / 64
        shapes.append(dict(
            kind=int(rng.integers(0, 2)),                      # 0 disc, 1 square
            radius=r,
            pos=rng.uniform(r, [H - r, W - r]),                # (y, x) centre
            vel=speed * np.array([np.sin(angle), np.cos(angle)]),
            tex=_texture(rng, H, W),
        ))

    frames = np.empty((num_frames, H, W, 3), np.uint8)
    masks = np.zeros((num_frames, H, W), np.uint8)
    for t in range(num_frames):
        oy = int(np.clip(H / 2 + bg_vel[0] * t, 0, H))
        ox = int(np.clip(W / 2 + bg_vel[1] * t, 0, W))
        img = bg[oy:oy + H, ox:ox + W].copy()
        for k, s in enumerate(shapes, start=1):
            cy, cx = s["pos"] + s["vel"] * t
            # Bounce off the borders: reflect the centre into [r, side - r].
            cy = _bounce(cy, s["radius"], H)
            cx = _bounce(cx, s["radius"], W)
            if s["kind"] == 0:
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= s["radius"] ** 2
            else:
                inside = (np.abs(yy - cy) <= s["radius"]) & (np.abs(xx - cx) <= s["radius"])
            img[inside] = s["tex"][inside]
            masks[t][inside] = k
        frames[t] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return RenderedClip(frames, masks, bool(pans))


def make_clip(num_frames: int, size: int | tuple[int, int], seed: int, world: World = World()) -> np.ndarray:
    """``render_clip`` without the masks: uint8 [T, H, W, 3] RGB frames."""
    return render_clip(num_frames, size, seed, world)[0]


def masks_path(video_path: str | Path) -> Path:
    """Where a clip's object masks live: ``clip_00000.mp4`` -> ``clip_00000_masks.npz``."""
    p = Path(video_path)
    return p.with_name(p.stem + "_masks.npz")


def load_masks(video_path: str | Path) -> np.ndarray:
    """The object masks written beside a synthetic clip: uint8 [T, H, W] (0 = background)."""
    with np.load(masks_path(video_path)) as z:
        return z["masks"]


def clip_pans(video_path: str | Path) -> bool:
    """Whether the camera of a synthetic clip pans (stored beside it with the masks)."""
    with np.load(masks_path(video_path)) as z:
        return bool(z["pans"])


def _bounce(c: float, r: float, side: int) -> float:
    span = max(side - 2 * r, 1e-6)
    u = (c - r) % (2 * span)
    return r + (u if u <= span else 2 * span - u)


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = FPS, codec: str = "mpeg4") -> Path:
    """Encode uint8 [T, H, W, 3] RGB frames to ``path`` (yuv420p, high quality, one thread)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    T, H, W, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.thread_count = 1  # multi-threaded encoders may split slices non-deterministically
        if codec == "mpeg4":
            # Fixed quantiser 2 on every frame. (The encoder ignores a "qscale" entry in
            # ``stream.options``: it then runs at its default bit rate and P-frame errors pile up,
            # 40 dB PSNR at frame 0 -> 28 dB at frame 15 at 128 px, so a static background
            # changes from frame to frame and the previous frame stops predicting the next.)
            stream.codec_context.qscale = 2
        for t in range(T):
            frame = av.VideoFrame.from_ndarray(frames[t], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def clip_seed(seed: int, split: str, index: int) -> int:
    """Stable per-clip seed (crc32 of the split name keeps train and val clips different)."""
    return (seed * 1_000_003 + zlib.crc32(split.encode()) * 101 + index) % (2**63)


def write_clip(path: str | Path, num_frames: int, size: int | tuple[int, int], seed: int,
               world: World = World()) -> Path:
    """Render one clip and write it to ``path`` (mp4) with its masks beside it; returns ``path``."""
    clip = render_clip(num_frames, size, seed, world)
    path = write_mp4(path, clip.frames)
    np.savez_compressed(masks_path(path), masks=clip.masks, pans=np.array(clip.pans))
    return path


def make_synthetic_dataset(root: str | Path, n_train: int = 32, n_val: int = 8, num_frames: int = 16,
                           size: int | tuple[int, int] = 224, seed: int = 0, world: World = World(),
                           workers: int = 1) -> Path:
    """Write ``root/{train,val}/clip_00000.mp4 ...``, each with its ``clip_00000_masks.npz``
    (``masks``: uint8 [T, H, W] object ids; ``pans``: whether the camera pans); return ``root``.

    Existing files are overwritten, so calling twice with the same arguments gives the same bytes.
    Every clip is a function of its own seed, so ``workers`` processes write the same files as one.
    """
    root = Path(root)
    jobs = []
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        jobs += [(root / split / f"clip_{i:05d}.mp4", num_frames, size, clip_seed(seed, split, i), world)
                 for i in range(n)]
    if workers <= 1:
        for job in jobs:
            write_clip(*job)
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(write_clip, *zip(*jobs), chunksize=max(1, len(jobs) // (8 * workers))))
    return root


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="dataset root to create (gets train/ and val/)")
    p.add_argument("--n-train", type=int, default=32)
    p.add_argument("--n-val", type=int, default=8)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pan-fraction", type=float, default=World.pan_fraction, help="share of panning clips")
    a = p.parse_args(argv)
    root = make_synthetic_dataset(a.out, a.n_train, a.n_val, a.frames, a.size, a.seed, World(pan_fraction=a.pan_fraction))
    print(f"wrote {a.n_train} train + {a.n_val} val clips ({a.frames}x{a.size}x{a.size}) to {root}")


if __name__ == "__main__":
    main()
