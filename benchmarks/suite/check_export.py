"""Check the committed export/ folder: every model file against its committed audit and the DCASE 2025 budget.

`make bench-ci` runs this before the benchmark suite (docs/bench.md, export/README.md). It trains nothing and
takes seconds. For every file listed in export/manifest.json it checks that the file exists and that its
sha256 and size match the manifest; for every model file (.tflite, .onnx) it also runs

    python -m edgeasc.cli audit FILE --json [AUDIT_ARGS of its format]

and checks that the audit exits 0 (within the budget), that the committed audit JSON (`edgeasc audit FILE --json`
as written by benchmarks/suite/export_refs.py) says within budget too, and that every field of the audit that
is a property of the file (`COMPARED_FIELDS`: parameters, parameter bytes by dtype, MACs by both rules and per
operator, peak activation, the per-operator rows, the budget and its verdict, the file details; not `path`)
equals the committed one. A model file in export/ that the manifest does not list is a mismatch too, and each
model card must quote its int8 model's audited parameter bytes and DCASE MACs.

Budgets: the int8 .tflite is the deployable model and is held to the DCASE 2025 budget as `edgeasc audit`
applies it (128,000 parameter bytes at the stored width, 30,000,000 MACs by the DCASE rule). The .onnx is the
same network in float32 before quantisation; DCASE counts a float model at the fp16 width its submissions
run at, so at the file's 4 bytes per parameter its limit is 256,000 bytes (at most 64,000 parameters).

Usage:
    python benchmarks/suite/check_export.py                 # the repository's export/
    python benchmarks/suite/check_export.py --export DIR    # another copy (the tests use a tampered one)

Exit codes: 0 everything matches; 1 a mismatch or a budget failure (one line each on stdout, naming the
file); 2 bad usage, or no export folder / no readable manifest.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_EXPORT = ROOT / "export"
MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "edgeasc.export/1"
MODEL_SUFFIXES = (".tflite", ".onnx")
REFERENCE_MODELS = ("demo_general", "s1")
"""The folders export/ must hold (benchmarks/suite/export_refs.py MODELS), each with these model files."""
MODEL_FILES = ("model_int8.tflite", "model.onnx")

AUDIT_ARGS: dict[str, tuple[str, ...]] = {
    ".tflite": ("--budget", "dcase2025"),
    # float32: the DCASE 128,000 bytes at fp16 (2 B per parameter) are 256,000 bytes at 4 B
    ".onnx": ("--budget", "dcase2025", "--max-param-bytes", "256000"),
}
"""`edgeasc audit` options per model format; export_refs.py writes the committed audits with the same."""

COMPARED_FIELDS = (
    "format", "model_name", "param_count", "param_bytes", "param_bytes_by_dtype", "macs", "macs_dcase",
    "macs_by_op", "peak_activation_bytes", "peak_activation_op", "budget", "within_budget", "violations",
    "warnings", "details", "layers",
)
"""Audit fields that depend only on the file and the budget (`path` is where it was audited: not compared)."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def audit_command(path: Path, python: str = sys.executable) -> list[str]:
    return [python, "-m", "edgeasc.cli", "audit", str(path), "--json", *AUDIT_ARGS[path.suffix.lower()]]


def run_audit(path: Path) -> tuple[int, dict[str, Any] | None, str]:
    """(exit code, the parsed --json report or None, the last stderr line) of `edgeasc audit` on `path`."""
    proc = subprocess.run(audit_command(path), capture_output=True, text=True)
    last = next((line for line in reversed(proc.stderr.splitlines()) if line.strip()), "")
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        report = None
    return proc.returncode, report, last


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_difference(fresh: Any, committed: Any, where: str = "") -> str:
    """Where two JSON values first differ, as `key.path: fresh != committed`."""
    if isinstance(fresh, dict) and isinstance(committed, dict):
        for key in sorted(set(fresh) | set(committed), key=str):
            if key not in fresh or key not in committed:
                side = "the committed audit" if key not in committed else "this audit"
                return f"{where}{key} missing from {side}"
            if fresh[key] != committed[key]:
                return _first_difference(fresh[key], committed[key], f"{where}{key}.")
    if isinstance(fresh, list) and isinstance(committed, list):
        if len(fresh) != len(committed):
            return f"{where.rstrip('.') or 'value'}: {len(fresh)} rows, committed {len(committed)}"
        for i, (a, b) in enumerate(zip(fresh, committed)):
            if a != b:
                return _first_difference(a, b, f"{where}[{i}].")
    return f"{where.rstrip('.') or 'value'}: {_short(fresh)} != committed {_short(committed)}"


def compare_audits(fresh: dict[str, Any], committed: dict[str, Any]) -> list[str]:
    """One message per compared field that differs."""
    out = []
    for field in COMPARED_FIELDS:
        if field not in committed:
            out.append(f"{field} missing from the committed audit")
        elif field not in fresh:
            out.append(f"{field} missing from this audit")
        elif fresh[field] != committed[field]:
            detail = _first_difference(fresh[field], committed[field], f"{field}.")
            if field == "layers" and len(fresh[field]) == len(committed[field]):
                n = sum(a != b for a, b in zip(fresh[field], committed[field]))
                detail += f" ({n} of {len(fresh[field])} rows differ)"
            out.append(detail)
    return out


