"""Greedy gaze labels for NTP (paper section 3.2): ``python -m autogaze.label`` (see cli.py)."""
from autogaze.labeling.budgets import LabelBudget, clip_generator, sample_clip_budget
from autogaze.labeling.greedy import ClipCache, ClipLabels, FrameScorer, frame_scorer, greedy_frame, label_clip

__all__ = ["ClipCache", "ClipLabels", "FrameScorer", "frame_scorer", "LabelBudget", "clip_generator", "greedy_frame", "label_clip",
           "sample_clip_budget"]
