"""Gaze a video with AutoGaze and write the gazes, an overlay video and a summary plot.

    python -m autogaze.gaze VIDEO.mp4 --checkpoint DIR_OR_HF_ID --gazing-ratio 0.75 \
        --task-loss-requirement 0.7 --out OUT/

The work happens in ``autogaze.inference`` (``gaze_video``); this module is argument parsing,
checkpoint loading and error reporting. User errors (bad video, bad checkpoint, bad option) print
one ``autogaze.gaze: error: ...`` line and exit with status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import torch

from autogaze.inference.encode import FAMILIES, FeatureSink, load_tower, tower_preparer
from autogaze.inference.geometry import RESIZE_MODES, FrameGeometry
from autogaze.inference.overlay import OverlayWriter
from autogaze.inference.pipeline import gaze_video
from autogaze.inference.summary import save_summary
from autogaze.inference.video_io import VideoError, probe_video
from autogaze.models.autogaze import AutoGaze, AutoGazeImageProcessor
from autogaze.models.autogaze.anyres import AnyResPlan
from autogaze.utils.parsing import ConfigError, parse_int_list
from autogaze.utils.runtime import tune_cpu

PROG = "python -m autogaze.gaze"
EXIT_USER_ERROR = 2  # argparse's status for bad usage; used for every user error
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name

EPILOG = """\
rules:
  chunks   the video is cut into max_num_frames (16) frame chunks, each gazed as an independent clip
           (fresh context). The last chunk holds the remaining frames; it runs as a shorter clip, or,
           when batched with full chunks (--batch-chunks > 1), is padded by repeating its last frame
           and the padded frames' gazes are dropped (the model is causal in time: no effect).
  resize   crop (default): shortest edge -> S, centre crop S x S; squash: resize to S x S.
           S = 224, or max(--target-scales) in any-resolution mode, where the square is tiled
          , gazed per tile (budget per tile) and ids are in the target token space.
  boxes    x0,y0,x1,y1 in pixels of the ORIGINAL frame: a patch of scale s covers S/(s/patch)
           pixels of the square, mapped back through the crop and resize.
  stream   frames are gazed one at a time with the decode state, reset every 16 frames:
           same gazes as the offline run.
