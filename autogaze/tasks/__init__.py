"""Tasks: models that score gazes with a reward.

``video_mae_reconstruction.VideoMAEReconstruction`` is the only task; Hydra builds it from
``autogaze/configs/task/<name>.yaml`` through ``_target_`` / ``from_config``.
"""
