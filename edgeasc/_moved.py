"""The modules of edgeasc's flat layout (0.1) that moved into stage packages, importable under their old
names for one release (docs/layout.md lists them).

`import edgeasc.export` (or `from edgeasc.export import export_checkpoint`) still works: a finder on
`sys.meta_path` answers each old name with the module that now holds the code, the same module object, so
attribute access and patching reach the real code. Each use warns once (DeprecationWarning) with the new
name. Modules that became a package of the same name (edgeasc.synth, .train, .prune, .audit, .bench,
.firmware, .submission) need no alias: the package re-exports the old module's public names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "edgeasc.audio": "edgeasc.data.audio",
    "edgeasc.dataset": "edgeasc.data.dataset",
    "edgeasc.augment": "edgeasc.data.augment",
    "edgeasc.ir_bank": "edgeasc.data.ir_bank",
    "edgeasc.distill": "edgeasc.train.distill",
    "edgeasc.teachers": "edgeasc.train.teachers",
    "edgeasc.quant": "edgeasc.train.qat",
    "edgeasc.bundle": "edgeasc.devices.bundle",
    "edgeasc.finetune": "edgeasc.devices.finetune",
    "edgeasc.dcase": "edgeasc.devices.dcase",
    "edgeasc.export": "edgeasc.deploy.export",
    "edgeasc.runtime": "edgeasc.deploy.runtime",
    "edgeasc.tflite_graph": "edgeasc.deploy.tflite_graph",
    "edgeasc.sensitivity": "edgeasc.deploy.sensitivity",
    "edgeasc.prediction": "edgeasc.deploy.predict",
}
"""Old module name -> the module that holds its code now."""

MOVED_NAMES: dict[tuple[str, str], str] = {
    ("edgeasc.devices.finetune", "export_bundle"): "edgeasc.pipeline",
    ("edgeasc.devices.finetune", "manifest_tflite"): "edgeasc.deploy.manifest",
    ("edgeasc.devices.finetune", "format_export_manifest"): "edgeasc.deploy.manifest",
    ("edgeasc.devices.finetune", "MANIFEST_FILE"): "edgeasc.deploy.manifest",
    ("edgeasc.devices.finetune", "MANIFEST_FORMAT"): "edgeasc.deploy.manifest",
    ("edgeasc.devices.finetune", "MEMBER_FILE"): "edgeasc.deploy.manifest",
    ("edgeasc.deploy.export", "ONNX_OPSET"): "edgeasc.deploy.onnx",
    ("edgeasc.deploy.export", "PARITY_TARGETS"): "edgeasc.deploy.parity",
    ("edgeasc.deploy.export", "RUNTIMES"): "edgeasc.deploy.parity",
    ("edgeasc.deploy.export", "explicit_pool_padding"): "edgeasc.deploy.onnx",
    ("edgeasc.deploy.export", "fold_batchnorm"): "edgeasc.deploy.onnx",
    ("edgeasc.deploy.export", "fold_constant_subgraphs"): "edgeasc.deploy.onnx",
    ("edgeasc.deploy.export", "format_export_report"): "edgeasc.deploy.parity",
    ("edgeasc.deploy.export", "parity_summary"): "edgeasc.deploy.parity",
}
"""(module, name) -> the module that defines the name now: names that left a module that still exists."""


def moved_attr(module: str, name: str):
    """A moved name for a module's `__getattr__` (PEP 562), with a DeprecationWarning; AttributeError otherwise."""
    new = MOVED_NAMES.get((module, name))
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(f"{module}.{name} moved to {new}.{name}; the old name goes in the next release",
                  DeprecationWarning, stacklevel=3)  # 3: the user's line, past the module's __getattr__
    return getattr(importlib.import_module(new), name)


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old module name with the moved module itself (not a copy)."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 (importlib's signature)
        if name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old name goes in the next release", DeprecationWarning,
                      stacklevel=2)  # warnings skips the import machinery's frames
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # importlib has just set the alias spec on the real module: give it back its own
        module.__spec__ = self._specs.get(module.__spec__.name, module.__spec__)


def install() -> None:
    """Put the finder on `sys.meta_path` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