outputs (in --out):
  gazes.json / gazes.npz   counts per frame, ids per chunk (t*P + local), and per gaze: frame, id
                           (frame*P + local), local, scale, row, col, box
  overlay.mp4              gazed patches bright, the rest dimmed, outline colour per scale
  summary.png              gazes per frame by scale, share of patches kept per scale
  features.npz             with --encoder: per chunk c, chunk{c}_features [N_real, D] (the gazed
                           patches' features, gaze order) and chunk{c}_ids [N_real] (t*P + local)
"""


class UserError(Exception):
    """A problem the user can fix (path, checkpoint, option); printed without a traceback."""


# ---------------------------------------------------------------------------------- arguments
def _ratio(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {v}")
    return v


def _requirement(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _scales(text: str) -> list[int]:
    try:
        return sorted(parse_int_list("--target-scales", text))
    except ConfigError as e:
        raise argparse.ArgumentTypeError(e.rule) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Gaze a video of any length and resolution with AutoGaze.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", metavar="VIDEO", help="input video file (anything FFmpeg decodes)")
    p.add_argument("--checkpoint", required=True, metavar="DIR_OR_HF_ID",
                   help="save_pretrained folder, or a Hugging Face id such as nvidia/AutoGaze")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder (created)")
    p.add_argument("--gazing-ratio", type=_ratio, default=0.75, metavar="R",
                   help="max share of a frame's patches to gaze, in (0, 1] (default 0.75)")
    p.add_argument("--task-loss-requirement", type=_requirement, default=0.7, metavar="TAU",
                   help="stop a frame once the predicted task loss <= TAU; 'none' = never (default 0.7)")
    p.add_argument("--format", nargs="+", choices=("json", "npz"), default=["json", "npz"],
                   help="gaze file format(s) (default: json npz)")
    p.add_argument("--resize", choices=RESIZE_MODES, default="crop", help="how frames become square (see rules)")
    p.add_argument("--target-scales", type=_scales, metavar="S1+S2+S3+S4",
                   help="any-resolution mode: the downstream ViT's scales, e.g. 56+112+196+392")
    p.add_argument("--target-patch-size", type=_positive, metavar="P",
                   help="any-resolution mode: the downstream ViT's patch size, e.g. 14")
    p.add_argument("--stream", action="store_true", help="gaze frame by frame with the decode state")
    p.add_argument("--batch-chunks", type=_positive, default=1, metavar="N", help="chunks per forward (default 1)")
    p.add_argument("--device", default="auto", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16 = autocast (default fp32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator (used with --sample)")
    p.add_argument("--sample", action="store_true", help="sample gazes (multinomial) instead of greedy")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (with --sample)")
    p.add_argument("--max-frames", type=_positive, metavar="N", help="gaze only the first N frames")
    p.add_argument("--dim", type=float, default=0.3, help="brightness of un-gazed pixels in the overlay (default 0.3)")
    p.add_argument("--no-overlay", action="store_true", help="skip overlay.mp4")
    p.add_argument("--no-summary", action="store_true", help="skip summary.png")
    p.add_argument("--encoder", metavar="DIR",
                   help="also encode the gazed patches with this stock SigLIP / DINOv2-with-registers checkpoint "
                        "folder and write features.npz (kept features per chunk)")
    p.add_argument("--encoder-family", choices=FAMILIES, help="the encoder's family (default: from its config)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or report")
    return p


# ---------------------------------------------------------------------------------- loading
def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def load_checkpoint(ref: str, device: torch.device) -> tuple[AutoGaze, AutoGazeImageProcessor | None]:
    """A local save_pretrained folder or a Hugging Face id -> (model on ``device`` in eval, processor or None)."""
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"checkpoint {ref} is a file; pass the folder holding config.json and model.safetensors")
        if not (path / "config.json").is_file():
            raise UserError(f"checkpoint folder {ref} has no config.json (expected a save_pretrained folder)")
        source = str(path)
    elif HUB_ID.match(ref):
        source = ref
    else:
        raise UserError(f"checkpoint not found: {ref} (neither a local folder nor a Hugging Face id owner/name)")
    try:
        model = AutoGaze.from_pretrained(source)
    except OSError as e:
        if source != ref:
            raise UserError(f"cannot load checkpoint {ref}: {e}") from None
        if _hub_offline():
            raise UserError(f"checkpoint {ref} is not a local folder and not in the Hugging Face cache, and the hub "
                            "is offline (HF_HUB_OFFLINE is set); unset HF_HUB_OFFLINE to download it, or pass a "
                            "local folder") from None
        raise UserError(f"cannot download checkpoint {ref} from the Hugging Face hub: {e}") from None
    except (ValueError, KeyError) as e:  # a config.json that is not an AutoGaze config
        raise UserError(f"checkpoint {ref} is not a valid AutoGaze checkpoint: {e}") from None
    try:
        processor = AutoGazeImageProcessor.from_pretrained(source)
    except OSError:  # no preprocessor_config.json: the default normalisation is used
        processor = None
    return model.to(device).eval(), processor


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"--device {name!r} is not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for CUDA, but CUDA is not available; use --device cpu")
    return dev


def _feature_sink(args: argparse.Namespace, model: AutoGaze, processor, info, device: torch.device) -> FeatureSink:
    """The --encoder tower on the gaze model's square and token space (checked before any gazing)."""
    if not Path(args.encoder).is_dir():
        raise UserError(f"--encoder {args.encoder} is not a folder (a stock SigLIP / DINOv2 save_pretrained folder)")
    try:
        tower, tower_processor = load_tower(args.encoder, args.encoder_family)
    except (OSError, ValueError) as e:
        raise UserError(f"--encoder {args.encoder}: {e}") from None
    side = max(args.target_scales) if args.target_scales else model.token_space.scales[-1]
    plan = AnyResPlan.make(model.token_space, side, args.target_scales, args.target_patch_size)
    space = plan.target if plan is not None else model.token_space
    geometry = FrameGeometry.make(info.height, info.width, side, args.resize)
    try:
        return FeatureSink(tower, tower_preparer(geometry, processor, tower_processor), space,
                           model.config.max_num_frames, device, args.precision)
    except ValueError as e:
        raise UserError(f"--encoder {args.encoder}: {e}") from None


# ---------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Path]:
    """Do the work for parsed ``args``; returns the written files by kind. Raises UserError."""
    if args.stream and args.batch_chunks != 1:
        raise UserError("--stream gazes one frame at a time; it cannot be combined with --batch-chunks > 1")
    if not 0 <= args.dim <= 1:
        raise UserError(f"--dim must lie in [0, 1], got {args.dim}")
    try:
        info = probe_video(args.video)  # before loading the model: fail fast on a bad path
    except VideoError as e:
        raise UserError(str(e)) from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    device = _device(args.device)
    model, processor = load_checkpoint(args.checkpoint, device)
    if args.target_scales or args.target_patch_size:
        try:  # the model's own rules (4 scales, square side); checked before anything is written
            side = max(args.target_scales) if args.target_scales else model.token_space.scales[-1]
            AnyResPlan.make(model.token_space, side, args.target_scales, args.target_patch_size)
        except ValueError as e:
            raise UserError(f"--target-scales/--target-patch-size: {e}") from None
    features = _feature_sink(args, model, processor, info, device) if args.encoder else None
    out.mkdir(parents=True, exist_ok=True)

    files: dict[str, Path] = {}
    writer = None if args.no_overlay else OverlayWriter(out / "overlay.mp4", info.height, info.width, info.fps, args.dim)
    sinks = [s for s in (writer, features) if s is not None]

    def on_frames(frames, gazes):
        for sink in sinks:
            sink(frames, gazes)

    try:
        result = gaze_video(
            args.video, model, processor, args.gazing_ratio, args.task_loss_requirement,
            resize=args.resize, target_scales=args.target_scales, target_patch_size=args.target_patch_size,
            stream=args.stream, batch_chunks=args.batch_chunks, precision=args.precision, do_sample=args.sample,
            temperature=args.temperature, seed=args.seed, max_frames=args.max_frames, progress=not args.quiet,
            on_frames=on_frames if sinks else None)
    except VideoError as e:  # decoding failed part-way: drop the partial overlay
        if writer is not None:
            writer.close()
            writer.path.unlink(missing_ok=True)
        raise UserError(str(e)) from None
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        files["overlay"] = writer.path
    if "json" in args.format:
        files["json"] = result.save_json(out / "gazes.json")
    if "npz" in args.format:
        files["npz"] = result.save_npz(out / "gazes.npz")
    if features is not None:
        files["features"] = features.save(out / "features.npz")
    if not args.no_summary:
        files["summary"] = save_summary(result, out / "summary.png")
    if not args.quiet:
        m = result.meta()
        print(f"{info.path}: {m['num_frames']} frames ({info.width}x{info.height}) in {m['num_chunks']} chunks, "
              f"{m['num_gazes']} gazes, {100 * m['kept_ratio']:.1f}% of {result.tokens_per_frame} patches/frame kept")
        for kind, path in files.items():
            print(f"  {kind:8s} {path}")
    return files


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse printed usage + error (status 2), or --help (status 0)
        return int(e.code or 0)
    tune_cpu()
    try:
        run(args)
    except UserError as e:
        print(f"{PROG.split()[-1]}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
