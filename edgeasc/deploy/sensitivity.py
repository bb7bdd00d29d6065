"""Int8 simulation of a BatchNorm-folded network in torch, and the per-tensor sensitivity table built on it.

TFLite's full-integer model (TFLite quantisation spec) rounds at fixed places: the input; every conv/dense
weight, per output channel, symmetric to [-127, 127]; and the output of every operator that produces a new
tensor (a convolution with its fused ReLU, an ADD with its fused ReLU, MEAN), per tensor, asymmetric int8
over the calibration min..max widened to include 0. Pooling and padding keep their input's scale. The
simulator traces the network with `torch.fx`, finds those places, records their calibration ranges and
runs the float graph with any subset of them rounded. Int32 bias rounding and the fixed-point requantisation
inside each kernel are left out (both are below one output step); how close the simulation comes to the real
TFLite model is reported beside every table (`simulated_agreement` against the exported file's).

A tensor can be simulated at 16 bits instead (TFLite's 16x8 scheme: int16 activations, symmetric, zero
point 0, int8 weights), which is how `--int16-layers auto` chooses its layers.

The sensitivity table quantises one tensor at a time (everything else float) and records the cost in top-1
agreement with the float model and in macro accuracy: the first thing to read when int8 disappoints
(docs/export.md, "When int8 loses accuracy").
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, fx, nn

from edgeasc.metrics import macro_accuracy
from edgeasc.train.qat import NormalizedInputConv, quantize_per_channel, quantize_per_tensor

log = logging.getLogger(__name__)

_ADDS = (operator.add, torch.add)
_PASS_MODULES = (nn.Identity, nn.Dropout)
_SAME_SCALE_MODULES = (nn.AvgPool2d, nn.MaxPool2d, nn.ZeroPad2d, nn.ConstantPad2d)
_RESHAPES = {"flatten", "squeeze", "view", "reshape", "contiguous"}


@dataclass(frozen=True)
class QuantPoint:
    """One place where the int8 model rounds.

    Attributes:
        name: `input`; `<conv>.weight` for a convolution's weights (`in_c.0.0.weight`); for an activation
            tensor, the layer that writes it: a convolution (`in_c.0.0`, its ReLU fused), an add
            (`stages.s1.b1.add_1`, the enclosing module and the graph node) or a pooling module.
        kind: `input`, `weights` or `activation`.
        node: the fx node (activation) or module path (weights).
    """

    name: str
    kind: str
    node: str


class Int8Simulator:
    """A folded float network with switchable int8 rounding at TFLite's quantisation points.

    Args:
        model: the network as exported (BatchNorm folded; eval mode). It is traced, not modified.
        calibration: input batch `(N, C, F, T)` the ranges are recorded on (the export's calibration features).
        batch_size: clips per forward pass.

    Attributes:
        points: every `QuantPoint`, input first, then in graph order (weights before their layer's output).
        ranges: activation node -> (min, max) over the calibration data.
    """

    def __init__(self, model: nn.Module, calibration: Tensor, batch_size: int = 128) -> None:
        self.gm = fx.symbolic_trace(model.eval())
        self.batch_size = batch_size
        self.modules = dict(self.gm.named_modules())
        self._wrappers = {k for k, m in model.named_modules() if isinstance(m, NormalizedInputConv)}
        self._biases: dict[str, Tensor] = {}  # corrected biases (`correct_biases`), used with the int8 weights
        self._quantised_weights = {
            name: quantize_per_channel(m.weight.detach())
            for name, m in self.modules.items() if isinstance(m, (nn.Conv2d, nn.Linear))
        }
        nodes = list(self.gm.graph.nodes)
        self._last_use = {}
        for i, node in enumerate(nodes):
            for a in node.all_input_nodes:
                self._last_use[a.name] = i
        self._free_after: dict[int, list[str]] = {}
        for name, i in self._last_use.items():
            self._free_after.setdefault(i, []).append(name)
        self._act: dict[str, str] = {}  # node -> its own range ("own") or the node whose grid it keeps
        self.points: list[QuantPoint] = []
        self._find_points()
        self.ranges: dict[str, tuple[float, float]] = {}
        self._record(calibration)

    # ----------------------------------------------------------------------------------------------
    def _users(self, node: fx.Node) -> list[fx.Node]:
        """Users of `node`, looking through pass-through modules (the Identity left by BatchNorm folding)."""
        out = []
        for u in node.users:
            if u.op == "call_module" and isinstance(self.modules[u.target], _PASS_MODULES):
                out += self._users(u)
            else:
                out.append(u)
        return out

    def _source(self, node: fx.Node) -> fx.Node:
        """The node whose quantised value `node` carries (through pass-through modules and reshapes)."""
        while True:
            if node.op == "call_module" and isinstance(self.modules[node.target], _PASS_MODULES + _SAME_SCALE_MODULES):
                node = node.args[0]
            elif node.op == "call_method" and node.target in _RESHAPES:
                node = node.args[0]
            elif node.op == "call_function" and getattr(node.target, "__name__", "") in _RESHAPES:
                node = node.args[0]
            else:
                return node

    def _is_relu(self, node: fx.Node) -> bool:
        return (node.op == "call_module" and isinstance(self.modules[node.target], nn.ReLU)) or (
            node.op == "call_function" and node.target in (torch.relu, nn.functional.relu))

    def _label(self, node: fx.Node) -> str:
        """A readable name: the module path for a module's output (a conv's, with its ReLU fused), else the
        enclosing module's path and the node (`stages.s1.b1.add_1`)."""
        if node.op == "call_module":
            parent, _, _ = node.target.rpartition(".")
            if parent in self._wrappers:
                return parent  # the first convolution, rewritten for the normalised input
            return node.target
        stack = list(node.meta.get("nn_module_stack", {}))
        return f"{stack[-1]}.{node.name}" if stack else node.name

    def _find_points(self) -> None:
        fused: dict[str, str] = {}  # ReLU node -> the label of the op it is fused into
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.points.append(QuantPoint("input", "input", node.name))
                self._act[node.name] = "own"
                continue
            produces = False
            if node.op == "call_module":
                mod = self.modules[node.target]
                if isinstance(mod, (nn.Conv2d, nn.Linear)):
                    self.points.append(QuantPoint(f"{self._label(node)}.weight", "weights", node.target))
                    produces = True
                elif isinstance(mod, (nn.ReLU, nn.AdaptiveAvgPool2d)):
                    produces = True
                elif isinstance(mod, _SAME_SCALE_MODULES):
                    self._act[node.name] = self._source(node.args[0]).name  # rounds to its input's grid
            elif node.op == "call_function" and node.target is nn.functional.pad:
                self._act[node.name] = self._source(node.args[0]).name  # PAD/PADV2 keep the input's grid
            elif node.op == "call_function" and (node.target in _ADDS or self._is_relu(node)):
                produces = True
            if not produces:
                continue
            users = self._users(node)
            if not self._is_relu(node) and len(users) == 1 and self._is_relu(users[0]):
                fused[users[0].name] = self._label(node)  # TFLite fuses the ReLU: the rounding happens after it
                continue
            self._act[node.name] = "own"
            self.points.append(QuantPoint(fused.get(node.name, self._label(node)), "activation", node.name))

    def _record(self, x: Tensor) -> None:
        lo: dict[str, float] = {}
        hi: dict[str, float] = {}

        def observe(node: str, t: Tensor) -> Tensor:
            if self._act.get(node) == "own":
                lo[node] = min(lo.get(node, np.inf), float(t.min()))
                hi[node] = max(hi.get(node, -np.inf), float(t.max()))
            return t

        with torch.no_grad():
            for s in range(0, len(x), self.batch_size):
                self._forward(x[s : s + self.batch_size], observe, set())
        self.ranges = {k: (lo[k], hi[k]) for k in lo}

    # ----------------------------------------------------------------------------------------------
    def _forward(self, x: Tensor, on_value: Any, weights: set[str], on_module_input: Any = None) -> Tensor:
        """The traced graph on `x`: `on_value(node, value)` may replace each node's value (rounding);
        convolutions in `weights` use their quantised weights; values are freed after their last use."""
        env: dict[str, Any] = {}

        def load(a: Any) -> Any:
            return fx.node.map_arg(a, lambda n: env[n.name])

        result = None
        for i, node in enumerate(self.gm.graph.nodes):
            if node.op == "placeholder":
                val = x
            elif node.op == "get_attr":
                val = getattr(self.gm, node.target)
            elif node.op == "call_module":
                mod = self.modules[node.target]
                args, kwargs = load(node.args), load(node.kwargs)
                if on_module_input is not None:
                    on_module_input(node.target, args[0])
                if node.target in weights:
                    val = _call_with_weight(mod, self._quantised_weights[node.target], args[0],
                                            self._biases.get(node.target, mod.bias))
                else:
                    val = mod(*args, **kwargs)
            elif node.op == "call_function":
                val = node.target(*load(node.args), **load(node.kwargs))
            elif node.op == "call_method":
                args = load(node.args)
                val = getattr(args[0], node.target)(*args[1:], **load(node.kwargs))
            else:  # output
                result = load(node.args[0])
                break
            env[node.name] = on_value(node.name, val)
            for name in self._free_after.get(i, ()):
                env.pop(name, None)
        return result

    def input_covariances(self, x: Tensor) -> dict[str, np.ndarray]:
        """`E[p p^T]` of every convolution's input patches `p` on `x` (float network), per group:
        module path -> `(groups, n, n)`, the statistics `edgeasc.train.qat.round_weights` rounds against."""
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}

        def observe(path: str, inp: Tensor) -> None:
            mod = self.modules[path]
            if not isinstance(mod, nn.Conv2d):
                return
            cols = nn.functional.unfold(inp.double(), mod.kernel_size, mod.dilation, mod.padding, mod.stride)
            g = mod.groups
            n = cols.shape[1] // g
            cols = cols.reshape(cols.shape[0], g, n, -1).permute(1, 0, 3, 2).reshape(g, -1, n)  # (g, B * L, n)
            sums[path] = sums.get(path, 0) + torch.einsum("gbi,gbj->gij", cols, cols).numpy()
            counts[path] = counts.get(path, 0) + cols.shape[1]

        with torch.no_grad():
            for s in range(0, len(x), self.batch_size):
                self._forward(x[s : s + self.batch_size], lambda node, t: t, set(), observe)
        return {k: v / counts[k] for k, v in sums.items()}

    def correct_biases(self, x: Tensor, bits16: set[str] = frozenset()) -> dict[str, np.ndarray]:
        """Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization
        and Bias Correction", section 4.2, here measured on data), one convolution at a time in graph order:
        with everything upstream quantised and already corrected (the points in `bits16` at 16 bits), the
        convolution's output, per channel and before its ReLU, is off its float mean over `x`; its bias,
        used with its int8 weights, is moved by minus that error. (Correcting every layer at once from one
        measurement counts an upstream error again downstream, and iterating that diverges on deep
        networks.) One quantised pass over all of `x` as a single batch does it: a bias is additive, so each
        convolution's output is shifted as it is computed. Replaces the corrections of an earlier call.

        Returns:
            module path -> the correction (float64, per output channel) added to the float bias.
        """
        self._biases = {}
        convs = {n.name: n.target for n in self.gm.graph.nodes
                 if n.op == "call_module" and isinstance(self.modules[n.target], nn.Conv2d)}
        weights, rounded = self._rounding({p.name for p in self.points}, bits16)

        def channel_mean(t: Tensor) -> Tensor:
            return t.sum(dim=(0, 2, 3), dtype=torch.float64) / (t.shape[0] * t.shape[2] * t.shape[3])

        want: dict[str, Tensor] = {}

        def on_float(node: str, t: Tensor) -> Tensor:
            if node in convs:
                want[convs[node]] = want.get(convs[node], 0) + channel_mean(t) * len(t)
            return t

        with torch.no_grad():
            for s in range(0, len(x), self.batch_size):
                self._forward(x[s : s + self.batch_size], on_float, set())
        want = {k: v / len(x) for k, v in want.items()}
        out: dict[str, Tensor] = {}

        def on_value(node: str, t: Tensor) -> Tensor:
            if node in convs:  # the convolution's own output: before its ReLU and its rounding
                path = convs[node]
                out[path] = want[path] - channel_mean(t)
                t = t + out[path].to(t.dtype).view(1, -1, 1, 1)
            return rounded(node, t)

        with torch.no_grad():
            self._forward(x, on_value, weights)
        for path, delta in out.items():
            mod = self.modules[path]
            base = mod.bias.detach().double() if mod.bias is not None else torch.zeros_like(delta)
            self._biases[path] = (base + delta).to(mod.weight.dtype)
        return {path: v.numpy() for path, v in out.items()}

    def _rounding(self, names: set[str], bits16: set[str]) -> tuple[set[str], Any]:
        """For the points `names`: the modules whose weights are quantised, and the `on_value` of `_forward`
        that rounds their activations (those in `bits16` at 16 bits)."""
        weights = {p.node for p in self.points if p.kind == "weights" and p.name in names}
        acts = {p.node: p.name for p in self.points if p.kind != "weights" and p.name in names}
        grid_of = {n: (n if src == "own" else src) for n, src in self._act.items()}

        def on_value(node: str, t: Tensor) -> Tensor:
            src = grid_of.get(node)
            if src is None or src not in acts:
                return t
            return quantize_per_tensor(t, *self.ranges[src], 16 if acts[src] in bits16 else 8)

        return weights, on_value

    def set_weights(self, path: str, weight: Tensor) -> None:
        """Simulate the quantised weights of conv `path` as `weight` (e.g. data-aware rounding)."""
        self._quantised_weights[path] = weight.to(self.modules[path].weight.dtype)

    def run(self, x: Tensor, quantize: set[str] | str = "all", bits16: set[str] = frozenset()) -> Tensor:
        """Logits of `x` with the named points rounded (`"all"`: every point; a set of `QuantPoint.name`s).

        Args:
            bits16: point names simulated at 16 bits (activations only; TFLite's 16x8 scheme).
        """
        names = {p.name for p in self.points} if quantize == "all" else set(quantize)
        unknown = names - {p.name for p in self.points}
        if unknown:
            raise ValueError(f"unknown quantisation points: {sorted(unknown)[:3]}")
        weights, on_value = self._rounding(names, bits16)
        out = []
        with torch.no_grad():
            for s in range(0, len(x), self.batch_size):
                out.append(self._forward(x[s : s + self.batch_size], on_value, weights))
        return torch.cat(out)


