"""Gazed DINOv2-with-registers tower (loads stock checkpoints)."""
from .modeling import Dinov2WithRegistersModel

__all__ = ["Dinov2WithRegistersModel"]
