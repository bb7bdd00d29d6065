"""synth: see generate.py.

The names of the former edgeasc/synth.py are re-exported here for one release (docs/layout.md).
"""

from edgeasc.synth.generate import (  # noqa: F401
    DEFAULT_DIFFICULTY, DEVICE_CHAINS, DeviceChain, Difficulty, EXTRA_TRAIN_DEVICES, FILENAME_RE,
    GENERATOR_VERSION, PARAM_NAMES, PIECES_PER_SEGMENT, PIECE_SAMPLES, REAL_LEVEL_GAIN_DB, SAMPLE_RATE_HZ,
    SCALES, SCENE_PARAMS, SEGMENT_SAMPLES, SEGMENT_SECONDS, SPLIT_PERCENTS, ScalePreset, SceneParam,
    SegmentPlan, SynthSummary, generate_dataset, logger, make_splits, plan_dataset, render_clean_segment,
    render_device, sample_segment_params, scene_prototype,
)
