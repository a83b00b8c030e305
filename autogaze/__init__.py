"""autogaze: training framework for AutoGaze (autoregressive multi-scale gazing)."""
__version__ = "0.1.0"
