"""The synthetic TAU22 stand-in (docs/synthetic_data.md): presets (sizes, difficulty), scenes (class
prototypes), devices (device chains), dsp and render (one recording), layout (locations, folds, splits) and
generate (`generate_dataset`, the files in the TAU22 layout).

The names of the former edgeasc/synth.py are re-exported here for one release (docs/layout.md).
"""


from edgeasc.synth.presets import (
    DEFAULT_DIFFICULTY, Difficulty, EXTRA_TRAIN_DEVICES, GENERATOR_VERSION, PIECES_PER_SEGMENT,
    PIECE_SAMPLES, REAL_LEVEL_GAIN_DB, SAMPLE_RATE_HZ, SCALES, SEGMENT_SAMPLES, SEGMENT_SECONDS,
    SPLIT_PERCENTS, ScalePreset,
)
from edgeasc.synth.scenes import (
    PARAM_NAMES, SCENE_PARAMS, SceneParam, scene_prototype,
)
from edgeasc.synth.devices import (
    DEVICE_CHAINS, DeviceChain,
)
from edgeasc.synth.render import (
    render_clean_segment, render_device,
)
from edgeasc.synth.layout import (
    SegmentPlan, make_splits, plan_dataset,
)
from edgeasc.synth.generate import (
    FILENAME_RE, SynthSummary, generate_dataset, logger, sample_segment_params,
)

__all__ = [
    "DEFAULT_DIFFICULTY", "DEVICE_CHAINS", "DeviceChain", "Difficulty", "EXTRA_TRAIN_DEVICES",
    "FILENAME_RE", "GENERATOR_VERSION", "PARAM_NAMES", "PIECES_PER_SEGMENT", "PIECE_SAMPLES",
    "REAL_LEVEL_GAIN_DB", "SAMPLE_RATE_HZ", "SCALES", "SCENE_PARAMS", "SEGMENT_SAMPLES", "SEGMENT_SECONDS",
    "SPLIT_PERCENTS", "ScalePreset", "SceneParam", "SegmentPlan", "SynthSummary", "generate_dataset",
    "logger", "make_splits", "plan_dataset", "render_clean_segment", "render_device",
    "sample_segment_params", "scene_prototype",
]
