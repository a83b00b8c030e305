"""Stock image ViTs that encode only the gazed patches of a video (AutoGaze's downstream side).

* ``siglip.SiglipVisionModel``: SigLIP / SigLIP2 vision towers.
* ``dinov2.Dinov2WithRegistersModel``: DINOv2 with registers.
* ``gazed.GazedViTMixin``: the shared gazed embedding, token layout and mask; see
  docs/integration.md to plug in another ViT.
"""
from .gazed import GazedViTMixin, GazedVisionOutput, GazingSettings

__all__ = ["GazedViTMixin", "GazedVisionOutput", "GazingSettings"]
