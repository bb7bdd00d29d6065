"""What the firmware accepts, and where each tensor lives: the supported operators and constant types
(`check_supported`: one clear line for anything else) and the arena plan (tensors placed by lifetime, a dead
tensor's bytes reused, in-place elementwise operators and aliasing reshapes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgeasc.deploy.tflite_graph import Graph, Tensor
from edgeasc.errors import FirmwareError

SUPPORTED_OPS: tuple[str, ...] = (
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN",
    "PAD", "PADV2", "STRIDED_SLICE", "CONCATENATION", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SOFTMAX",
    "MAXIMUM", "MINIMUM", "LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE",
)
"""TFLite operators the generator emits kernel calls for: everything the edgeasc exporter produces and every
operator of the full-integer MLPerf Tiny reference models (docs/firmware.md has the list per model)."""

TABLE_OPS = frozenset({"LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE"})
"""Elementwise operators the firmware runs as one 256-entry table load per element (firmware/tables.py)."""

ALIAS_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
"""Operators whose output is the input's bytes: no code, the output shares the input's arena slot."""

INPLACE_OPS = frozenset({"ADD", "MUL", "MAXIMUM", "MINIMUM", "LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6",
                         "QUANTIZE"})
"""Elementwise operators (without broadcasting, same type in and out) whose output may take the slot of an input
that dies there: element i is read before it is written."""


ARENA_ALIGN = 4


FIRMWARE_CONSTANT_TYPES = frozenset({"INT8", "INT32", "INT64", "UINT8", "INT16", "FLOAT32"})
"""Types of the constant tensors the generated C can hold."""


def check_supported(graph: Graph, path: str | os.PathLike = "model") -> None:
    """Fail before writing anything when an operator or tensor type has no firmware kernel.

    Raises:
        FirmwareError: names every unsupported operator (with its first index) and what is supported.
    """
    if graph.n_subgraphs != 1:
        raise FirmwareError(f"{Path(path).name}: {graph.n_subgraphs} subgraphs; firmware needs exactly one")
    for t in graph.tensors:
        if t.data is not None and t.dtype not in FIRMWARE_CONSTANT_TYPES:
            raise FirmwareError(f"{Path(path).name}: constant tensor {t.index} has type {t.dtype}, which firmware "
                                "cannot hold")
        if t.dynamic:
            raise FirmwareError(f"{Path(path).name}: tensor {t.name!r} has a dynamic shape; firmware needs static "
                                "shapes")
    int16 = [t.name for t in graph.tensors if t.data is None and t.dtype == "INT16"]
    if int16:
        raise FirmwareError(f"{Path(path).name}: {len(int16)} int16 activation tensors (an --int16-layers export, "
                            "TFLite 16x8); the firmware runs int8 kernels only: export without --int16-layers")
    bad: dict[str, int] = {}
    for op in graph.ops:
        if op.name not in SUPPORTED_OPS:
            bad.setdefault(op.name, op.index)
    if bad:
        found = ", ".join(f"{name} (op {k})" for name, k in bad.items())
        raise FirmwareError(f"{Path(path).name}: unsupported operator(s) {found}; the firmware kernels cover "
                            f"{', '.join(SUPPORTED_OPS)}")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise FirmwareError(f"{Path(path).name}: expected one input and one output, found {len(graph.inputs)} and "
                            f"{len(graph.outputs)}")
    boundary = float_boundaries(graph)
    for op in graph.ops:
        for i in op.inputs + op.outputs:
            t = graph.tensors[i] if i >= 0 else None
            if t is not None and t.data is None and t.dtype != "INT8" and i not in boundary:
                raise FirmwareError(f"{Path(path).name}: op {op.index} ({op.name}) uses {t.dtype} activation "
                                    f"{t.name!r}; firmware needs a full-integer int8 model (edgeasc export --int8); "
                                    "only a float32 model input read by QUANTIZE and a float32 output written by "
                                    "DEQUANTIZE may be float")


def float_boundaries(graph: Graph) -> set[int]:
    """The float32 graph input and output tensors the firmware takes: an input read only by QUANTIZE ops, an
    output written by a DEQUANTIZE (a full-integer model converted with float input and output)."""
    readers: dict[int, list[str]] = {}
    writer: dict[int, str] = {}
    for op in graph.ops:
        for t in op.inputs:
            readers.setdefault(t, []).append(op.name)
        for t in op.outputs:
            writer[t] = op.name
    ok = {t for t in graph.inputs if graph.tensors[t].dtype == "FLOAT32" and readers.get(t)
          and set(readers[t]) == {"QUANTIZE"} and t not in graph.outputs}
    ok |= {t for t in graph.outputs if graph.tensors[t].dtype == "FLOAT32" and writer.get(t) == "DEQUANTIZE"
           and not readers.get(t)}
    return ok


def tensor_bytes(t: Tensor) -> int:
    """Bytes of an activation tensor in the arena (int8, or a float32 boundary)."""
    return t.elements * (4 if t.dtype == "FLOAT32" else 1)


@dataclass
class ArenaPlan:
    """Where each activation tensor lives in the one arena.

    Attributes:
        offsets: tensor index -> byte offset (aliased tensors share their root's offset).
        arena_bytes: the arena size.
        lifetimes: root tensor index -> (first op, last op).
    """

    offsets: dict[int, int]
    arena_bytes: int
    lifetimes: dict[int, tuple[int, int]] = field(default_factory=dict)


def plan_arena(graph: Graph, align: int = ARENA_ALIGN) -> ArenaPlan:
    """Greedy first-fit over tensor lifetimes (TFLM's GreedyMemoryPlanner idea), trying a few placement orders
    (by size, by first use, by lifetime) and keeping the smallest arena.

    A tensor is live from its producer (op 0 for the graph input) to its last reader (past the last op for
    the graph output), inclusive; an op's inputs and outputs never share bytes, except that RESHAPE-like
    outputs alias their input and a same-shape ADD or MUL writes over an input that dies there.
    """
    n_ops = len(graph.ops)
    root: dict[int, int] = {}

    def find(t: int) -> int:
        while root.get(t, t) != t:
            t = root[t]
        return t

    raw_last: dict[int, int] = {t: n_ops for t in graph.outputs}
    for op in graph.ops:
        for t in op.inputs:
            if t >= 0:
                raw_last[t] = max(raw_last.get(t, -1), op.index)
    group_last: dict[int, int] = {}
    protected = {find(t) for t in graph.inputs}
    for op in graph.ops:
        out = op.outputs[0]
        if op.name in ALIAS_OPS:
            r = find(op.inputs[0])
        elif op.name in INPLACE_OPS and all(graph.tensors[t].shape4() == graph.tensors[out].shape4()
                                            and graph.tensors[t].dtype == graph.tensors[out].dtype
                                            for t in op.inputs):
            # an elementwise op may overwrite an input whose bytes nobody reads afterwards (element i is read
            # before it is written); graph inputs stay intact
            dying = [find(t) for t in op.inputs if graph.tensors[t].data is None and find(t) not in protected
                     and max(group_last.get(find(t), -1), raw_last.get(t, -1)) <= op.index]
            if not dying:
                continue
            r = dying[0]
        else:
            continue
        root[out] = r
        group_last[r] = max(group_last.get(r, -1), raw_last.get(out, -1), raw_last.get(op.inputs[0], -1))
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    size: dict[int, int] = {}

    def touch(t: int, k: int) -> None:
        r = find(t)
        first[r] = min(first.get(r, k), k)
        last[r] = max(last.get(r, k), k)
        size[r] = max(size.get(r, 0), tensor_bytes(graph.tensors[t]))

    for t in graph.inputs:
        touch(t, 0)
    for op in graph.ops:
        for t in op.inputs + op.outputs:
            if t >= 0 and graph.tensors[t].data is None:
                touch(t, op.index)
    for t in graph.outputs:
        touch(t, n_ops)
    def first_fit(order: list[int]) -> tuple[int, dict[int, int]]:
        placed: list[tuple[int, int, int]] = []  # (offset, end, root)
        offsets: dict[int, int] = {}
        for r in order:
            need = -(-size[r] // align) * align
            clashes = sorted((o, e) for o, e, q in placed if not (last[q] < first[r] or last[r] < first[q]))
            offset = 0
            for o, e in clashes:
                if offset + need <= o:
                    break
                offset = max(offset, -(-e // align) * align)
            placed.append((offset, offset + need, r))
            offsets[r] = offset
        return max((e for _, e, _ in placed), default=0), offsets

    # a few placement orders (TFLM's planner uses the first); the smallest arena wins
    orders = [sorted(size, key=lambda r: (-size[r], first[r], r)),
              sorted(size, key=lambda r: (first[r], -size[r], r)),
              sorted(size, key=lambda r: (-(last[r] - first[r]) * size[r], r)),
              sorted(size, key=lambda r: (-(last[r] - first[r]), -size[r], r))]
    arena, offsets = min((first_fit(o) for o in orders), key=lambda x: x[0])
    all_offsets = {t: offsets[find(t)] for t in set(root) | set(offsets)}
    return ArenaPlan(all_offsets, arena, {r: (first[r], last[r]) for r in size})