def _call_with_weight(mod: nn.Module, weight: Tensor, x: Tensor, bias: Tensor | None) -> Tensor:
    if isinstance(mod, nn.Conv2d):
        return mod._conv_forward(x, weight, bias)
    return nn.functional.linear(x, weight, bias)


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------
def _scores(logits: Tensor, ref_pred: Tensor, y: np.ndarray) -> tuple[float, float]:
    """(agreement with `ref_pred`, macro accuracy) of `logits`."""
    pred = logits.argmax(1)
    return float((pred == ref_pred).float().mean()), macro_accuracy(np.asarray(y), pred.numpy())


def sensitivity_table(
    sim: Int8Simulator, x: Tensor, y: np.ndarray, bits16: set[str] = frozenset()
) -> dict[str, Any]:
    """Quantise one point at a time, then all weights, all activations and everything.

    Args:
        sim: the simulator of the exported network.
        x: evaluation inputs in the exported model's input domain `(N, C, F, T)`.
        y: their labels.
        bits16: points kept at 16 bits in the "all" rows (mixed precision).

    Returns:
        `{"n_clips", "float_macro_accuracy", "all": {...}, "weights_only": {...}, "activations_only": {...},
        "rows": [{"point", "kind", "agreement", "macro_accuracy", "agreement_cost_pp", "accuracy_cost_pp"}]}`,
        rows sorted by agreement cost, worst first.
    """
    with torch.no_grad():
        ref = sim.run(x, quantize=set())
    ref_pred = ref.argmax(1)
    _, float_macro = _scores(ref, ref_pred, y)

    def row(names: set[str] | str, **extra: Any) -> dict[str, Any]:
        agreement, macro = _scores(sim.run(x, names, bits16), ref_pred, y)
        return {**extra, "agreement": agreement, "macro_accuracy": macro,
                "agreement_cost_pp": 100 * (1 - agreement), "accuracy_cost_pp": 100 * (float_macro - macro)}

    rows = [row({p.name}, point=p.name, kind=p.kind) for p in sim.points]
    rows.sort(key=lambda r: (-r["agreement_cost_pp"], -r["accuracy_cost_pp"]))
    return {
        "n_clips": int(len(x)),
        "float_macro_accuracy": float_macro,
        "all": row("all"),
        "weights_only": row({p.name for p in sim.points if p.kind == "weights"}),
        "activations_only": row({p.name for p in sim.points if p.kind != "weights"}),
        "int16": sorted(bits16),
        "rows": rows,
    }


