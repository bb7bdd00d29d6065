"""The firmware on the MLPerf Tiny reference models: each .tflite of a folder through `edgeasc firmware`, then
the host build against TFLite Micro (outputs on seeded random inputs, and every intermediate tensor), the
emulated Cortex-M4 against the host, its instructions per inference and flash, with the default int16 and with
int8 convolution weight storage (docs/firmware.md "MLPerf Tiny").

The models are not shipped: they are the public `benchmark/training/*/trained_models/*.tflite` files of
mlcommons/tiny (`git clone https://github.com/mlcommons/tiny` and pass the files or their folder). A model the
firmware refuses (a float model) is recorded with its one-line reason.

    python benchmarks/experiments/mlperf_tiny.py MODELS_DIR_OR_FILES... [--inputs 100] [--emulated 2]
        [--work benchmarks/.work/mlperf_tiny] [--out benchmarks/experiments/results/mlperf_tiny.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgeasc.artifacts import write_json_atomic  # noqa: E402
from edgeasc.deploy.tflite_graph import read_graph  # noqa: E402
from edgeasc.errors import EdgeAscError  # noqa: E402
from edgeasc.firmware import check_firmware, measure_firmware, random_inputs  # noqa: E402


def measure(path: Path, work: Path, n_inputs: int, n_emulated: int) -> dict[str, Any]:
    graph = read_graph(path)
    row: dict[str, Any] = {"model": path.name, "tflite_bytes": path.stat().st_size,
                           "ops": sorted({op.name for op in graph.ops}),
                           "io": [graph.tensors[graph.inputs[0]].dtype, graph.tensors[graph.outputs[0]].dtype]}
    try:
        report = check_firmware(path, None, work / path.stem, n_inputs=n_inputs, targets=("cortex-m4",),
                                n_layer_checks=2, n_emulated=n_emulated)
    except EdgeAscError as exc:
        row["refused"] = str(exc).splitlines()[0]
        return row
    host, m4 = report["host"], report["targets"].get("cortex-m4", {})
    row.update({"layers": report["layers"], "macs": report["macs"], "arena_bytes": report["arena_bytes"],
                "host_bit_identical": f"{host['bit_identical']}/{host['n_inputs']}",
                "distinct_outputs": host["distinct_outputs"],
                "intermediates_checked": host["layer_checks"], "intermediate_mismatches": len(host["layer_mismatches"]),
                "passed": report["passed"]})
    if "skipped" in m4:
        row["cortex_m4"] = m4
    elif m4:
        keys = ("instructions_per_inference", "instructions_per_mac", "flash_bytes", "model_flash_bytes", "ram_bytes")
        row["cortex_m4"] = {"identical_to_host": m4["identical_to_host"], **{k: m4[k] for k in keys}}
        # the same model with int8 convolution weights (edgeasc firmware --weights int8): instructions and flash,
        # and its logits against the int16 build's on the same inputs
        x = random_inputs(path, n_emulated, 0)
        w8 = measure_firmware(path, "cortex-m4", inputs=x, weights="int8")
        w16 = measure_firmware(path, "cortex-m4", inputs=x)
        row["cortex_m4_int8_weights"] = {"same_outputs_as_int16": w8["logits"] == w16["logits"],
                                         **{k: w8[k] for k in keys}}
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | ops | host vs TFLite Micro | intermediates | M4 instructions (int16 / int8 weights) | per MAC "
             "| model flash (int16 / int8 weights) / .tflite |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "refused" in r:
            lines.append(f"| {r['model']} | {', '.join(r['ops'])} | refused: {r['refused'].split(': ', 1)[-1][:70]} "
                         "| | | | |")
            continue
        m4, w8 = r.get("cortex_m4", {}), r.get("cortex_m4_int8_weights", {})
        instr, per, flash = "-", "-", "-"
        if "instructions_per_inference" in m4 and w8:
            instr = f"{m4['instructions_per_inference']:,} / {w8['instructions_per_inference']:,}"
            per = f"{m4['instructions_per_mac']:.2f} / {w8['instructions_per_mac']:.2f}"
            flash = f"{m4['model_flash_bytes']:,} / {w8['model_flash_bytes']:,} / {r['tflite_bytes']:,}"
        lines.append(f"| {r['model']} | {', '.join(r['ops'])} | {r['host_bit_identical']} "
                     f"| {r['intermediates_checked']} inputs, {r['intermediate_mismatches']} differ | {instr} | {per} "
                     f"| {flash} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help=".tflite files, or folders searched for them")
    ap.add_argument("--inputs", type=int, default=100, help="seeded random inputs checked on the host")
    ap.add_argument("--emulated", type=int, default=2, help="of those, run on the emulated Cortex-M4")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks/.work/mlperf_tiny")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/experiments/results/mlperf_tiny.json")
    args = ap.parse_args()
    paths = sorted({p for m in args.models for p in ([m] if m.is_file() else m.rglob("*.tflite"))})
    if not paths:
        print("error: no .tflite files found", file=sys.stderr)
        return 2
    rows = []
    for p in paths:
        rows.append(measure(p, args.work, args.inputs, args.emulated))
        print(json.dumps(rows[-1]), flush=True)
    write_json_atomic(args.out, {"command": "python benchmarks/experiments/mlperf_tiny.py " + " ".join(
        str(m) for m in args.models) + f" --inputs {args.inputs} --emulated {args.emulated}", "models": rows})
    print(table(rows))
    ok = all(r.get("passed", True) and r.get("cortex_m4_int8_weights", {}).get("same_outputs_as_int16", True)
             for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
