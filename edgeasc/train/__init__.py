"""Training (docs/training.md): loop (the training loop, one function, nanoGPT style), clips (what a run trains
on), batchnorm (debiasing a short run), runs (a run folder: state, best epoch, resume checks), distill (the KD
loss and teacher logits), teachers (training and averaging teachers) and qat (quantisation-aware training and
the int8 weight primitives the export shares).

The names of the former edgeasc/train.py are re-exported here for one release (docs/layout.md).
"""


from edgeasc.train.loop import (
    CURVES_FILE, MODEL_FILE, StepHook, TrainResult, get_lr, train, warmup_warning,
)
from edgeasc.train.clips import (
    batches_per_epoch, select_devices, split_holdout,
)
from edgeasc.train.batchnorm import (
    DEBIAS_MIN_START_WEIGHT, debias_batchnorm,
)
from edgeasc.train.runs import (
    BEST_FILE, STATE_FILE, resolved_config_of,
)

__all__ = [
    "BEST_FILE", "CURVES_FILE", "DEBIAS_MIN_START_WEIGHT", "MODEL_FILE", "STATE_FILE", "StepHook",
    "TrainResult", "batches_per_epoch", "debias_batchnorm", "get_lr", "resolved_config_of",
    "select_devices", "split_holdout", "train", "warmup_warning",
]
