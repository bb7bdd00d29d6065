"""Instructions per operator class of the firmware on the emulated Cortex-M4 (QEMU mps2-an386, -icount
shift=0), beside CMSIS-NN on the same shapes where benchmarks/experiments/cmsis_nn measured it
(firmware_stub/README.md "Per operator class").

Each model is generated, built and run once (`edgeasc.firmware.measure_firmware`, one seeded random input);
its layers are grouped into classes by operator, kernel and window (3x3 depthwise, 3-tap depthwise, strided
depthwise, 1x1 convolution, stem convolution, FULLY_CONNECTED per input -> output size, AVERAGE_POOL_2D per
window, ADD, ...), and each class gets instructions per MAC (per window value for pooling and MEAN, whose MACs
by the audit's deployed rule count one per window value; per output value for ADD and the other elementwise
operators).

    python benchmarks/experiments/firmware_op_classes.py MODEL.tflite... [--weights int16|int8]
        [--cmsis-nn benchmarks/experiments/results/cmsis_nn_ops.json]
        [--out benchmarks/experiments/results/firmware_op_classes.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgeasc.artifacts import write_json_atomic  # noqa: E402
from edgeasc.deploy.tflite_graph import read_graph  # noqa: E402
from edgeasc.firmware import measure_firmware  # noqa: E402


def layer_class(graph: Any, index: int, kernel: str) -> str:
    """A layer's operator class: operator, window and stride as the comparison needs them."""
    op = graph.ops[index]
    name = op.name
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        filt = graph.tensors[op.inputs[1]]
        _, k_h, k_w, f_in = filt.shape
        strided = int(op.options.strideH) * int(op.options.strideW) > 1
        depthwise = kernel == "fw_dwconv_s8"
        if depthwise:
            taps = k_h * k_w
            kind = f"{k_h}x{k_w} depthwise" if taps != 3 else "3x1 / 1x3 depthwise"
            return kind + (" (strided)" if strided else "")
        if k_h == k_w == 1:
            return "1x1 convolution"
        if f_in <= 2:
            return f"stem convolution ({k_h}x{k_w}, {f_in} input channel{'s' if f_in > 1 else ''})"
        return f"{k_h}x{k_w} convolution"
    if name == "FULLY_CONNECTED":
        f_out, f_in = graph.tensors[op.inputs[1]].shape
        return f"FULLY_CONNECTED {f_in} -> {f_out}"
    if name == "AVERAGE_POOL_2D":
        return f"AVERAGE_POOL_2D {int(op.options.filterHeight)}x{int(op.options.filterWidth)}"
    return name


CMSIS_CASES = {  # benchmarks/experiments/cmsis_nn case -> (operator class, output shape it was measured on)
    "dwconv3x3_25x5x64": ("3x3 depthwise", (1, 25, 5, 64)),
    "conv1x1_25x5x64x64": ("1x1 convolution", (1, 25, 5, 64)),
    "avgpool_global_25x5x64": ("AVERAGE_POOL_2D 25x5", (1, 1, 1, 64)),
    "avgpool3x3_same_17x72x32": ("AVERAGE_POOL_2D 3x3", (1, 17, 72, 32)),
    "avgpool3x3_s1x2_66x19x32": ("AVERAGE_POOL_2D 3x3", (1, 64, 9, 32)),
    "fc_64x12": ("FULLY_CONNECTED 64 -> 12", (1, 12)),
    "fc_640x128": ("FULLY_CONNECTED 640 -> 128", (1, 128)),
    "fc_128x128": ("FULLY_CONNECTED 128 -> 128", (1, 128)),
}


def cmsis_figure(cmsis: dict[str, Any] | None, name: str, shapes: list[list[int]]) -> str:
    """CMSIS-NN's instructions per unit for a class, where a case was measured on one of its layers' shapes."""
    for case in (cmsis or {}).get("cases", []):
        want = CMSIS_CASES.get(case["case"])
        if want and want[0] == name and list(want[1]) in shapes:
            return f"{case.get('instructions_per_mac', case.get('instructions_per_element')):.2f}"
    return ""


def measure(path: Path, weights: str) -> dict[str, Any]:
    graph = read_graph(path)
    with tempfile.TemporaryDirectory(prefix="edgeasc_opclass_") as tmp:
        fig = measure_firmware(path, "cortex-m4", work_dir=tmp, weights=weights)
        info = json.loads((Path(tmp) / "model" / "firmware.json").read_text())
    classes: dict[str, dict[str, Any]] = defaultdict(lambda: {"layers": 0, "instructions": 0, "macs": 0,
                                                              "elements": 0, "output_shapes": []})
    for row, layer in zip(fig["layers"], info["layers"]):
        if layer["kernel"] in ("alias", "fused"):
            continue
        c = classes[layer_class(graph, layer["index"], layer["kernel"])]
        c["layers"] += 1
        c["instructions"] += row["instructions"]
        c["macs"] += row["macs"]
        n = 1
        for d in layer["output_shape"]:
            n *= int(d)
        c["elements"] += n
        if list(layer["output_shape"]) not in c["output_shapes"]:
            c["output_shapes"].append([int(d) for d in layer["output_shape"]])
    return {"model": path.name, "weights": weights, "instructions_per_inference": fig["instructions_per_inference"],
            "macs": fig["macs"], "instructions_per_mac": fig["instructions_per_mac"],
            "model_flash_bytes": fig["model_flash_bytes"], "classes": dict(classes)}


ELEMENTWISE = ("ADD", "MUL", "MAXIMUM", "MINIMUM", "SOFTMAX", "PAD", "PADV2", "CONCATENATION", "STRIDED_SLICE",
               "LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE")
"""Classes counted per output value; pooling and MEAN per window value (the deployed rule's MACs); the rest
per MAC."""


def per_unit(c: dict[str, Any], name: str) -> tuple[float, str]:
    if c["macs"] and name not in ELEMENTWISE:
        return c["instructions"] / c["macs"], "window value" if "POOL" in name or name == "MEAN" else "MAC"
    return c["instructions"] / max(c["elements"], 1), "output value"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--weights", default="int16", choices=("int16", "int8"))
    ap.add_argument("--cmsis-nn", type=Path, default=ROOT / "benchmarks/experiments/results/cmsis_nn_ops.json",
                    help="CMSIS-NN figures of benchmarks/experiments/cmsis_nn/run.py (printed beside, if present)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/experiments/results/firmware_op_classes.json")
    args = ap.parse_args()
    rows = [measure(p, args.weights) for p in args.models]
    cmsis = json.loads(args.cmsis_nn.read_text()) if args.cmsis_nn.is_file() else None
    write_json_atomic(args.out, {"command": "python benchmarks/experiments/firmware_op_classes.py " + " ".join(
        str(p) for p in args.models) + f" --weights {args.weights}", "models": rows, "cmsis_nn": cmsis})
    print("| model | operator class | layers | instructions | per unit | CMSIS-NN, same shape |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        for name, c in sorted(r["classes"].items(), key=lambda kv: -kv[1]["instructions"]):
            v, unit = per_unit(c, name)
            print(f"| {r['model']} | {name} | {c['layers']} | {c['instructions']:,} | {v:.2f} per {unit} | "
                  f"{cmsis_figure(cmsis, name, c['output_shapes'])} |")
        print(f"| {r['model']} | whole model | | {r['instructions_per_inference']:,} | "
              f"{r['instructions_per_mac']:.2f} per MAC | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
