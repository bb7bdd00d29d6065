"""audit: see report.py.

The names of the former edgeasc/audit.py are re-exported here for one release (docs/layout.md).
"""

from edgeasc.audit.report import (  # noqa: F401
    AuditReport, BUDGETS, Budget, ELEMENTWISE_ONNX, FORMATS, FREE_ONNX, LayerAudit, MAC_RULES,
    audit_checkpoint, audit_model, audit_onnx, audit_tflite, detect_format, format_audit, fvcore_count,
    peak_activation, resolve_budget,
)
