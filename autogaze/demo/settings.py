"""How big the demo is and where it writes: the :class:`Demo` dataclass, and the settings file
through which a child process (a second GRPO run) gets the same settings."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Demo:
    """Where the demo writes and how big it is. Every field has a CPU-sized default.

    The sizes were chosen by measurement (docs/results.md): NTP imitates its greedy labels on
    held-out clips only with thousands of training clips (192 clips: val top-1 0.22 against train
    0.73), so the default labels 3072 clips, which the tiny MAE does in about 2 minutes on 2 cores.
    """

    root: Path = Path(".")                # data/ and exps/ are created under it
    n_train: int = 3072                   # synthetic training clips (labelled for NTP)
    n_val: int = 64                       # held-out clips (loss curves, imitation, overlay)
    clip_len: int = 8                     # frames per clip (upstream: 16)
    frame_size: int = 64                  # pixels; scales 32+64 -> 4 + 16 = 20 patches per frame
    scales: str = "32+64"
    pan_fraction: float = 0.25            # share of synthetic clips with a panning camera
    object_radius: tuple[float, float] = (0.1, 0.25)  # synthetic objects' half-size range (share of the side)
    mae_steps: int = 3000                 # optimizer steps of the small VideoMAE (see demo_mae.yaml)
    # The MAE's training gazes split each clip's random budget over frames by Dirichlet(w, 1, ..., 1):
    # frame 0 gets most, later frames few, so rebuilding a later frame pays only by copying the
    # static background from earlier frames (docs/results.md, "The MAE did not use earlier frames").
    # 0 = the uniform split (every frame alike), with which the tiny MAE never learned to copy.
    mae_first_frame_weight: float = 30.0
    # Hydra overrides of the task's architecture (the proof preset widens the MAE's decoder). Every stage
    # that builds the task gets them (mae, ntp, grpo, rl_only), since each loads the MAE's weights.
    task_extra: tuple[str, ...] = ()
    ntp_steps: int = 2000                 # optimizer steps of NTP (600: held-out loss 0.999 vs 0.982 at 2000)
    ntp_lr: float = 2e-3                  # NTP's Adam lr, linear decay (seed command: 5e-4, for many more steps)
    # The gaze model's width (vision encoder, connector and decoder) and decoder layers, in NTP, GRPO and
    # RL only. 64 x 2 (~0.2M parameters) fits make demo's 15 minutes; a larger one needs more clips than
    # 3072 to gain (docs/results.md, "Where NTP stops short of its labels").
    gaze_width: int = 64
    gaze_layers: int = 2
    # Soft NTP targets: the labeller records each greedy step's best candidates (label_top_candidates)
    # and NTP spreads its target over them by softmax(-(loss - best) / ntp_soft_label_temperature).
    # 0 / 0.0 = upstream's hard labels.
    label_top_candidates: int = 0
    # Extra ``python -m autogaze.label`` arguments, e.g. the budget flags (--ratio-strategy ...);
    # () = the paper's budgets: clip ratio ~ Exp(10) in [0.02, 0.2], split 10:3 over frames.
    label_extra: tuple[str, ...] = ()
    ntp_soft_label_temperature: float = 0.0
    eval_ratio: float = 0.2               # NTP's validation ratio (4 of 20 patches per frame)
    compare_ratios: tuple[float, ...] = (0.1, 0.2)  # ratios of the greedy-label comparison (2 and 4 patches)
    # K, the gaze tokens one decoder position predicts (seed commands and released model: 10). With
    # K=10 a frame's first ten gazes come from one position, blind to each other. Over 3 seeds, after
    # 600 GRPO steps, K=1 needs 1.66x fewer patches than random and K=10 1.49x; NTP alone 1.21x and
    # 1.04x (docs/results.md, "One gaze per decoder step, and GRPO length").
    multi_token_pred: int = 1
    grpo_steps: int = 300                 # GRPO optimizer steps (NTP+RL and RL only), of grpo_batch clips
    grpo_ratio: float = 0.2               # GRPO's video ratio cap (seed command: 0.75)
    # G rollouts per clip and clips per step (seed command: 12 and 64, micro-batches of 2 kept). From
    # one NTP checkpoint (K=10, before the clip and MAE fixes), 300 steps each: G=8 x 8 clips, gamma
    # 0.995 gained nothing at ratios <= 0.2; G=16 x 4 clips, gamma 0.9 lowered the loss at every ratio
    # (docs/results.md, "GRPO settings"). At K=1, 8 clips x 300 steps gave 1.71 +- 0.13x over 3 seeds
    # against 4 clips x 600 steps' 1.66 +- 0.24x: the same rollouts and cost, and half the seed spread
    # ("Eight clips per GRPO step").
    grpo_group: int = 16
    grpo_batch: int = 8
    grpo_discount: float = 0.9            # gamma per real gaze (seed: 0.995): credit stays near the frame
    grpo_lr: float = 1e-3                 # Adam; 3e-3 diverged (loss at 0.2: 1.001 vs NTP 0.982)
    grpo_optimizer: str = "adam"          # seed command: the yaml's sgd
    # sampling temperature start/end (seed: 3 -> 0.3). At lr 1e-3, 0.5 kept the gain at ratio 0.3 that
    # 1.0 lost (one run each); nearer the greedy decoding the evaluation uses.
    grpo_temp: tuple[float, float] = (0.5, 0.5)
    seed: int = 0
    procs: int = 2                        # processes for the labeller shards and the two GRPO runs
    # torch threads of the demo's own process, for the stages it runs alone (mae, ntp, evaluate); it drops
    # to 1 while a second process runs beside it, and shards and second processes always use 1. At the
    # demo's sizes 1 is fastest; at the proof preset's 128-px frames 2 threads train the MAE faster.
    threads: int = 1
    extra_overrides: list[str] = field(default_factory=list)  # appended to every composed experiment
    data_dir: Path | None = None          # user videos (--data-root); default: synthetic clips
    real_videos: Path | None = None       # real videos for the real-clip evaluation (default: root/data/real_videos)
    curve_ratios: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)  # 1, 2, 3, 4, 6, 10 gazes per frame
    thresholds: tuple[float, ...] = ()    # Table 3 losses; () = the random baseline's loss at eval_ratio
    # adaptive stopping: task-loss requirements tried (0.7 is upstream's inference default); the demo MAE's
    # l1 runs from about 1.1 (nothing gazed) to 0.5 (everything gazed)
    taus: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65)
    preset: str = "demo"                  # the PRESETS entry these sizes came from (recorded, not read)

    @property
    def tokens_per_frame(self) -> int:
        return sum((int(s) // 16) ** 2 for s in self.scales.split("+"))

    def world(self):
        """The synthetic world (:class:`autogaze.datasets.synthetic.World`) these settings describe."""
        from autogaze.datasets.synthetic import World  # the settings stay importable without the data stack

        return World(pan_fraction=self.pan_fraction, radius=tuple(self.object_radius))

    @property
    def data(self) -> Path:
        """The train/ + val/ root the experiments read."""
        if self.data_dir is None:
            return self.root / "data" / "synthetic"
        if (self.data_dir / "train").is_dir() and (self.data_dir / "val").is_dir():
            return self.data_dir
        return self.root / "data" / "user"  # a flat folder of videos, cut into clips by stage data

    @property
    def exps(self) -> Path:
        return self.root / "exps"

    @property
    def labels(self) -> Path:  # never written into a user's own folder
        return self.data / "gazing_labels.json" if self.data_dir is None else self.root / "data" / "gazing_labels.json"

    @property
    def val_labels(self) -> Path:
        """Greedy labels of the val clips: only for the imitation metrics, never trained on."""
        return self.labels.with_name("val_gazing_labels.json")

    @property
    def real_video_dir(self) -> Path:
        return self.real_videos if self.real_videos is not None else self.root / "data" / "real_videos"

    @property
    def real_clips(self) -> Path:
        """The real videos cut into the demo's clip geometry (every clip in val/)."""
        return self.root / "data" / "real_clips"

    @property
    def task_weights(self) -> Path:
        return self.exps / "demo_mae" / "checkpoint_latest_task.pt"


