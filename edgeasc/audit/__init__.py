"""edgeasc audit (docs/audit.md): the complexity of the file that ships against a budget. result (the report type,
peak activation memory), tflite, onnx and checkpoint (one auditor per format) and report (detect the format,
audit_model, the text form). The budgets themselves are edgeasc.budget.

The names of the former edgeasc/audit.py are re-exported here for one release (docs/layout.md).
"""


from edgeasc.audit.result import (
    AuditReport, LayerAudit, peak_activation,
)
from edgeasc.audit.tflite import (
    audit_tflite,
)
from edgeasc.audit.onnx import (
    ELEMENTWISE_ONNX, FREE_ONNX, audit_onnx,
)
from edgeasc.audit.checkpoint import (
    audit_checkpoint, fvcore_count,
)
from edgeasc.audit.report import (
    FORMATS, audit_model, detect_format, format_audit,
)
from edgeasc.budget import (
    BUDGETS, Budget, MAC_RULES, resolve_budget,
)
from edgeasc.deploy.tflite_graph import (
    read_tflite_model,
)

__all__ = [
    "AuditReport", "BUDGETS", "Budget", "ELEMENTWISE_ONNX", "FORMATS", "FREE_ONNX", "LayerAudit",
    "MAC_RULES", "audit_checkpoint", "audit_model", "audit_onnx", "audit_tflite", "detect_format",
    "format_audit", "fvcore_count", "peak_activation", "read_tflite_model", "resolve_budget",
]
