"""Deterministic synthetic mp4 clips: textured shapes moving over textured, drifting backgrounds.

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


def make_clip(num_frames: int, size: int | tuple[int, int], seed: int) -> np.ndarray:
    """Render one clip.

    Args:
        num_frames: T.
        size: side S (square) or (H, W); each must be even (yuv420p needs even sides).
        seed: the only source of randomness.
    Returns:
        uint8 [T, H, W, 3] RGB frames.
    """
    H, W = (size, size) if isinstance(size, int) else size
    if H % 2 or W % 2:
        raise ValueError(f"synthetic clip sides must be even for yuv420p, got {H}x{W}")
    rng = np.random.default_rng(seed)
    # Background twice as large as the frame, so it can drift (camera motion) without wrapping.
    bg = _texture(rng, 2 * H, 2 * W) * 0.7
    bg_vel = rng.uniform(-1.5, 1.5, size=2) * max(H, W) / 64
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)

    shapes = []
    for _ in range(int(rng.integers(2, 4))):
        r = rng.uniform(0.1, 0.25) * min(H, W)
        shapes.append(dict(
            kind=int(rng.integers(0, 2)),                      # 0 disc, 1 square
            radius=r,
            pos=rng.uniform(r, [H - r, W - r]),                # (y, x) centre
            vel=rng.uniform(-3.0, 3.0, size=2) * min(H, W) / 64,
            tex=_texture(rng, H, W),
        ))

    frames = np.empty((num_frames, H, W, 3), np.uint8)
    for t in range(num_frames):
        oy = int(np.clip(H / 2 + bg_vel[0] * t, 0, H))
        ox = int(np.clip(W / 2 + bg_vel[1] * t, 0, W))
        img = bg[oy:oy + H, ox:ox + W].copy()
        for s in shapes:
            cy, cx = s["pos"] + s["vel"] * t
            # Bounce off the borders: reflect the centre into [r, side - r].
            cy = _bounce(cy, s["radius"], H)
            cx = _bounce(cx, s["radius"], W)
            if s["kind"] == 0:
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= s["radius"] ** 2
            else:
                inside = (np.abs(yy - cy) <= s["radius"]) & (np.abs(xx - cx) <= s["radius"])
            img[inside] = s["tex"][inside]
        frames[t] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return frames


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
            stream.options = {"qscale": "2"}  # near-lossless: decoded frames stay close to rendered
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


def make_synthetic_dataset(root: str | Path, n_train: int = 32, n_val: int = 8, num_frames: int = 16,
                           size: int | tuple[int, int] = 224, seed: int = 0) -> Path:
    """Write ``root/train/clip_00000.mp4 ...`` and ``root/val/clip_00000.mp4 ...``; return ``root``.

    Existing files are overwritten, so calling twice with the same arguments gives the same bytes.
    """
    root = Path(root)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            frames = make_clip(num_frames, size, clip_seed(seed, split, i))
            write_mp4(root / split / f"clip_{i:05d}.mp4", frames)
    return root


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="dataset root to create (gets train/ and val/)")
    p.add_argument("--n-train", type=int, default=32)
    p.add_argument("--n-val", type=int, default=8)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    root = make_synthetic_dataset(a.out, a.n_train, a.n_val, a.frames, a.size, a.seed)
    print(f"wrote {a.n_train} train + {a.n_val} val clips ({a.frames}x{a.size}x{a.size}) to {root}")


if __name__ == "__main__":
    main()
