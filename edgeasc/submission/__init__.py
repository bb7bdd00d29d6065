"""submission: see package.py.

The names of the former edgeasc/submission.py are re-exported here for one release (docs/layout.md).
"""

from edgeasc.submission.package import (  # noqa: F401
    LABEL_RE, SubmissionSummary, VENDOR_DIR, VENDOR_ROOTS, describe_submission, over_budget_devices,
    package_name, rewrite_imports, vendored_modules, within_budget, write_submission,
)