def format_sensitivity(table: dict[str, Any], top: int = 15) -> str:
    """The worst `top` rows and the summary rows, aligned (percent)."""
    head = ["quantised alone", "kind", "agree %", "cost pp", "macro %", "drop pp"]
    lines = [[r["point"], r["kind"], f"{100 * r['agreement']:.2f}", f"{r['agreement_cost_pp']:.2f}",
              f"{100 * r['macro_accuracy']:.2f}", f"{r['accuracy_cost_pp']:.2f}"] for r in table["rows"][:top]]
    for key, label in (("weights_only", "all weights"), ("activations_only", "all activations"), ("all", "everything")):
        r = table[key]
        lines.append([label, "-", f"{100 * r['agreement']:.2f}", f"{r['agreement_cost_pp']:.2f}",
                      f"{100 * r['macro_accuracy']:.2f}", f"{r['accuracy_cost_pp']:.2f}"])
    rows = [head, *lines]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    text = [f"int8 sensitivity (torch simulation, {table['n_clips']} clips; float macro "
            f"{100 * table['float_macro_accuracy']:.2f}%)"]
    text += ["  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))) for row in rows]
    if "tflite_int8_agreement" in table:
        text.append(f"(the exported int8 file itself: {100 * table['tflite_int8_agreement']:.2f}% agreement on the "
                    "parity clips; next, if int8 loses too much: --int16-layers with the names above, or auto)")
    return "\n".join(text)


# --------------------------------------------------------------------------------------------------
# From the simulation's points to the TFLite graph
# --------------------------------------------------------------------------------------------------
_LAYOUT_OPS = {"PAD", "PADV2", "RESHAPE", "QUANTIZE"}


def tflite_tensors(sim: Int8Simulator, graph: Any) -> dict[str, int]:
    """Each activation point's tensor in a converted float TFLite graph (`edgeasc.deploy.tflite_graph.read_graph`).

    Convolutions are found by their weights (the float TFLite holds the folded torch weights, transposed to
    OHWI, or 1HWC for depthwise); every other point by its inputs: the op of the expected kind whose
    activation inputs are the points' tensors (looking through PAD and RESHAPE).

    Returns:
        point name -> tensor index; points not found are left out (`tflite_ops` reports them).
    """
    producer = {t: op for op in graph.ops for t in op.outputs}
    consumers: dict[int, list[Any]] = {}
    for op in graph.ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op)

    def through_layout(t: int) -> int:
        while t in producer and producer[t].name in _LAYOUT_OPS:
            t = producer[t].inputs[0]
        return t

    def activations(op: Any) -> set[int]:
        return {through_layout(t) for t in op.inputs if t >= 0 and graph.tensors[t].data is None}

    convs = {}
    for op in graph.ops:
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and graph.tensors[op.inputs[1]].data is not None:
            convs[op.index] = np.asarray(graph.tensors[op.inputs[1]].data, dtype=np.float32)
    node_tensor: dict[str, int] = {}
    for node in sim.gm.graph.nodes:
        if node.op == "placeholder":
            node_tensor[node.name] = graph.inputs[0]
            continue
        args = [a for a in node.all_input_nodes if a.name in node_tensor]
        mod = sim.modules.get(node.target) if node.op == "call_module" else None
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            w = mod.weight.detach().numpy()
            if isinstance(mod, nn.Linear):
                want = w
            else:
                # OHWI; a depthwise conv is (1, kh, kw, C) as DEPTHWISE_CONV_2D, OHWI as a grouped CONV_2D
                want = [w.transpose(0, 2, 3, 1)] + ([w.transpose(1, 2, 3, 0)] if mod.groups > 1 else [])
            for k, have in convs.items():
                if any(have.shape == v.shape and np.allclose(have, v, rtol=1e-5, atol=1e-7)
                       for v in (want if isinstance(want, list) else [want])):
                    node_tensor[node.name] = graph.ops[k].outputs[0]
                    break
            continue
        if isinstance(mod, (nn.ReLU, *_PASS_MODULES)) or (node.op == "call_function" and sim._is_relu(node)) or (
                node.op == "call_method" and node.target in _RESHAPES):
            if args:
                node_tensor[node.name] = node_tensor[args[0].name]  # fused, or no op of its own
            continue
        if node.op == "call_function" and node.target is nn.functional.pad:
            if args:
                node_tensor[node.name] = node_tensor[args[0].name]  # PAD/PADV2 are looked through
            continue
        kinds = ({"ADD"} if node.op == "call_function" and node.target in _ADDS else
                 {"AVERAGE_POOL_2D"} if isinstance(mod, nn.AvgPool2d) else
                 {"MEAN", "AVERAGE_POOL_2D"} if isinstance(mod, nn.AdaptiveAvgPool2d) else set())
        if not kinds or len(args) != len(node.all_input_nodes):
            continue
        want_in = {through_layout(node_tensor[a.name]) for a in args}
        for op in graph.ops:
            if op.name in kinds and activations(op) == want_in:
                node_tensor[node.name] = op.outputs[0]
                break
    return {p.name: node_tensor[p.node] for p in sim.points if p.kind != "weights" and p.node in node_tensor}


