"""A self-contained DCASE 2025 Task 1 submission package from an edgeasc bundle or checkpoint.

Layout (the seed's package EOPhoeny/dcase2025_task1_inference follows the same template):

    OUT/<package>/                      package = label without its trailing `_<index>`
        pyproject.toml                  setuptools; depends on torch, numpy, scipy, soundfile only
        README.md                       usage, precision, clip handling, complexity per device
        <package>/__init__.py
        <package>/<label>.py            the API: load_model, load_inputs, get_model_for_device, predict
        <package>/ckpts/<label>.pt      the edgeasc bundle, every floating tensor stored in fp16
        <package>/complexity.json       MACs and parameter bytes per device (DCASE rule)
        <package>/_edgeasc/...          the edgeasc modules the API imports, imports rewritten
    OUT/predictions/<label>/complexity.json

The package must run where edgeasc is not installed, so the modules `edgeasc.devices.dcase` imports (transitively,
function-level imports included, found by parsing the sources) are copied under `<package>/_edgeasc/` with
every `edgeasc` import rewritten to `<package>._edgeasc`. Nothing else is changed in them.
"""

from __future__ import annotations

import ast
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeasc import __version__
from edgeasc.artifacts import write_json_atomic, write_text_atomic
from edgeasc.errors import ConfigError, DomainError

log = logging.getLogger(__name__)

LABEL_RE = re.compile(r"^[A-Za-z]+_[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*_task1_[1-4]$")
"""`<Surname>_<Institute>_task1_<1-4>`, e.g. Zhang_AITHU_SJTU_task1_1 (DCASE submission label)."""

VENDOR_ROOTS: tuple[str, ...] = ("edgeasc.devices.dcase",)
VENDOR_DIR = "_edgeasc"
_IMPORT_RE = re.compile(r"^(\s*)(from|import)\s+edgeasc(?=[\s.])", re.MULTILINE)


def package_name(label: str) -> str:
    """The package of a submission label: the label without `_<index>` (Zhang_AITHU_SJTU_task1_1 ->
    Zhang_AITHU_SJTU_task1).

    Raises:
        ConfigError: the label is not `<Surname>_<Institute>_task1_<1-4>`.
    """
    if not LABEL_RE.match(label or ""):
        raise ConfigError(f"invalid submission label {label!r}: expected <Surname>_<Institute>_task1_<1-4> "
                          "(letters and digits, e.g. Zhang_AITHU_SJTU_task1_1)")
    return label.rsplit("_", 1)[0]


def _module_file(name: str) -> Path | None:
    base = Path(__file__).resolve().parents[2]
    rel = Path(*name.split("."))
    for cand in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports_of(name: str) -> set[str]:
    """edgeasc modules imported anywhere in module `name` (module level and inside functions)."""
    tree = ast.parse(_module_file(name).read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "edgeasc":
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "edgeasc")
    return out


