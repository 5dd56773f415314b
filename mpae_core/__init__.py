"""MPAE core: the model, its losses, inference, checkpoints and image loading (no Qt, no training loop)."""
from .config import MPAEConfig, PRESETS, preset_config
from .errors import BackboneWeightsError, CheckpointError, MPAEError

__version__ = "0.1.0"
__all__ = ["MPAEConfig", "PRESETS", "preset_config", "MPAEError", "CheckpointError", "BackboneWeightsError"]