def load_manifest(export_dir: Path) -> dict[str, Any]:
    """The manifest, or SystemExit(2) with one line."""
    path = export_dir / MANIFEST
    if not export_dir.is_dir():
        raise SystemExit(_usage_error(f"no export folder at {export_dir} (regenerate it: make export)"))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(_usage_error(f"{path}: missing (regenerate the folder: make export)")) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SystemExit(_usage_error(f"{path}: not readable JSON: {exc}")) from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or manifest.get("schema") != MANIFEST_SCHEMA or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str) for f in files):
        raise SystemExit(_usage_error(f"{path}: not an {MANIFEST_SCHEMA} manifest (no 'files' list)"))
    return manifest


def _usage_error(message: str) -> int:
    print(f"check_export: {message}", file=sys.stderr)
    return 2


def check_export(export_dir: Path) -> tuple[list[str], int]:
    """(mismatch lines, number of files checked) for the export folder at `export_dir`."""
    manifest = load_manifest(export_dir)
    problems: list[str] = []
    listed = {entry["path"] for entry in manifest["files"]}

    for model in REFERENCE_MODELS:
        for name in MODEL_FILES:
            if f"{model}/{name}" not in listed:
                problems.append(f"{model}/{name}: reference model file not listed in {MANIFEST}")
    for found in sorted(p for p in export_dir.rglob("*") if p.suffix.lower() in MODEL_SUFFIXES and p.is_file()):
        rel = found.relative_to(export_dir).as_posix()
        if rel not in listed:
            problems.append(f"{rel}: model file not listed in {MANIFEST} (regenerate: make export)")

    models = []
    for entry in manifest["files"]:
        rel = entry["path"]
        path = export_dir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing (listed in {MANIFEST})")
            continue
        size = path.stat().st_size
        if entry.get("bytes") is not None and size != entry["bytes"]:
            problems.append(f"{rel}: {size:,} bytes, {MANIFEST} says {entry['bytes']:,}")
        digest = sha256_of(path)
        if digest != entry.get("sha256"):
            problems.append(f"{rel}: sha256 {digest[:16]}... does not match {MANIFEST} "
                            f"({str(entry.get('sha256'))[:16]}...)")
        if path.suffix.lower() in MODEL_SUFFIXES:
            models.append(entry)
    # the audits (a second or so each, mostly interpreter start-up) side by side, reported in manifest order
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for lines in pool.map(lambda e: _check_model(export_dir, e["path"], e), models):
            problems.extend(lines)

    cards = manifest.get("models")
    for model, info in (cards.items() if isinstance(cards, dict) else ()):
        problems.extend(_check_card(export_dir, model, info if isinstance(info, dict) else {}))
    return problems, len(manifest["files"])


def _check_model(export_dir: Path, rel: str, entry: dict[str, Any]) -> list[str]:
    path = export_dir / rel
    audit_rel = entry.get("audit")
    if not audit_rel:
        return [f"{rel}: no committed audit named in {MANIFEST}"]
    try:
        committed = json.loads((export_dir / audit_rel).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{audit_rel}: committed audit of {rel} not readable: {exc}"]
    out = []
    if committed.get("within_budget") is not True or committed.get("violations"):
        out.append(f"{audit_rel}: the committed audit of {rel} is not within budget: "
                   f"{'; '.join(committed.get('violations') or []) or 'within_budget is not true'}")
    code, fresh, last = run_audit(path)
    if fresh is None:
        return out + [f"{rel}: edgeasc audit failed (exit {code}): {last or 'no output'}"]
    if code == 1 or fresh.get("violations"):
        out.append(f"{rel}: over budget {fresh.get('budget', {}).get('name')}: "
                   f"{'; '.join(fresh.get('violations') or []) or last}")
    elif code != 0:
        out.append(f"{rel}: edgeasc audit exit {code}: {last}")
    out.extend(f"{rel}: {diff} (committed: {audit_rel})" for diff in compare_audits(fresh, committed))
    return out


def _check_card(export_dir: Path, model: str, info: dict[str, Any]) -> list[str]:
    """The model card quotes its int8 model's audited parameter bytes and DCASE MACs."""
    card_rel, audit_rel = info.get("model_card"), info.get("int8_audit")
    if not card_rel or not audit_rel:
        return []
    try:
        card = (export_dir / card_rel).read_text(encoding="utf-8")
        audit = json.loads((export_dir / audit_rel).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{card_rel}: cannot compare with {audit_rel}: {exc}"]
    out = []
    for field in ("param_bytes", "macs_dcase"):
        value = audit.get(field)
        if not isinstance(value, int) or f"{value:,}" not in card:
            out.append(f"{card_rel}: does not quote {field} = {value!r} of {audit_rel}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, default=DEFAULT_EXPORT, help="the export folder (default: export/)")
    args = parser.parse_args(argv)
    try:
        problems, n_files = check_export(args.export)
    except SystemExit as exc:
        return int(exc.code or 2)
    for line in problems:
        print(f"check_export: {line}")
    if problems:
        print(f"check_export: {len(problems)} mismatch(es) in {args.export}; if the change is intended, "
              "regenerate with `make export` (or re-audit only: benchmarks/suite/export_refs.py --reaudit)")
        return 1
    print(f"check_export: {n_files} files in {args.export} match {MANIFEST}; every model is within its budget "
          "and matches its committed audit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
