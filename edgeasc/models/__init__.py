"""Model families of edgeasc and their registry.

Families: `cpmobile` (the DCASE 2024/2025 baseline network) and `sscp_mobile` (the seed's student, every 3x3
conv split into summed 3x1 and 1x3 branches). Build with `create_model(name, **overrides)`; rebuild a
checkpointed model with `model_from_config(ckpt["model_config"])`.
"""

from edgeasc.models import cpmobile as _cpmobile  # noqa: F401  (registers the cpmobile family)
from edgeasc.models import sscp_mobile as _sscp_mobile  # noqa: F401  (registers the sscp_mobile family)
from edgeasc.models import passt as _passt  # noqa: F401  (registers the PaSST teachers)
from edgeasc.models.layers import make_divisible
from edgeasc.models.registry import create_model, is_model, list_models, model_from_config, register_model

__all__ = ["create_model", "is_model", "list_models", "make_divisible", "model_from_config", "register_model"]
