"""Structured channel pruning with AGP and KD fine-tuning (docs/pruning.md): config (the [prune] recipe),
schedule (AGP), widths (kept widths, complexity, budget search), executor (importance, Torch-Pruning,
rebuild), hook (AGP during training), plot (the pruning curve and summary) and stage (prune_checkpoint).
The int8 export and audit of the pruned model are later stages: edgeasc.pipeline.prune_and_export.

The names of the former edgeasc/prune.py are re-exported here for one release (docs/layout.md).
"""


from edgeasc.prune.config import (
    IMPORTANCE_NAMES, PruneConfig, resolve_prune_budget, resolve_prune_config,
)
from edgeasc.prune.schedule import (
    agp_schedule, agp_sparsity, agp_timing,
)
from edgeasc.prune.widths import (
    FAMILIES, budget_violations, complexity_of, family_of, keep_width, scale_widths, search_keep_ratio,
    widths_of,
)
from edgeasc.prune.executor import (
    make_importance, prune_to_widths, rebuild,
)
from edgeasc.prune.hook import (
    AGPPruningHook,
)
from edgeasc.prune.plot import (
    curve_points, format_prune_summary, plot_pruning_curve,
)
from edgeasc.prune.stage import (
    CURVE_PNG, MODEL_FILE, PRUNE_JSON, PruneResult, STEPS_JSON, plan_stages, prune_checkpoint,
)

__all__ = [
    "AGPPruningHook", "CURVE_PNG", "FAMILIES", "IMPORTANCE_NAMES", "MODEL_FILE", "PRUNE_JSON",
    "PruneConfig", "PruneResult", "STEPS_JSON", "agp_schedule", "agp_sparsity", "agp_timing",
    "budget_violations", "complexity_of", "curve_points", "family_of", "format_prune_summary", "keep_width",
    "make_importance", "plan_stages", "plot_pruning_curve", "prune_checkpoint", "prune_to_widths",
    "rebuild", "resolve_prune_budget", "resolve_prune_config", "scale_widths", "search_keep_ratio",
    "widths_of",
]
