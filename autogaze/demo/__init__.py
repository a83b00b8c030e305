"""The CPU demo pipeline: ``python -m autogaze.demo`` (what ``make demo`` runs).

Each stage reads the previous stages' outputs, composes a Hydra experiment (``autogaze/configs/<name>.yaml``
plus overrides, exactly what ``python -m autogaze.train --config-name ...`` would get) and runs it.
A stage whose outputs exist is skipped, so a re-run after an interruption goes on where it stopped.

     0 data      synthetic clips + object masks  -> data/synthetic/{train,val}/*.mp4, *_masks.npz
     1 mae       small VideoMAE (dummy alg.)     -> exps/demo_mae/checkpoint_latest_task.pt
     2 labels    greedy gaze labels (train; val) -> data/synthetic/{gazing_labels,val_gazing_labels}.json
     3 ntp       NTP pre-training                -> exps/demo_ntp/checkpoint_latest_gaze/
     4 evaluate  held-out loss vs greedy labels  -> exps/demo_eval.json
     5 grpo      GRPO from the NTP checkpoint    -> exps/demo_grpo/checkpoint_latest_gaze/   (NTP+RL)
     6 rl_only   GRPO from the untrained model   -> exps/demo_rl_only/checkpoint_latest_gaze/
     7 curves    loss vs ratio, imitation        -> exps/demo_curves/{loss_vs_ratio.csv,.png,ratio_to_reach.csv,imitation.csv}
     8 adaptive  cap 0.75 + task-loss stop (tau) -> exps/demo_adaptive/adaptive.csv
     9 real      curves on real clips            -> exps/demo_real/{loss_vs_ratio.csv,ratio_to_reach.csv}
    10 overlay   gaze overlay of one val clip    -> exps/demo_overlay/overlay.mp4 (autogaze.gaze)
    11 summary   the final tables                -> exps/demo_summary.txt (printed at the end of every run)

Sizes are CPU sizes (about 13 minutes on 2 cores: 64-px frames, scales 32+64 = 20 patches per
frame, 8-frame clips, 3072 labelled training clips); the upstream command lines differ only in the
overrides listed in ``ntp_overrides`` and ``grpo_overrides``. ``make demo`` first fetches four short
real videos for stage 9 (scripts/get_real_videos.sh); without them that stage is skipped.

``--preset large`` keeps the demo's geometry with 6144 labelled clips and a gaze model 128 wide with
3 layers (NTP 4000 steps at lr 1e-3, GRPO at lr 3e-4; about 35 minutes on 2 cores). ``--preset proof`` runs the same stages at 16 frames of 128 px with scales 32+64+128 (84 patches per
frame), 2048 labelled clips and a wider MAE decoder (``PRESETS`` in settings.py); with that decoder it
needs about two hours on 2 cores, the labeller most of it (TRAINING.md).

Your own videos: ``--data-root DIR`` takes a folder with train/ and val/ of .mp4 clips as is, or
any folder of .mp4 files, which is cut into 8-frame, 64-px clips under <root>/data/user/ (every
8th clip to val).
"""
from autogaze.demo.cli import main
from autogaze.demo.experiments import compose, cpu_gaze_model_overrides, grpo_overrides, ntp_overrides, train
from autogaze.demo.settings import PRESETS, Demo, preset
from autogaze.demo.stages import STAGES, Stage, run_demo

__all__ = ["Demo", "PRESETS", "STAGES", "Stage", "compose", "cpu_gaze_model_overrides", "grpo_overrides", "main",
           "ntp_overrides", "preset", "run_demo", "train"]