def vendored_modules(roots: tuple[str, ...] = VENDOR_ROOTS) -> list[str]:
    """The edgeasc modules `roots` need, transitively, parent packages included (sorted)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if _module_file(name) is None:
            raise ConfigError(f"cannot find the source of {name} to copy into the package")
        seen.add(name)
        todo.extend(_imports_of(name))
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
    return sorted(seen)


def rewrite_imports(source: str, package: str) -> str:
    """Rewrite `from edgeasc...` / `import edgeasc...` statements to `<package>._edgeasc...`."""
    out = _IMPORT_RE.sub(lambda m: f"{m.group(1)}{m.group(2)} {package}.{VENDOR_DIR}", source)
    for node in ast.walk(ast.parse(out)):
        mods = [node.module] if isinstance(node, ast.ImportFrom) else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        if any(m and m.split(".")[0] == "edgeasc" for m in mods):
            raise RuntimeError(f"an edgeasc import was left unrewritten at line {node.lineno}")
    return out


def _fp16_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    return {**ckpt, "state_dict": state}


def _write_fp16_bundle(model_path: Path, dst: Path, label: str) -> Path:
    from edgeasc.checkpoint import read_checkpoint
    from edgeasc.devices.bundle import is_bundle, read_bundle, save_bundle

    if is_bundle(model_path):
        bundle = read_bundle(model_path)
        general, devices, extra = bundle.general, bundle.devices, dict(bundle.extra)
    else:
        general, devices, extra = read_checkpoint(model_path), {}, {}
    extra["submission"] = {"label": label, "source": str(model_path), "weights_dtype": "float16",
                           "edgeasc_version": __version__}
    return save_bundle(dst, _fp16_checkpoint(general), {d: _fp16_checkpoint(c) for d, c in devices.items()},
                       extra)


def over_budget_devices(complexity_json: dict[str, Any], budget: str = "dcase2025") -> list[str]:
    """Devices of a complexity.json dict whose model exceeds a named budget (`edgeasc.audit.BUDGETS`)."""
    from edgeasc.budget import resolve_budget

    _, limit = resolve_budget(budget)
    if limit is None:
        return []
    return [dev for dev, c in complexity_json["per_device"].items()
            if c["Params"] > limit.param_bytes or c["MACs"] > limit.macs]


def within_budget(complexity_json: dict[str, Any], budget: str = "dcase2025") -> bool:
    """True when every device's model fits the budget (DCASE 2025: 128,000 bytes at fp16, 30,000,000 MACs)."""
    return not over_budget_devices(complexity_json, budget)


def write_submission(model_path: str | os.PathLike, out_dir: str | os.PathLike, label: str,
                     overwrite: bool = False) -> Path:
    """Write the installable submission package of an edgeasc bundle or checkpoint (see the module docstring).

    Args:
        model_path: an edgeasc bundle (general + device models) or checkpoint (general model only).
        out_dir: where `<package>/` and `predictions/<label>/` go.
        label: the DCASE submission label, `<Surname>_<Institute>_task1_<1-4>`.
        overwrite: replace the files of an existing, non-empty package folder.

    Returns:
        The package folder `out_dir/<package>` (pip-installable).

    Raises:
        ConfigError: bad label, or a non-empty package folder without `overwrite`.
        CheckpointError: unreadable model, or one the DCASE API cannot run.
    """
    from edgeasc.devices import dcase
    package = package_name(label)
    model_path, out_dir = Path(model_path), Path(out_dir)
    root = out_dir / package
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise ConfigError(f"{root} exists and is not empty; pass --overwrite to replace its files")
    model = dcase.load_model(model_path, "cpu")  # checks the model runs through the API before writing
    cx = dcase.complexity(model)
    pkg = root / package

    _write_fp16_bundle(model_path, pkg / "ckpts" / f"{label}.pt", label)
    for name in vendored_modules():
        src = _module_file(name)
        rel = src.relative_to(Path(__file__).resolve().parents[1])
        header = (f"# Copied from edgeasc {__version__} ({Path('edgeasc', rel).as_posix()}) by "
                  f"`edgeasc submission`; edgeasc imports rewritten to {package}.{VENDOR_DIR}.\n")
        write_text_atomic(pkg / VENDOR_DIR / rel, header + rewrite_imports(src.read_text(encoding="utf-8"), package))
    init_doc = f'"""DCASE 2025 Task 1 submission {package} (API: `{package}.{label}`)."""\n'
    write_text_atomic(pkg / "__init__.py", init_doc)
    write_text_atomic(pkg / f"{label}.py", _API_TEMPLATE.format(label=label, package=package, version=__version__,
                                                                 devices=", ".join(model.devices) or "none"))
    write_json_atomic(pkg / "complexity.json", cx)
    write_json_atomic(out_dir / "predictions" / label / "complexity.json", cx)
    write_text_atomic(root / "pyproject.toml", _PYPROJECT_TEMPLATE.format(package=package, version=__version__))
    write_text_atomic(root / "README.md", _readme(label, package, model, cx))
    log.info("wrote submission %s to %s", label, root)
    return root


