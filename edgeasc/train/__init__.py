"""train: see loop.py.

The names of the former edgeasc/train.py are re-exported here for one release (docs/layout.md).
"""

from edgeasc.train.loop import (  # noqa: F401
    BEST_FILE, CURVES_FILE, DEBIAS_MIN_START_WEIGHT, MODEL_FILE, STATE_FILE, StepHook, TrainResult,
    batches_per_epoch, debias_batchnorm, get_lr, resolved_config_of, select_devices, split_holdout, train,
    warmup_warning,
)
