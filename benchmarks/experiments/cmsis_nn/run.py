"""CMSIS-NN int8 kernels on the MLPerf Tiny DS-CNN / autoencoder operator shapes, on the emulated Cortex-M4 that
edgeasc's firmware is measured on (QEMU mps2-an386, `-icount shift=0`, SysTick counting instructions, calibrated
on a loop of known length), so edgeasc's kernels can be compared with CMSIS-NN per operator class.

CMSIS-NN is not part of this repository: pass a checkout of ARM-software/CMSIS-NN and the CMSIS-Core include
folder (ARM-software/CMSIS_6 `CMSIS/Core/Include`, or CMSIS_5's). Its int8/int16 sources (not the f16/f32 ones,
as its CMake build with ARM_NN_ENABLE_F32/F16 OFF) are compiled with the firmware's Cortex-M4 flags into a
static library; harness.c links against it with firmware_stub's start-up code and linker script (used in place).

    python benchmarks/experiments/cmsis_nn/run.py --cmsis-nn PATH --cmsis-core-include PATH/CMSIS/Core/Include
        [--opt-levels O2[,Ofast]] [--build benchmarks/.work/cmsis_nn]
        [--out benchmarks/experiments/results/cmsis_nn_ops.json]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
STARTUP = ROOT / "firmware_stub" / "src" / "startup_cm.c"
SYSTICK = ROOT / "firmware_stub" / "src" / "fw_systick.h"  # the firmware's instruction counter and calibration
LDSCRIPT = ROOT / "firmware_stub" / "src" / "mps2.ld"

CC = "arm-none-eabi-gcc"
AR = "arm-none-eabi-ar"
QEMU = "qemu-system-arm"
# firmware_stub/Makefile: ARM_COMMON + M4_FLAGS (the -O level is set per build, -O2 there)
CPU_FLAGS = ["-std=c99", "-mthumb", "-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
             "-ffunction-sections", "-fdata-sections"]
LINK_FLAGS = ["--specs=rdimon.specs", "-nostartfiles", "-T", str(LDSCRIPT), "-Wl,--gc-sections"]
# CMSIS-NN picks its DSP (SIMD) paths with ARM_MATH_DSP, which arm_nn_math_types.h also defines itself from
# __ARM_FEATURE_DSP (set by gcc for -mcpu=cortex-m4); the F32/F16 values are those of its CMake defaults.
CMSIS_DEFS = ["-DARM_MATH_DSP", "-DARM_NN_ENABLE_F32=0", "-DARM_NN_ENABLE_F16=0"]
QEMU_FLAGS = ["-M", "mps2-an386", "-icount", "shift=0", "-nographic", "-monitor", "none", "-serial", "none",
              "-semihosting-config", "enable=on,target=native"]


def _out(cmd: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} exited with {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def _git(path: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cmsis_sources(cmsis_nn: Path) -> list[Path]:
    src = sorted((cmsis_nn / "Source").glob("*/*.c"))
    keep = [p for p in src if not re.search(r"_(f16|f32|flt)\.c$", p.name)]
    if not keep:
        raise SystemExit(f"no CMSIS-NN sources under {cmsis_nn / 'Source'}")
    return keep


def build(cmsis_nn: Path, core_inc: Path, opt: str, build_dir: Path) -> tuple[Path, list[str]]:
    """Compile CMSIS-NN into a static library and link the harness; returns the ELF and the linked members."""
    obj_dir = build_dir / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    cflags = CPU_FLAGS + [opt] + CMSIS_DEFS + ["-I", str(cmsis_nn / "Include"), "-I", str(core_inc)]

    def compile_one(src: Path) -> Path:
        obj = obj_dir / f"{src.parent.name}__{src.stem}.o"
        _out([CC, *cflags, "-c", str(src), "-o", str(obj)])
        return obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as pool:
        objs = list(pool.map(compile_one, cmsis_sources(cmsis_nn)))
    lib = build_dir / "libcmsis-nn.a"
    lib.unlink(missing_ok=True)
    _out([AR, "rcs", str(lib), *map(str, objs)])
    elf = build_dir / "cmsis_nn_ops.elf"
    mapfile = build_dir / "cmsis_nn_ops.map"
    _out([CC, *cflags, "-I", str(SYSTICK.parent), "-Wall", "-Wextra", *LINK_FLAGS, f"-Wl,-Map={mapfile}",
          "-o", str(elf),
          str(HERE / "harness.c"), str(STARTUP), str(lib), "-lm"])
    # archive members the link pulled in ("Archive member included to satisfy reference by file (symbol)")
    text = mapfile.read_text(errors="replace")
    members = sorted(set(re.findall(r"libcmsis-nn\.a\(([^)]+)\.o\)", text)))
    return elf, [m.split("__", 1)[-1] for m in members]


def run_qemu(elf: Path, timeout: float) -> str:
    return _out([QEMU, *QEMU_FLAGS, "-kernel", str(elf)], cwd=elf.parent, timeout=timeout)


def parse(text: str) -> dict[str, Any]:
    calib = re.search(r"fw-calibration instructions=(\d+) ticks=(\d+)", text)
    if calib is None:
        raise SystemExit(f"QEMU printed no calibration line:\n{text[-2000:]}")
    per_tick = round(int(calib.group(1)) / int(calib.group(2)))
    config = dict(re.findall(r"(\w+)=(\S+)", re.search(r"cmsis-config (.*)", text).group(1)))
    empty = int(re.search(r"cmsis-empty-region ticks=(\d+)", text).group(1))
    cases = []
    for line in re.findall(r"^cmsis-case (.*)$", text, re.M):
        kv = dict(re.findall(r"(\w+)=(\S+)", line))
        ticks, work = int(kv["ticks"]), int(kv["work"])
        instr = ticks * per_tick
        row: dict[str, Any] = {"case": kv["name"], "kernel": kv["kernel"], "status": int(kv["status"]),
                               "instructions": instr, "ticks": ticks, kv["unit"]: work,
                               f"instructions_per_{kv['unit'][:-1]}": round(instr / work, 4),
                               "buffer_bytes": int(kv["buffer_bytes"])}
        row["check"] = {k: int(kv[k]) for k in ("out_n", "out_min", "out_max", "out_distinct", "out_saturated",
                                                "ref_mismatch", "ref_maxdiff", "repeat_equal")}
        cases.append(row)
    done = re.search(r"cmsis-done failures=(\d+)", text)
    if done is None:
        raise SystemExit(f"the harness did not finish:\n{text[-2000:]}")
    return {"instructions_per_tick": per_tick, "calibration": {"instructions": int(calib.group(1)),
            "ticks": int(calib.group(2))}, "empty_region_instructions": empty * per_tick,
            "config": {k: int(v) for k, v in config.items()}, "failures": int(done.group(1)), "cases": cases}


def table(cases: list[dict[str, Any]]) -> str:
    lines = [f"{'case':28s} {'kernel':32s} {'instructions':>12s} {'work':>9s} {'per unit':>10s}"]
    for c in cases:
        unit = "mac" if "macs" in c else "element"
        work = c.get("macs", c.get("elements"))
        lines.append(f"{c['case']:28s} {c['kernel']:32s} {c['instructions']:12d} {work:9d} "
                     f"{c[f'instructions_per_{unit}']:7.3f}/{unit[0]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cmsis-nn", type=Path, required=True, help="CMSIS-NN checkout (with Include/ and Source/)")
    p.add_argument("--cmsis-core-include", type=Path, required=True,
                   help="CMSIS-Core include folder holding cmsis_compiler.h (CMSIS_6/CMSIS/Core/Include)")
    p.add_argument("--cmsis-nn-commit", default=None,
                   help="commit of the CMSIS-NN sources when --cmsis-nn is not a git checkout")
    p.add_argument("--opt-levels", default="O2",
                   help="comma-separated gcc -O levels; the first is the main result (O2, as the firmware); "
                        "CMSIS-NN's own CMake default is Ofast")
    p.add_argument("--build", type=Path, default=ROOT / "benchmarks" / ".work" / "cmsis_nn")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "experiments" / "results" / "cmsis_nn_ops.json")
    p.add_argument("--timeout", type=float, default=600, help="QEMU wall-clock limit (s)")
    args = p.parse_args(argv)

    cmsis_nn = args.cmsis_nn.resolve()
    core_inc = args.cmsis_core_include.resolve()
    if not (cmsis_nn / "Include" / "arm_nnfunctions.h").is_file():
        raise SystemExit(f"{cmsis_nn} has no Include/arm_nnfunctions.h")
    if not (core_inc / "cmsis_compiler.h").is_file():
        raise SystemExit(f"{core_inc} has no cmsis_compiler.h")
    commit = _git(cmsis_nn, "rev-parse", "HEAD") or args.cmsis_nn_commit
    dirty = _git(cmsis_nn, "status", "--porcelain", "--untracked-files=no")

    levels = [o.strip().lstrip("-") for o in args.opt_levels.split(",") if o.strip()]
    builds = []
    for level in levels:
        opt = f"-{level}"
        elf, members = build(cmsis_nn, core_inc, opt, args.build / level)
        result = parse(run_qemu(elf, args.timeout))
        result = {"opt": opt, "linked_cmsis_nn_objects": members, **result}
        builds.append(result)
        print(f"\nCMSIS-NN {commit or '?'} on QEMU mps2-an386 (Cortex-M4), {opt}, "
              f"{result['instructions_per_tick']} instructions per SysTick tick:")
        print(table(result["cases"]))
        if result["failures"]:
            print(f"WARNING: {result['failures']} case(s) failed their checks", file=sys.stderr)

    gcc = _out([CC, "--version"]).splitlines()[0]
    qemu = _out([QEMU, "--version"]).splitlines()[0]
    main_build = builds[0]
    record: dict[str, Any] = {
        "what": "CMSIS-NN int8 kernels, one timed call after one warm call, instructions counted like edgeasc's "
                "firmware (QEMU -icount shift=0, SysTick, calibrated); MLPerf Tiny DS-CNN / AD shapes, NHWC, "
                "batch 1; seeded random data; prepare steps (buffer sizes, FC kernel sums) outside the timed "
                "region",
        "command": shlex.join([Path(sys.executable).name, os.path.relpath(__file__, Path.cwd()),
                               *(argv if argv is not None else sys.argv[1:])]),
        "cwd": str(Path.cwd()),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cmsis_nn": {"path": str(cmsis_nn), "commit": commit, "describe": _git(cmsis_nn, "describe", "--tags",
                     "--always"), "dirty": bool(dirty) if dirty is not None else None},
        "cmsis_core_include": {"path": str(core_inc), "commit": _git(core_inc, "rev-parse", "HEAD")},
        "gcc": gcc,
        "qemu": qemu,
        "machine": "mps2-an386 (Cortex-M4)",
        "cflags": CPU_FLAGS + [main_build["opt"]] + CMSIS_DEFS,
        "ldflags": [f if f != str(LDSCRIPT) else os.path.relpath(LDSCRIPT, ROOT) for f in LINK_FLAGS],
        "qemu_flags": QEMU_FLAGS,
        "firmware_files": {os.path.relpath(f, ROOT): _sha256(f) for f in (STARTUP, SYSTICK, LDSCRIPT)},
        "harness_sha256": _sha256(HERE / "harness.c"),
        **{k: main_build[k] for k in ("opt", "instructions_per_tick", "calibration", "empty_region_instructions",
                                      "config", "failures", "linked_cmsis_nn_objects", "cases")},
    }
    if len(builds) > 1:
        record["other_opt_levels"] = {b["opt"]: {"failures": b["failures"], "cases": b["cases"]} for b in builds[1:]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"\nwrote {args.out}")
    return 1 if any(b["failures"] for b in builds) else 0


if __name__ == "__main__":
    sys.exit(main())