# Named sizes for ``python -m autogaze.demo --preset NAME``: each entry overrides Demo's defaults.
# "proof" is the geometry where the policy has room to matter (16 frames, 3 scales, 84 patches per
# frame). The labeller dominated its cost (about 3 s per clip per core with the wider MAE decoder below,
# exact search), so it labels with stochastic greedy: 16 random candidates per step, 4.5x cheaper, with
# labels whose loss is 8% of the way from the exact search's to random picks'. Its own process runs 2
# threads (the MAE at 128 px trains faster so). Measured on seed 0 it still takes 125 minutes on 2 cores,
# over the 90 it was sized for, and its gaze model does not learn the labels (docs/results.md,
# "--preset proof end to end").
# At 128 px the tiny MAE's decoder (32 wide, 1 layer) had not learned to copy earlier frames after 3000
# steps; 64 wide x 2 layers does after 2000 (docs/results.md, "Two bugs in the synthetic pipeline"). With
# transformers' N(0, 0.02) start it stayed near its blurry plateau for few gazes (random at 0.2: 0.956,
# full 0.561); the xavier start leaves it (0.710 and 0.458).
PROOF_MAE_DECODER = ("task.recon_model_config.decoder_hidden_size=64",
                     "task.recon_model_config.decoder_num_hidden_layers=2",
                     "task.recon_model_config.decoder_intermediate_size=128",
                     "task.recon_model_config.weight_init=xavier")
# "large" keeps the demo's geometry with a gaze model 128 wide with 3 layers (~0.6M parameters): it needs
# twice the labelled clips to generalise, trains NTP twice as long at half the lr, and GRPO at lr 3e-4
# (1e-3 raised its loss). Paired on the demo's 3 seeds with their MAEs, NTP+RL needed 2.03 +- 0.01x
# fewer patches than random; end to end, with MAEs of its own, 1.91 +- 0.05x (about 35 minutes per seed
# on 2 cores; docs/results.md, "--preset large end to end").
PRESETS: dict[str, dict[str, object]] = {
    "demo": {},
    "large": dict(n_train=6144, gaze_width=128, gaze_layers=3, ntp_steps=4000, ntp_lr=1e-3, grpo_lr=3e-4),
    "proof": dict(n_train=2048, clip_len=16, frame_size=128, scales="32+64+128", threads=2,
                  mae_steps=2000, task_extra=PROOF_MAE_DECODER, label_extra=("--candidate-sample", "16"),
                  ntp_steps=1500, grpo_steps=200),
}


def preset(name: str, **fields) -> Demo:
    """A Demo with the sizes of ``PRESETS[name]``; ``fields`` (root, seed, ...) go on top."""
    if name not in PRESETS:
        raise ValueError(f"--preset {name!r}: unknown preset; choose one of {sorted(PRESETS)}")
    return Demo(**{**PRESETS[name], **fields, "preset": name})


def settings_argv(demo: Demo) -> list[str]:
    """Write ``demo`` to ``exps/demo_settings.json``; the arguments that rebuild it in a child process."""
    path = demo.exps / "demo_settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = {f.name: getattr(demo, f.name) for f in dataclasses.fields(demo)}
    path.write_text(json.dumps(raw, default=str, indent=1))
    return ["--from-settings", str(path)]


# fields that may differ between two runs into one root: where things are, and how many processes
_NOT_SIZES = ("root", "procs", "threads", "real_videos")


def claim_root(demo: Demo) -> None:
    """Record ``demo``'s settings under its root, or refuse if the root holds another run's outputs.

    Stages skip what exists, so a second run with other sizes (``--preset proof`` into a root that
    ``make demo`` filled, or another seed) would silently mix the two runs' data and models.
    """
    path = demo.exps / "demo_settings.json"
    if path.is_file():
        old = load_settings(path)
        diff = [f"{k}: {getattr(old, k)!r} -> {getattr(demo, k)!r}" for k in (f.name for f in dataclasses.fields(Demo))
                if k not in _NOT_SIZES and getattr(old, k) != getattr(demo, k)]
        if diff:
            raise ValueError(f"--root {demo.root}: it holds a demo run with other settings ({'; '.join(diff)}); "
                             "its stages would be reused. Use another --root, or the same preset, seed and overrides.")
    settings_argv(demo)


def load_settings(path: str | Path) -> Demo:
    raw = json.loads(Path(path).read_text())
    for key in ("root", "data_dir", "real_videos"):
        if raw.get(key) is not None:
            raw[key] = Path(raw[key])
    for f in dataclasses.fields(Demo):
        if isinstance(raw.get(f.name), list) and f.name != "extra_overrides":  # JSON lists back to tuples
            raw[f.name] = tuple(raw[f.name])
    known = {f.name for f in dataclasses.fields(Demo)}
    return Demo(**{k: v for k, v in raw.items() if k in known})
