"""prune: see stage.py.

The names of the former edgeasc/prune.py are re-exported here for one release (docs/layout.md).
"""

from edgeasc.prune.stage import (  # noqa: F401
    AGPPruningHook, PruneConfig, PruneResult, agp_schedule, agp_sparsity, agp_timing, budget_violations,
    complexity_of, keep_width, make_importance, plan_stages, plot_pruning_curve, prune_checkpoint,
    prune_to_widths, rebuild, resolve_prune_config, scale_widths, search_keep_ratio,
)
