"""The committed export/ folder (export/README.md): benchmarks/suite/check_export.py, which `make bench-ci` runs,
passes on it and fails with one line naming the file on a tampered copy. Each check audits the four model
files (a few seconds); nothing trains."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_benchmarks_module

ROOT = Path(__file__).resolve().parents[1]
EXPORT = ROOT / "export"
check_export = load_benchmarks_module("suite/check_export")


def _check(export_dir: Path, capsys) -> tuple[int, list[str]]:
    rc = check_export.main(["--export", str(export_dir)])
    captured = capsys.readouterr()
    return rc, (captured.out + captured.err).splitlines()


@pytest.fixture()
def copy(tmp_path) -> Path:
    dst = tmp_path / "export"
    shutil.copytree(EXPORT, dst)
    return dst


def test_committed_export_passes():
    """The script itself, as `make bench-ci` runs it, on the repository's export/."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "suite" / "check_export.py")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((EXPORT / "manifest.json").read_text())
    assert {"demo_general", "s1"} <= set(manifest["models"])
    models = [f for f in manifest["files"] if f["path"].endswith((".tflite", ".onnx"))]
    assert len(models) >= 4 and all(f.get("audit") for f in models)
    for model in manifest["models"]:
        card = (EXPORT / model / "model_card.md").read_text()
        assert "SYNTHETIC" in card and "make export" in card


def test_tampered_copy_fails_with_a_line_per_file(copy, capsys):
    """One copy, three tamperings (a check audits every model file, so they share one run)."""
    path = copy / "demo_general" / "model_int8.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: the hash changes (and maybe the audit: more lines on this file)
    path.write_bytes(bytes(data))
    audit_path = copy / "s1" / "model_int8.audit.json"
    audit = json.loads(audit_path.read_text())
    audit["macs"] -= 1
    audit_path.write_text(json.dumps(audit, indent=2) + "\n")
    shutil.copy(copy / "s1" / "model_int8.tflite", copy / "s1" / "extra.tflite")
    rc, lines = _check(copy, capsys)
    assert rc == 1
    expected = ("check_export: demo_general/model_int8.tflite: sha256",
                "check_export: s1/model_int8.audit.json: sha256",
                "check_export: s1/model_int8.tflite: macs: ",
                "check_export: s1/extra.tflite: model file not listed")
    for start in expected:
        assert sum(line.startswith(start) for line in lines) == 1, (start, lines)
    assert any("(committed: s1/model_int8.audit.json)" in line for line in lines), lines
    others = [line for line in lines if not line.startswith("check_export: demo_general/model_int8.tflite: ")]
    assert len(others) == len(expected) - 1 + 1, lines  # the other three, the summary; untouched files: none


def test_over_budget_is_a_failure(copy, capsys, monkeypatch):
    """A tighter MAC limit than the committed audit's: both the budget and the audit comparison fail."""
    monkeypatch.setitem(check_export.AUDIT_ARGS, ".tflite", ("--budget", "dcase2025", "--max-macs", "1000000"))
    rc, lines = _check(copy, capsys)
    assert rc == 1
    for model in ("demo_general", "s1"):
        assert any(line.startswith(f"check_export: {model}/model_int8.tflite: over budget") for line in lines), lines


def test_missing_folder_is_bad_usage(tmp_path, capsys):
    rc, lines = _check(tmp_path / "nothing", capsys)
    assert rc == 2
    assert lines == [f"check_export: no export folder at {tmp_path / 'nothing'} (regenerate it: make export)"]
    (tmp_path / "empty").mkdir()
    assert _check(tmp_path / "empty", capsys)[0] == 2
