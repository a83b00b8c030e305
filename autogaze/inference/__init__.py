"""Inference over whole videos: decoding, resize rule, chunked gazing, result files, overlay, summary.

The CLI is ``python -m autogaze.gaze``; the Python entry point is ``gaze_video``.
"""
from autogaze.inference.geometry import FrameGeometry
from autogaze.inference.pipeline import gaze_video
from autogaze.inference.result import FrameGazes, GazeResult
from autogaze.inference.video_io import VideoError, VideoInfo, probe_video

__all__ = ["FrameGazes", "FrameGeometry", "GazeResult", "VideoError", "VideoInfo", "gaze_video", "probe_video"]
