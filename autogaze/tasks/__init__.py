"""Tasks: models that score gazes with a reward.

* ``video_mae_reconstruction.VideoMAEReconstruction``: AutoGaze's multi-scale, block-causal VideoMAE
  (reward = -per-frame reconstruction loss).
* ``video_feature_reconstruction.VideoFeatureReconstruction``: a block-causal predictor rebuilds a frozen
  tower's full-gaze features (SigLIP / DINOv2 / our VideoMAE encoder) from the gazes (reward = -per-frame loss).
* ``slot_attention.SlotAttentionTask``: SlotContrast-style object slots inferred from the gazed patches of a
  frozen tower's features, recurring over frames (reward = -per-frame feature reconstruction of the slots).
* ``tube_video_mae.TubeVideoMAE``: a plain VideoMAE on 2-frame tubelets with full attention and a
  masked-tokens-only decoder, the MAE that TATS and AdaMAE train jointly with their samplers.

Hydra builds a task from ``autogaze/configs/task/<name>.yaml`` through ``_target_`` / ``from_config``.
"""
