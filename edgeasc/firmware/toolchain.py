"""Building and running the generated firmware: the host build and the Cortex-M builds (arm-none-eabi-gcc),
QEMU runs with instruction counts, flash and RAM sizes, per-layer dumps, and the TFLite Micro references
they are compared with.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.children import run_child
from edgeasc.deploy.tflite_graph import read_graph
from edgeasc.errors import FirmwareBuildError, FirmwareError
from edgeasc.firmware.generate import STUB_DIR, generate_firmware

TARGETS: dict[str, dict[str, str]] = {
    "cortex-m4": {"machine": "mps2-an386", "make": "cortex-m4", "elf": "build/cortex-m4/fw_cm.elf"},
    "cortex-m7": {"machine": "mps2-an500", "make": "cortex-m7", "elf": "build/cortex-m7/fw_cm.elf"},
}
"""Emulated targets: QEMU machine and Makefile goal."""


def toolchain_missing(target: str) -> str | None:
    """Why `target` (`host`, `cortex-m4`, `cortex-m7`) cannot be built and run here, or None."""
    need = (["make", "gcc"] if target == "host"
            else ["make", "arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"])
    missing = [tool for tool in need if shutil.which(tool) is None]
    if missing:
        hint = "" if target == "host" else (" (apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi "
                                            "qemu-system-arm)")
        return f"{', '.join(missing)} not installed{hint}"
    return None


def build_firmware(target: str, gen_dir: str | os.PathLike, build_dir: str | os.PathLike) -> Path:
    """`make -C firmware_stub <target>` for generated sources in `gen_dir`; returns the binary.

    Raises:
        FirmwareBuildError: a tool is missing or the build failed (with the compiler's last lines).
    """
    if target != "host" and target not in TARGETS:
        raise FirmwareError(f"unknown target {target!r}; expected host or one of {', '.join(TARGETS)}")
    reason = toolchain_missing(target)
    if reason:
        raise FirmwareBuildError(f"cannot build for {target}: {reason}")
    gen_dir, build_dir = Path(gen_dir).resolve(), Path(build_dir).resolve()
    cmd = ["make", "-s", "-C", str(STUB_DIR), target, f"GEN={gen_dir}", f"BUILD={build_dir}"]
    proc = run_child(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise FirmwareBuildError(f"building {target} failed:\n{tail}")
    return build_dir / ("host/fw_host" if target == "host" else f"{target}/fw_cm.elf")


def _io_array(inputs: np.ndarray) -> np.ndarray:
    """Inputs as the firmware reads them: float32 stays float32 (a float-input model), anything else int8."""
    arr = np.asarray(inputs)
    return np.ascontiguousarray(arr, dtype=np.float32 if arr.dtype == np.float32 else np.int8)


def output_dtype(tflite_path: str | os.PathLike) -> Any:
    """numpy dtype of the model's output as the firmware writes it: float32 after a DEQUANTIZE, else int8."""
    graph = read_graph(tflite_path)
    return np.float32 if graph.tensors[graph.outputs[0]].dtype == "FLOAT32" else np.int8


def random_inputs(tflite_path: str | os.PathLike, n_inputs: int, seed: int = 0) -> np.ndarray:
    """`(n_inputs, input size)` inputs drawn with `seed`, for a check without a dataset: uniform int8, or for a
    float32 input read by QUANTIZE uniform floats over the quantised range widened by a quarter on each side
    (so the clamps are reached too)."""
    graph = read_graph(tflite_path)
    t = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(seed)
    if t.dtype != "FLOAT32":
        return rng.integers(-128, 128, size=(n_inputs, t.elements), dtype=np.int8)
    q = next((graph.tensors[op.outputs[0]] for op in graph.ops if graph.inputs[0] in op.inputs), None)
    scale, zp = (q.scale, q.zero_point) if q is not None and q.scale else (1.0, 0)
    lo, hi = scale * (-128 - zp), scale * (127 - zp)
    pad = (hi - lo) / 4
    return rng.uniform(lo - pad, hi + pad, size=(n_inputs, t.elements)).astype(np.float32)


def run_host(binary: str | os.PathLike, inputs: np.ndarray, output_size: int,
             output_dtype: Any = np.int8) -> np.ndarray:
    """Outputs `(N, output_size)` of the host build for inputs `(N, input_size)`: int8, or float32 for a model
    with a float32 input or output (`output_dtype`)."""
    inputs = _io_array(inputs).reshape(len(inputs), -1)
    with tempfile.TemporaryDirectory(prefix="edgeasc_fw_") as tmp:
        src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        inputs.tofile(src)
        _run([str(binary), "infer", str(src), str(dst)], "the host firmware")
        return np.fromfile(dst, dtype=output_dtype).reshape(len(inputs), output_size)


def run_host_frontend(binary: str | os.PathLike, waves: np.ndarray, n_mels: int, n_frames: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel `(N, n_mels, n_frames)` float32, int8 model inputs `(N, n_mels * n_frames)`) of the C frontend."""
    waves = np.ascontiguousarray(waves, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="edgeasc_fw_") as tmp:
        src, mel, q = (Path(tmp) / n for n in ("w.f32", "mel.f32", "q.i8"))
        waves.tofile(src)
        _run([str(binary), "frontend", str(src), str(mel), str(q)], "the C frontend")
        return (np.fromfile(mel, dtype=np.float32).reshape(len(waves), n_mels, n_frames),
                np.fromfile(q, dtype=np.int8).reshape(len(waves), n_mels * n_frames))


def dump_layers(binary: str | os.PathLike, gen_dir: str | os.PathLike, x: np.ndarray) -> dict[int, np.ndarray]:
    """Each operator's output (tensor index -> flat array, int8 or float32) of one host inference, read from
    arena snapshots."""
    info = _read_json(Path(gen_dir) / "firmware.json")
    arena = int(info["arena_bytes"])
    with tempfile.TemporaryDirectory(prefix="edgeasc_fw_") as tmp:
        src, dst = Path(tmp) / "in.bin", Path(tmp) / "arena.bin"
        _io_array(x).reshape(-1).tofile(src)
        _run([str(binary), "dump", str(src), str(dst)], "the host firmware")
        snaps = np.fromfile(dst, dtype=np.uint8).reshape(-1, arena)
    out = {}
    for k, layer in enumerate(info["layers"]):
        if layer["kernel"] == "fused":  # a folded PAD has no output of its own
            continue
        dtype = np.dtype(layer.get("output_dtype", "int8"))
        n = int(np.prod(layer["output_shape"], dtype=np.int64)) * dtype.itemsize
        raw = snaps[k + 1, layer["output_offset"]:layer["output_offset"] + n].copy()
        out[int(layer["output_tensor"])] = raw.view(dtype)
    return out


def reference_layers(tflite_path: str | os.PathLike, x: np.ndarray) -> dict[int, np.ndarray]:
    """Every operator output (tensor index -> flat array) of one TFLite Micro inference (its reference
    kernels, with all tensors preserved): what `dump_layers` is compared with."""
    from edgeasc.deploy.runtime import tflm_runtime

    runtime = tflm_runtime()
    interp = runtime.Interpreter.from_file(str(tflite_path), arena_size=16_000_000,
                                           intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    detail = interp.get_input_details(0)
    interp.set_input(np.asarray(x, dtype=detail["dtype"]).reshape(detail["shape"]), 0)
    interp.invoke()
    graph = read_graph(tflite_path)
    return {t: np.array(interp.GetTensor(t, 0)["tensor_data"]).reshape(-1)
            for op in graph.ops for t in op.outputs}


def _run(cmd: list[str], what: str, cwd: str | os.PathLike | None = None, timeout_s: float = 600) -> str:
    try:
        proc = run_child(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise FirmwareBuildError(f"{what} did not finish within {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise FirmwareBuildError(f"{what} exited with {proc.returncode}: {tail}")
    return proc.stdout


def _read_json(path: Path) -> dict[str, Any]:
    import json

    if not path.is_file():
        raise FirmwareError(f"{path} not found; run `edgeasc firmware MODEL --out {path.parent}` first")
    return json.loads(path.read_text(encoding="utf-8"))


def run_qemu(target: str, elf: str | os.PathLike, inputs: np.ndarray, timeout_s: float = 600,
             output_dtype: Any = np.int8) -> dict[str, Any]:
    """Run a Cortex-M build under QEMU (`-icount shift=0`, semihosting) on int8 (or float32) inputs.

    Returns:
        `logits` (N, output_size) int8 (or float32: `output_dtype`), `instructions` per inference (N), `layer_instructions` of the first
        inference, `instructions_per_tick` (calibrated on a loop of known length) and the raw ticks.
    """
    if target not in TARGETS:
        raise FirmwareError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    elf = Path(elf).resolve()
    _io_array(inputs).tofile(elf.parent / "fw_inputs.bin")
    cmd = ["qemu-system-arm", "-M", TARGETS[target]["machine"], "-icount", "shift=0", "-nographic", "-monitor",
           "none", "-serial", "none", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    text = _run(cmd, f"QEMU ({target})", cwd=elf.parent, timeout_s=timeout_s)
    calib = re.search(r"fw-calibration instructions=(\d+) ticks=(\d+)", text)
    if calib is None:
        raise FirmwareBuildError(f"QEMU ({target}) printed no calibration line: {text.strip()[-300:]}")
    per_tick = round(int(calib.group(1)) / int(calib.group(2)))
    parse = float if np.dtype(output_dtype).kind == "f" else int
    logits = [[parse(v) for v in m.group(2).split(",")]
              for m in re.finditer(r"fw-logits (\d+) m-results-\[([^\]]*)\]", text)]
    totals = [int(m.group(2)) for m in re.finditer(r"fw-total (\d+) ticks=(\d+)", text)]
    layers = [{"layer": int(m.group(1)), "name": m.group(2), "instructions": int(m.group(3)) * per_tick,
               "macs": int(m.group(4))} for m in re.finditer(r"fw-layer (\d+) (\S+) ticks=(\d+) macs=(\d+)", text)]
    if len(logits) != len(inputs) or len(totals) != len(inputs):
        raise FirmwareBuildError(f"QEMU ({target}) ran {len(logits)} of {len(inputs)} inputs: {text.strip()[-300:]}")
    return {"logits": np.array(logits, dtype=output_dtype), "instructions": [t * per_tick for t in totals],
            "ticks": totals, "instructions_per_tick": per_tick, "layer_instructions": layers}


_FLASH_SECTIONS = (".text", ".ARM.exidx", ".ARM.extab", ".preinit_array", ".init_array", ".fini_array", ".data")


def firmware_size(elf: str | os.PathLike) -> dict[str, int]:
    """Flash and static RAM of a Cortex-M build (`arm-none-eabi-size`), whole image and the model's own part.

    flash = code + read-only data (+ the load image of .data); RAM = .data + .bss (the reserved heap and stack
    regions of the linker script are not counted). `model_*` come from model.o (weights, tables, arena),
    `kernels_flash_bytes` from fw_kernels.o.
    """
    elf = Path(elf)
    text = _run(["arm-none-eabi-size", "-A", str(elf)], "arm-none-eabi-size")
    sections = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+", text, re.M)}
    flash = sum(sections.get(s, 0) for s in _FLASH_SECTIONS)
    ram = sections.get(".data", 0) + sections.get(".bss", 0)
    out = {"flash_bytes": flash, "ram_bytes": ram}
    for name, obj in (("model", elf.parent / "model.o"), ("kernels", elf.parent / "fw_kernels.o")):
        if obj.is_file():
            berkeley = _run(["arm-none-eabi-size", str(obj)], "arm-none-eabi-size").strip().splitlines()[-1].split()
            t, d, b = (int(v) for v in berkeley[:3])
            out[f"{name}_flash_bytes"] = t + d
            if name == "model":
                out["model_ram_bytes"] = d + b
    return out


def measure_firmware(
    tflite_path: str | os.PathLike,
    target: str = "cortex-m4",
    inputs: np.ndarray | None = None,
    work_dir: str | os.PathLike | None = None,
    seed: int = 0,
    weights: str = "int16",
) -> dict[str, Any]:
    """Generate, build and run the firmware of a model on an emulated Cortex-M; the bench harness calls this.

    Args:
        tflite_path: full-integer int8 .tflite.
        target: `cortex-m4` (QEMU mps2-an386) or `cortex-m7` (mps2-an500).
        inputs: inputs `(N, input_size)` (int8, or float32 for a float-input model); default one seeded
            random input (`random_inputs`) (instruction counts
            hardly depend on the data: only clamps and rounding branch).
        work_dir: where sources and builds go (default a temporary folder, removed afterwards).
        seed: seed of the default input.
        weights: convolution weight storage, `int16` or `int8` (`generate_firmware`).

    Returns:
        target, machine, instructions_per_inference, macs (deployed rule), instructions_per_mac, flash_bytes,
        ram_bytes (static .data + .bss), model_flash_bytes, model_ram_bytes, kernels_flash_bytes,
        arena_bytes, instructions_per_tick, layers (per-layer instructions and MACs), logits.

    Raises:
        FirmwareBuildError: the arm toolchain or QEMU is missing, or the build or run failed.
    """
    reason = toolchain_missing(target)
    if reason:
        raise FirmwareBuildError(f"cannot measure {target} firmware: {reason}")
    with tempfile.TemporaryDirectory(prefix="edgeasc_fw_") as tmp:
        work = Path(work_dir) if work_dir else Path(tmp)
        gen = generate_firmware(tflite_path, work / "model", weights)
        elf = build_firmware(target, work / "model", work / "build")
        if inputs is None:
            inputs = random_inputs(tflite_path, 1, seed)
        run = run_qemu(target, elf, inputs, output_dtype=output_dtype(tflite_path))
        size = firmware_size(elf)
    instr = int(run["instructions"][0])
    return {"target": target, "machine": TARGETS[target]["machine"], "weights": weights,
            "instructions_per_inference": instr,
            "macs": gen.macs, "instructions_per_mac": instr / gen.macs if gen.macs else None, **size,
            "arena_bytes": gen.arena_bytes, "instructions_per_tick": run["instructions_per_tick"],
            "layers": run["layer_instructions"], "logits": run["logits"].tolist()}


def bench_figures(model_path: str | os.PathLike) -> dict[str, Any]:
    """The firmware section of `edgeasc bench --firmware`: `measure_firmware` on the Cortex-M4, without the
    per-layer rows and logits."""
    figures = measure_firmware(model_path, "cortex-m4")
    return {k: v for k, v in figures.items() if k not in ("layers", "logits")}