AUTO_INT16_SHARE = 0.9
"""`--int16-layers auto` stops once the int16 layers remove this share of what int16 activations can remove."""

_SAME_GRID_OPS = {"PAD", "PADV2", "AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE"}
"""TFLite ops whose output keeps their input's quantisation: in a 16x8 region they follow their neighbours."""


@dataclass(frozen=True)
class Int16Plan:
    """Which ops of a TFLite graph run TFLite's 16x8 scheme, and which tensors are then int16.

    Attributes:
        layers: the activation points asked for (`QuantPoint.name`).
        ops: TFLite op indices that get int16 activations.
        scopes: their output tensor names (ai-edge-quantizer matches ops by them).
        int16_input: the model input is int16.
        int16_points: points whose tensor ends up int16 (its producer and every consumer run 16x8): what the
            simulation rounds at 16 bits.
    """

    layers: tuple[str, ...]
    ops: tuple[int, ...]
    scopes: tuple[str, ...]
    int16_input: bool
    int16_points: tuple[str, ...]


def plan_int16(layers: list[str] | tuple[str, ...], tensors: dict[str, int], graph: Any) -> Int16Plan:
    """The ops to run at 16x8 so that the tensors of `layers` are int16: each tensor's producer and consumers,
    spread over the ops that keep their input's grid (PAD, pooling, RESHAPE).

    Args:
        layers: activation point names (`input` included).
        tensors: `tflite_tensors(sim, graph)`.
        graph: the float TFLite graph (`edgeasc.deploy.tflite_graph.read_graph`).
    """
    producer = {t: op.index for op in graph.ops for t in op.outputs}
    consumers: dict[int, list[int]] = {}
    for op in graph.ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op.index)
    input_tensor = graph.inputs[0]
    ops: set[int] = set()
    queue: list[int] = []
    for name in layers:
        t = tensors[name]
        queue += consumers.get(t, []) + ([producer[t]] if t in producer else [])
    while queue:
        k = queue.pop()
        if k in ops:
            continue
        ops.add(k)
        op = graph.ops[k]
        if op.name in _SAME_GRID_OPS:
            queue += [producer[t] for t in op.inputs if t in producer and graph.tensors[t].data is None]
            queue += [c for t in op.outputs for c in consumers.get(t, [])]
    int16_input = "input" in layers

    def is16(t: int) -> bool:
        made = int16_input if t == input_tensor else producer.get(t) in ops
        return made and all(c in ops for c in consumers.get(t, []))

    points = tuple(name for name, t in tensors.items() if is16(t))
    scopes = tuple(graph.tensors[graph.ops[k].outputs[0]].name for k in sorted(ops))
    return Int16Plan(tuple(layers), tuple(sorted(ops)), scopes, int16_input, points)


