"""PyTorch -> ONNX: BatchNorm folding, the exported network (input normalisation folded into the first convolutions),
the ONNX export and its clean-up passes (constant sub-graphs folded, pooling padding made explicit) before onnx2tf.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.artifacts import write_atomic

log = logging.getLogger(__name__)


ONNX_OPSET = 17
INPUT_NAME = "logmel"
OUTPUT_NAME = "logits"


def fold_batchnorm(model: Any) -> Any:
    """A copy of `model` (eval mode) with every BatchNorm2d that directly follows a Conv2d inside an
    `nn.Sequential` folded into that convolution's weight and bias (and replaced by Identity).

    The edgeasc model families place every BatchNorm so; a BatchNorm elsewhere stays and is logged.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    work = copy.deepcopy(model).float().cpu().eval()
    folded = 0
    for module in work.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                module._modules[b] = nn.Identity()
                folded += 1
    left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in work.modules())
    if left:
        log.warning("%d BatchNorm layers do not follow a convolution and stay in the export", left)
    log.debug("folded %d BatchNorm layers", folded)
    return work


def exported_network(model: Any, input_norm: Any = None) -> Any:
    """The float network the export converts: BatchNorm folded (`fold_batchnorm`), then the input
    normalisation folded into the first convolutions when given (`edgeasc.train.qat.fold_input_normalization`)."""
    folded = fold_batchnorm(model)
    if input_norm is None:
        return folded
    from edgeasc.train.qat import fold_input_normalization

    return fold_input_normalization(folded, input_norm)


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    input_size: tuple[int, ...] = (1, 1, 256, 65),
    metadata: dict[str, Any] | None = None,
    opset: int = ONNX_OPSET,
    input_norm: Any = None,
) -> Path:
    """Fold BatchNorm (and the input normalisation), export to ONNX with a fixed batch-1 input, write atomically.

    Args:
        model: the network (unchanged; a folded copy is exported).
        path: the .onnx file to write.
        input_size: `(1, C, n_mels, frames)`.
        metadata: written to `metadata_props` (non-string values as JSON).
        opset: ONNX opset (>= 17).
        input_norm: an `edgeasc.deploy.runtime.InputNormalization`: the graph then takes `input_norm.apply(x)`
            (`edgeasc.train.qat.fold_input_normalization`).

    Returns:
        The path written.
    """
    import warnings

    import onnx
    import torch

    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    folded = exported_network(model, input_norm)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".onnx_", dir=path.parent) as tmp:  # not the system's temp folder
        tmp_file = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(
                folded, torch.zeros(input_size), str(tmp_file), input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], opset_version=opset, do_constant_folding=True, dynamo=False,
            )
        proto = onnx.load(str(tmp_file))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    fold_constant_subgraphs(proto)
    explicit_pool_padding(proto)
    onnx.checker.check_model(proto)
    bn_nodes = [n.name for n in proto.graph.node if n.op_type == "BatchNormalization"]
    if bn_nodes:
        log.warning("ONNX graph keeps %d BatchNormalization nodes: %s", len(bn_nodes), ", ".join(bn_nodes[:3]))
    return write_atomic(path, lambda p: onnx.save(proto, str(p)))


_FOLDABLE_OPS = frozenset({"Constant", "ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast",
                           "Unsqueeze", "Squeeze", "Gather", "Neg", "Add", "Sub", "Mul", "Div"})


def fold_constant_subgraphs(proto: Any) -> int:
    """Replace every node whose inputs are all constants (and that computes shapes or pads: `_FOLDABLE_OPS`)
    by initializers holding its outputs; returns the number of nodes folded.

    The TorchScript exporter writes `F.pad`'s pads as a chain of Constant, ConstantOfShape, Concat, Reshape,
    Slice, Transpose and Cast. onnx2tf cannot transpose such computed pads from NCHW to NHWC (it padded the
    batch axis of the normalised-input stem); as one int64 initializer it converts them as it does the
    pooling pads.
    """
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = proto.graph
    known = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept, folded = [], 0
    for node in graph.node:
        if node.op_type in _FOLDABLE_OPS and all(i in known for i in node.input if i):
            values = ReferenceEvaluator(node).run(None, {i: known[i] for i in node.input if i})
            for name, value in zip(node.output, values):
                known[name] = np.asarray(value)
            folded += 1
        else:
            kept.append(node)
    initial = {init.name for init in graph.initializer}
    used = {i for node in kept for i in node.input} | {o.name for o in graph.output}
    for name in sorted(used - initial):
        if name in known:
            graph.initializer.append(numpy_helper.from_array(known[name], name))
    del graph.node[:]
    graph.node.extend(kept)
    return folded


def explicit_pool_padding(proto: Any) -> int:
    """Rewrite every zero-padded `AveragePool` (`count_include_pad=1`, PyTorch's default) as `Pad` + `AveragePool`.

    The two compute the same numbers. TFLite's AVERAGE_POOL_2D only knows SAME padding, which divides border
    windows by their valid count, so onnx2tf corrects PyTorch's border windows afterwards with 11 extra ops
    (STRIDED_SLICE, MUL, CONCATENATION), and in the int8 model each MUL and CONCATENATION rounds again. An
    explicit zero PAD is exact in int8 (it writes the zero point) and the pooling then needs no correction:
    2 ops, one rounding. Measured on the demo student: docs/export.md, "Int8 fidelity".

    Args:
        proto: an `onnx.ModelProto`, changed in place.

    Returns:
        The number of pooling nodes rewritten.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = proto.graph
    nodes, rewritten = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        pads = list(attrs.get("pads", []))
        if node.op_type != "AveragePool" or not attrs.get("count_include_pad", 0) or not any(pads):
            nodes.append(node)
            continue
        half = len(pads) // 2  # ONNX pool pads: [x1_begin, x2_begin, ..., x1_end, x2_end] over spatial axes
        base = node.name or node.output[0]  # unique in the graph either way
        pad_name = f"{base}/explicit_pads"
        graph.initializer.append(numpy_helper.from_array(
            np.array([0, 0, *pads[:half], 0, 0, *pads[half:]], dtype=np.int64), pad_name))
        padded = f"{node.output[0]}/padded"
        nodes.append(helper.make_node("Pad", [node.input[0], pad_name], [padded], name=f"{base}/Pad",
                                      mode="constant"))
        kept = {k: v for k, v in attrs.items() if k not in ("pads", "count_include_pad")}
        nodes.append(helper.make_node("AveragePool", [padded], list(node.output), name=node.name, **kept))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten
