"""Gazed SigLIP / SigLIP2 vision tower (loads stock checkpoints)."""
from .modeling import SiglipVisionModel

__all__ = ["SiglipVisionModel"]
