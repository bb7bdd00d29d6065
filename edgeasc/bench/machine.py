"""The machine a benchmark ran on: CPU model, core count, thread variables and the versions of the libraries
that decide its figures (every report carries it).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

LIBRARIES: tuple[str, ...] = ("edgeasc", "numpy", "ai-edge-litert", "tflite-micro", "torch", "tensorflow",
                              "onnx", "onnxruntime", "onnx2tf")
THREAD_VARIABLES: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict[str, Any]:
    """CPU model, cores, OS, Python, library versions and thread settings: what a timing depends on."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads: dict[str, Any] = {v: os.environ.get(v) for v in THREAD_VARIABLES}
    if "torch" in sys.modules:  # report torch's setting only where torch is already in use
        threads["torch_num_threads"] = sys.modules["torch"].get_num_threads()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
        "threads": threads,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