@dataclass(frozen=True)
class SubmissionSummary:
    """What `write_submission` wrote, for printing.

    Attributes:
        files: every file written, vendored modules included.
        complexity: the complexity.json dict.
        over_budget: devices whose model exceeds the budget.
        budget: the budget's name.
    """

    files: list[Path]
    complexity: dict[str, Any]
    over_budget: list[str]
    budget: str

    def format(self) -> str:
        """Files (vendored modules counted, not listed), then MACs and parameter bytes per device."""
        vendored = [f for f in self.files if VENDOR_DIR in f.parts]
        lines = [f"  {f}  ({f.stat().st_size:,} bytes)" for f in self.files if f not in vendored]
        if vendored:
            lines.append(f"  {vendored[0].parent}/...  ({len(vendored)} vendored edgeasc modules)")
        lines += ["", f"{'device':<7} {'MACs':>12} {'Params (bytes)':>15}  {self.budget}"]
        for dev, c in self.complexity["per_device"].items():
            verdict = "OVER BUDGET" if dev in self.over_budget else "ok"
            lines.append(f"{dev:<7} {c['MACs']:>12,} {c['Params']:>15,}  {verdict}")
        lines.append(f"{'max':<7} {self.complexity['max_MACs']:>12,} {self.complexity['max_Params']:>15,}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what `edgeasc submission --json` prints)."""
        return {"files": [str(f) for f in self.files], "complexity": self.complexity,
                "budget": self.budget, "over_budget": list(self.over_budget),
                "within_budget": not self.over_budget}

    def check(self) -> None:
        """Raise DomainError (exit code 1) when a device's model exceeds the budget."""
        if self.over_budget:
            raise DomainError(f"over the {self.budget} budget on device(s) {', '.join(self.over_budget)} "
                              "(the package was written; prune the model and write it again)")


def describe_submission(out_dir: str | os.PathLike, label: str, budget: str = "dcase2025") -> SubmissionSummary:
    """The files and complexity of a package `write_submission` wrote into `out_dir`."""
    import json

    package = package_name(label)
    out_dir = Path(out_dir)
    cx_path = out_dir / package / package / "complexity.json"
    cx = json.loads(cx_path.read_text(encoding="utf-8"))
    files = sorted(p for p in (out_dir / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files.append(out_dir / "predictions" / label / "complexity.json")
    return SubmissionSummary(files, cx, over_budget_devices(cx, budget), budget)


def _readme(label: str, package: str, model: Any, cx: dict[str, Any]) -> str:
    rows = "\n".join(f"| {dev} | {model.member_for(dev)} | {c['MACs']:,} | {c['Params']:,} |"
                     for dev, c in cx["per_device"].items())
    fe = model.frontend_config
    return _README_TEMPLATE.format(label=label, package=package, version=__version__, rows=rows,
                                   devices=", ".join(model.devices) or "none", rate=fe.sample_rate_hz,
                                   n_mels=fe.n_mels, frames=fe.n_frames, clip_s=fe.clip_seconds)


_PYPROJECT_TEMPLATE = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{package}"
version = "0.1.0"
description = "DCASE 2025 Task 1 submission {package} (written by edgeasc {version})"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["torch>=2.1", "numpy>=1.24", "scipy>=1.10", "soundfile>=0.12"]

[tool.setuptools.packages.find]
include = ["{package}", "{package}.*"]

[tool.setuptools.package-data]
"{package}" = ["ckpts/*.pt", "complexity.json"]
"""

_API_TEMPLATE = '''\
"""DCASE 2025 Task 1 inference API of submission {label} (written by edgeasc {version}).

    from {package} import {label} as api
    logits, class_order = api.predict(["clip.wav"], ["a"])   # one (10,) tensor per file

The weights are ckpts/{label}.pt: a general model and per-device models (devices: {devices}), stored in
fp16. Other device ids (s4-s10, anything unknown) use the general model; ids are case-insensitive.
On CUDA the models run in fp16; on the CPU the fp16 weights run in float32. Files of any sample rate
and channel count are read (channels averaged, resampled); `windows="first"` uses the first second of
each file (zero-padded if shorter), `windows="mean"` averages the logits of all 1-s windows.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from {package}.{vendor}.devices import dcase as _dcase
from {package}.{vendor}.devices.dcase import DeviceModels

MODEL_FILE = Path(__file__).resolve().parent / "ckpts" / "{label}.pt"


def load_model(model_file_path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> DeviceModels:
    """The frontend and every device model (default: the packaged weights)."""
    return _dcase.load_model(MODEL_FILE if model_file_path is None else model_file_path, device)


def load_inputs(file_paths: list[str], device_ids: list[str], model: DeviceModels, windows: str = "first",
                batch_size: int = 256, num_workers: int = 1) -> list[Tensor]:
    """Log-mel input per file: (1, 1, n_mels, frames), or (n_windows, 1, n_mels, frames) for windows="mean"."""
    return _dcase.load_inputs(file_paths, device_ids, model, windows=windows, batch_size=batch_size,
                              num_workers=num_workers)


def get_model_for_device(model: DeviceModels, device_id: str) -> nn.Module:
    """The model of `device_id`, or the general model for a device without its own."""
    return _dcase.get_model_for_device(model, device_id)


def predict(file_paths: list[str], device_ids: list[str], model_file_path: str | os.PathLike | None = None,
            use_cuda: bool = True, batch_size: int = 64, windows: str = "first") -> tuple[list[Tensor], list[str]]:
    """(one logit tensor (n_classes,) per file, the class order)."""
    return _dcase.predict(file_paths, device_ids, MODEL_FILE if model_file_path is None else model_file_path,
                          use_cuda=use_cuda, batch_size=batch_size, windows=windows)
'''.replace("{vendor}", VENDOR_DIR)

_README_TEMPLATE = """\
# {package}: DCASE 2025 Task 1 submission {label}

Written by edgeasc {version} (`edgeasc submission`). Self-contained: it needs torch, numpy, scipy and
soundfile, not edgeasc.

## Install and run

```
pip install ./{package}
python -c "from {package} import {label} as api; print(api.predict(['clip.wav'], ['a']))"
```

API (module `{package}.{label}`, the DCASE 2025 inference template):

- `load_model(model_file_path=None, device="cpu")`: frontend + general model + device models (default:
  `ckpts/{label}.pt`).
- `load_inputs(file_paths, device_ids, model, windows="first")`: per file a log-mel tensor (1, 1, {n_mels}, {frames}).
- `get_model_for_device(model, device_id)`: the model of that device; unknown ids get the general model.
- `predict(file_paths, device_ids, model_file_path=None, use_cuda=True, batch_size=64, windows="first")`:
  `(logits, class_order)`, one float32 tensor (10,) per file, in the order of `file_paths`.

Devices with their own model: {devices}. Every other id (s4-s10, unknown ids) uses the general model;
ids are case-insensitive.

## Audio and precision

- Files of any sample rate are resampled to {rate} Hz (windowed sinc, as torchaudio's `Resample`); channels are
  averaged to mono; 16/24-bit PCM and float files are read by soundfile. A missing or unreadable file raises an
  error naming it.
- The model input is {clip_s} s. `windows="first"` (default) uses the first {clip_s} s of each file, zero-padded
  when shorter; `windows="mean"` splits the file into non-overlapping {clip_s}-s windows (the last one
  zero-padded) and averages their logits.
- Weights are stored in fp16. With CUDA the models run in fp16; on the CPU the fp16 weights are upcast to
  float32 (half-precision convolutions are slow or missing on CPUs).

## Complexity (DCASE rule: MACs of one {clip_s}-s clip, parameter bytes at fp16)

| device | model | MACs | Params (bytes) |
|---|---|---:|---:|
{rows}

The same numbers are in `{package}/complexity.json` and `predictions/{label}/complexity.json`.
"""