def choose_int16_layers(sim: Int8Simulator, x: Tensor, tensors: dict[str, int], graph: Any, target: float,
                        share: float = AUTO_INT16_SHARE,
                        max_layers: int = 24) -> tuple[Int16Plan, float, list[dict[str, Any]]]:
    """`--int16-layers auto`: the fewest activations at int16 that remove `share` of the logit error int16
    activations can remove, and reach `target` agreement on `x`.

    Points are ranked by the mean squared logit error each causes quantised alone at int8 and moved to int16
    in that order. The stopping rule is on the squared logit error (everything quantised), not on agreement:
    the clips `x` can only be training clips (the test fold stays out of every choice), on which a trained
    model is sure of itself and agreement saturates after a few layers, while the size of the rounding
    error does not depend on how sure the model is. `share` of the way from all-int8 to every activation
    at int16 (the weights stay int8 either way) is the default's point of diminishing returns.

    Returns:
        (the plan, its simulated agreement on `x`, the steps taken: layer, agreement and logit error after it).
    """
    with torch.no_grad():
        ref_logits = sim.run(x, quantize=set())
    ref = ref_logits.argmax(1)

    def measure(bits16: set[str]) -> tuple[float, float]:
        out = sim.run(x, "all", bits16)
        return float((out.argmax(1) == ref).float().mean()), float(((out - ref_logits) ** 2).mean())

    candidates = [p.name for p in sim.points if p.kind != "weights" and p.name in tensors]
    cost = {name: float(((sim.run(x, {name}) - ref_logits) ** 2).mean()) for name in candidates}
    order = sorted(candidates, key=lambda name: -cost[name])
    achieved, err8 = measure(set())
    _, err16 = measure(set(plan_int16(candidates, tensors, graph).int16_points))
    goal = err16 + (1 - share) * (err8 - err16)
    plan = plan_int16([], tensors, graph)
    err = err8
    steps = [{"layer": None, "agreement": achieved, "logit_mse": err8, "goal_logit_mse": goal,
              "all_int16_logit_mse": err16}]
    for name in order:
        if (achieved >= target and err <= goal) or len(plan.layers) >= max_layers:
            break
        plan = plan_int16([*plan.layers, name], tensors, graph)
        achieved, err = measure(set(plan.int16_points))
        steps.append({"layer": name, "agreement": achieved, "logit_mse": err})
    return plan, achieved, steps
