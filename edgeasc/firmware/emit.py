"""C code generation of one graph: constant arrays (weights packed for the kernels, per-channel requantisation
records) and one kernel call per operator, written by `_Emitter` into model.c and model.h.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from edgeasc.deploy.tflite_graph import Graph, Op, Tensor
from edgeasc.errors import FirmwareError
from edgeasc.firmware.fixedpoint import RSHIFT_MAX, _padding_before, activation_range, quantize_multiplier
from edgeasc.firmware.plan import ArenaPlan
from edgeasc.firmware.tables import softmax_exp_table, unary_table

MAX_K = 2048
"""FW_MAX_K of fw_kernels.c: the largest convolution window (k_h * k_w * in_c, padded) and depthwise depth."""


def _c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 24) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    if not flat:
        flat = ["0"]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(flat)}] FW_ALIGN = {{\n    {body}\n}};\n"


def _c_float_array(name: str, values: np.ndarray, per_line: int = 8) -> str:
    flat = [_c_float(v) for v in np.asarray(values, dtype=np.float32).reshape(-1)]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return f"const float {name}[{len(flat)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def _c_float(v: float) -> str:
    """A C float literal that reads back as the same float32 (9 significant digits)."""
    text = f"{float(v):.9g}"
    return (text if any(c in text for c in ".en") else text + ".0") + "f"


def _c_ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


class _Emitter:
    """Builds model.c: constant tables, then one statement per operator."""

    def __init__(self, graph: Graph, plan: ArenaPlan, weights: str = "int16") -> None:
        if weights not in WEIGHT_STORAGE:
            raise FirmwareError(f"weight storage {weights!r}: expected one of {', '.join(WEIGHT_STORAGE)}")
        self.g = graph
        self.plan = plan
        self.weights = weights
        self.consts: list[str] = []
        self.body: list[str] = []
        self.const_bytes = 0
        self.const_names: dict[int, str] = {}
        self.extra_pad: dict[int, tuple[int, int]] = {}  # consumer op -> (top, left) of a folded PAD
        self.padded_dims: dict[int, tuple[int, int]] = {}  # consumer op -> (height, width) the PAD added
        self.pad_value: dict[int, int] = {}  # consumer op -> what its outside taps read (a folded PADV2's constant)

    def t(self, i: int) -> Tensor:
        return self.g.tensors[i]


    def _padded(self, op: Op, axis: int) -> int:
        """How much a folded PAD grew the consumer's input along axis 1 (height) or 2 (width)."""
        return self.padded_dims.get(op.index, (0, 0))[axis - 1]

    def ptr(self, i: int) -> str:
        t = self.t(i)
        if t.data is not None:
            return self.const_tensor(i)
        return f"(fw_arena + {self.plan.offsets[i]})"

    def const_tensor(self, i: int) -> str:
        if i not in self.const_names:
            t = self.t(i)
            if t.dtype != "INT8":
                raise FirmwareError(f"constant activation operand {t.name!r} is {t.dtype}; int8 expected")
            name = f"fw_const_t{i}"
            self.add_const("int8_t", name, t.data)
            self.const_names[i] = name
        return f"(const int8_t *){self.const_names[i]}"

    def add_const(self, ctype: str, name: str, values: np.ndarray) -> str:
        arr = np.asarray(values)
        width = {"int8_t": 1, "int16_t": 2, "int32_t": 4, "float": 4}[ctype]
        self.const_bytes += arr.size * width
        self.consts.append("static " + _c_float_array(name, arr) if ctype == "float" else _c_array(ctype, name, arr))
        return name

    def fptr(self, i: int) -> str:
        """A float32 boundary tensor's arena address."""
        return f"(float *)(void *){self.ptr(i)}"

    def _drop_const(self, name: str) -> None:
        for i, text in enumerate(self.consts):
            if f" {name}[" in text:
                n = int(text.split(f" {name}[", 1)[1].split("]", 1)[0])
                self.const_bytes -= n * (4 if "int32_t" in text.split(name, 1)[0] else 1)
                del self.consts[i]
                return

    def stmt(self, k: int, code: str) -> None:
        self.body.append(f"    fw_layer_hook({k});\n    {code}\n")

    # -- operators ----------------------------------------------------------------------------------
    def conv(self, op: Op, depthwise: bool) -> str:
        inp, filt, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        bias = self.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        o = op.options
        if filt.dtype != "INT8":
            raise FirmwareError(f"op {op.index} ({op.name}): {filt.dtype} weights; int8 expected")
        if bias is not None and bias.dtype != "INT32":
            raise FirmwareError(f"op {op.index} ({op.name}): {bias.dtype} bias; int32 expected")
        if filt.data is None:
            raise FirmwareError(f"op {op.index} ({op.name}): weights are not constant")
        _, in_h, in_w, in_c = inp.shape4()
        _, out_h, out_w, out_c = out.shape4()
        w = filt.data.astype(np.int32)
        if depthwise:
            _, k_h, k_w, _ = filt.shape
            mult = int(o.depthMultiplier) if o.depthMultiplier else out_c // in_c
            groups = in_c
        else:
            _, k_h, k_w, f_in = filt.shape
            groups = in_c // f_in
            mult = 1
            if groups * f_in != in_c or out_c % groups:
                raise FirmwareError(f"op {op.index} (CONV_2D): {in_c} input channels do not split into groups "
                                    f"of {f_in}")
        dil_h, dil_w = int(o.dilationHFactor), int(o.dilationWFactor)
        s_h, s_w = int(o.strideH), int(o.strideW)
        extra_h, extra_w = self.extra_pad.get(op.index, (0, 0))  # a folded PAD (fuse_pads)
        pad_h = _padding_before(o.padding, in_h + self._padded(op, 1), k_h, s_h, dil_h, out_h) + extra_h
        pad_w = _padding_before(o.padding, in_w + self._padded(op, 2), k_w, s_w, dil_w, out_w) + extra_w
        scales = filt.scales if len(filt.scales) == out_c else np.repeat(filt.scales[:1], out_c)
        qs = [quantize_multiplier(float(inp.scales[0]) * float(s) / float(out.scales[0])) for s in scales]
        act_min, act_max = activation_range(int(o.fusedActivationFunction), out.scale, out.zero_point)
        k = op.index
        bias_vals = bias.data.astype(np.int64) if bias is not None else np.zeros(out_c, dtype=np.int64)
        in_offset = -inp.zero_point
        kernel = "fw_dwconv_s8" if depthwise else "fw_conv_s8"
        if not depthwise and groups == in_c and out_c == in_c and f_in == 1:
            # A grouped convolution with one input channel per group is a depthwise one (onnx2tf writes strided
            # depthwise layers so): same sums, weights reordered from (O, KH, KW, 1) to (1, KH, KW, O).
            w = np.transpose(w, (3, 1, 2, 0))
            kernel, depthwise, mult = "fw_dwconv_s8", True, 1
        fields = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c, k_h=k_h, k_w=k_w,
                      stride_h=s_h, stride_w=s_w, dil_h=dil_h, dil_w=dil_w, pad_h=pad_h, pad_w=pad_w,
                      groups=groups, depth_multiplier=mult, in_offset=in_offset, out_offset=out.zero_point,
                      act_min=act_min, act_max=act_max, pad_value=self.pad_value.get(op.index, inp.zero_point))
        # bias + in_offset * (sum of the output channel's weights): the kernels use it where a window lies
        # wholly inside the input, so the input offset leaves the inner loop
        w_sum = w.reshape(-1, out_c).sum(axis=0) if depthwise else w.reshape(out_c, -1).sum(axis=1)
        folded = bias_vals + in_offset * w_sum.astype(np.int64)
        if np.any(np.abs(folded) >= 2**31):
            raise FirmwareError(f"op {k} ({op.name}): the folded bias overflows int32")
        ptrs = dict(weights=f"fw_w{k}", bias="NULL", rq=f"fw_rq{k}", dw3="NULL")
        if bias is not None:
            ptrs["bias"] = self.add_const("int32_t", f"fw_bias{k}", bias_vals)
        self.add_const("int32_t", f"fw_rq{k}", requant_records(folded, qs))
        fields["rshift"] = int(all(-RSHIFT_MAX <= sh <= -1 for _, sh in qs))
        # worst-case accumulator: folded bias + |weights| x 128 (inputs are int8; padding taps hold the zero point)
        w_abs = np.abs(w).reshape(-1, out_c).sum(axis=0) if depthwise else np.abs(w).reshape(out_c, -1).sum(axis=1)
        acc_bound = int(np.max(np.abs(folded) + 128 * w_abs.astype(np.int64)))
        fields["small"] = int(acc_bound < 2**30)
        is_1x1 = (not depthwise and k_h == 1 and k_w == 1 and s_h == 1 and s_w == 1 and groups == 1
                  and (in_h, in_w) == (out_h, out_w))
        k_pad = -(-(k_h * k_w * (in_c // groups)) // 4) * 4
        fields["k_pad"] = k_pad
        if (not depthwise and groups == 1 and k_pad > MAX_K) or (depthwise and in_c > MAX_K):
            raise FirmwareError(f"op {k} ({op.name}): a window of {k_pad} values or {in_c} channels exceeds the "
                                f"kernels' buffers ({MAX_K}; FW_MAX_K in firmware_stub/src/fw_kernels.c)")
        if is_1x1 and in_c % 4 == 0:
            kernel = "fw_conv_1x1_s8"
        if not depthwise and groups == 1 and self.weights == "int8":  # int8 rows, widened in the kernel
            self.add_const("int8_t", f"fw_w{k}", pack_conv_weights_int8(w.reshape(out_c, -1).astype(np.int8), k_pad))
            ptrs["weights16"] = "NULL"
        elif not depthwise and groups == 1:  # int16 (out_c, k_pad) rows, pairs interleaved in groups of four
            self.add_const("int16_t", f"fw_w{k}", pack_conv_weights(w.reshape(out_c, -1).astype(np.int8), k_pad))
            ptrs["weights"], ptrs["weights16"] = "NULL", f"fw_w{k}"
        else:
            self.add_const("int8_t", f"fw_w{k}", w.astype(np.int8))
            ptrs["weights16"] = "NULL"
        if depthwise and k_h * k_w == 3:  # per channel {bias, multiplier, (w0, w1) int16 pair, w2, e, h}
            t3 = w.reshape(3, out_c).astype(np.int64)
            rec = requant_records(folded, qs).reshape(out_c, 4)
            pair = (t3[0] & 0xFFFF) | (t3[1] << 16)
            pair = np.where(pair >= 2**31, pair - 2**32, pair)
            dw3 = np.stack([rec[:, 0], rec[:, 1], pair, t3[2], rec[:, 2], rec[:, 3]], axis=1)
            ptrs["dw3"] = self.add_const("int32_t", f"fw_dw3_{k}", dw3)
            if mult == 1:  # the kernel reads only the dw3 records then
                for name in (f"fw_w{k}", f"fw_rq{k}"):
                    self._drop_const(name)
                ptrs["weights"], ptrs["rq"] = "NULL", "NULL"
        init = ", ".join(f".{a} = {b}" for a, b in {**fields, **ptrs}.items())
        self.consts.append(f"static const fw_conv_params fw_p{k} = {{{init}}};\n")
        self.stmt(k, f"{kernel}(&fw_p{k}, {self.ptr(op.inputs[0])}, {self.ptr(op.outputs[0])});")
        return kernel

    def fully_connected(self, op: Op) -> str:
        inp, filt, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        bias = self.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        if filt.data is None or filt.dtype != "INT8":
            raise FirmwareError(f"op {op.index} (FULLY_CONNECTED): weights must be constant int8")
        if bias is not None and bias.dtype != "INT32":
            raise FirmwareError(f"op {op.index} (FULLY_CONNECTED): {bias.dtype} bias; int32 expected")
        units, depth = filt.shape
        rows = inp.elements // depth
        per_channel = len(filt.scales) > 1
        scales = filt.scales if per_channel else filt.scales[:1]
        qs = [quantize_multiplier(float(inp.scales[0]) * float(s) / float(out.scales[0])) for s in scales]
        act_min, act_max = activation_range(int(op.options.fusedActivationFunction), out.scale, out.zero_point)
        k = op.index
        self.add_const("int8_t", f"fw_w{k}", filt.data)
        self.add_const("int32_t", f"fw_mult{k}", np.array([m for m, _ in qs], dtype=np.int64))
        self.add_const("int32_t", f"fw_shift{k}", np.array([s for _, s in qs], dtype=np.int64))
        # weight zero point 0 (TFLite's int8 weights are symmetric): bias + in_offset * sum(w) per output, so the
        # kernel's inner loop is sum(w * x) alone (the same integer) and the bias itself is not stored
        folded = (bias.data.astype(np.int64) if bias is not None else np.zeros(units, np.int64)) \
            - inp.zero_point * filt.data.astype(np.int64).sum(axis=1)
        folded_name = bias_name = "NULL"
        if filt.zero_point == 0 and np.all(np.abs(folded) < 2**31):
            folded_name = self.add_const("int32_t", f"fw_folded{k}", folded)
        elif bias is not None:
            bias_name = self.add_const("int32_t", f"fw_bias{k}", bias.data)
        self.consts.append(
            f"static const fw_fc_params fw_p{k} = {{.rows = {rows}, .in_depth = {depth}, .out_depth = {units}, "
            f".in_offset = {-inp.zero_point}, .weight_offset = {-filt.zero_point}, .out_offset = {out.zero_point}, "
            f".act_min = {act_min}, .act_max = {act_max}, .per_channel = {int(per_channel)}, .weights = fw_w{k}, "
            f".bias = {bias_name}, .mult = fw_mult{k}, .shift = fw_shift{k}, .folded = {folded_name}}};\n")
        self.stmt(k, f"fw_fc_s8(&fw_p{k}, {self.ptr(op.inputs[0])}, {self.ptr(op.outputs[0])});")
        return "fw_fc_s8"

    def binary(self, op: Op) -> str:
        a, b, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        od = out.shape4()

        def strides(t: Tensor) -> list[int]:
            d = t.shape4()
            full = [d[1] * d[2] * d[3], d[2] * d[3], d[3], 1]
            for x in range(4):
                if d[x] != od[x] and d[x] != 1:
                    raise FirmwareError(f"op {op.index} ({op.name}): shapes {a.shape} and {b.shape} do not broadcast")
            return [0 if d[x] == 1 and od[x] != 1 else full[x] for x in range(4)]

        broadcast = int(a.shape4() != od or b.shape4() != od)
        fused = int(op.options.fusedActivationFunction) if op.name in ("ADD", "MUL") else 0
        act_min, act_max = activation_range(fused, out.scale, out.zero_point)
        f: dict[str, Any] = dict(in1_offset=-a.zero_point, in2_offset=-b.zero_point, out_offset=out.zero_point,
                                 act_min=act_min, act_max=act_max, broadcast=broadcast, left_shift=0)
        if op.name == "ADD":
            f["left_shift"] = 20
            twice_max = 2.0 * float(max(np.float32(a.scale), np.float32(b.scale)))
            f["in1_mult"], f["in1_shift"] = quantize_multiplier(a.scale / twice_max)
            f["in2_mult"], f["in2_shift"] = quantize_multiplier(b.scale / twice_max)
            f["out_mult"], f["out_shift"] = quantize_multiplier(twice_max / ((1 << 20) * out.scale))
            if max(f["in1_shift"], f["in2_shift"], f["out_shift"]) > 0:
                raise FirmwareError(f"op {op.index} (ADD): scales need a multiplier above one, which TFLite rejects")
            kernel = "fw_add_s8"
        elif op.name == "MUL":
            f["out_mult"], f["out_shift"] = quantize_multiplier(a.scale * b.scale / out.scale)
            kernel = "fw_mul_s8"
        else:  # MAXIMUM / MINIMUM compare the raw int8 values, as TFLite Micro does
            kernel = "fw_maximum_s8" if op.name == "MAXIMUM" else "fw_minimum_s8"
        k = op.index
        arr = lambda v: "{" + ", ".join(str(int(x)) for x in v) + "}"  # noqa: E731
        init = ", ".join([f".out_dims = {arr(od)}", f".in1_strides = {arr(strides(a))}",
                          f".in2_strides = {arr(strides(b))}"] + [f".{n} = {v}" for n, v in f.items()])
        self.consts.append(f"static const fw_binary_params fw_p{k} = {{{init}}};\n")
        self.stmt(k, f"{kernel}(&fw_p{k}, {self.ptr(op.inputs[0])}, {self.ptr(op.inputs[1])}, "
                     f"{self.ptr(op.outputs[0])});")
        return kernel

    def pool(self, op: Op) -> str:
        """AVERAGE_POOL_2D and MAX_POOL_2D (same parameters; both keep the input's quantisation)."""
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        if (inp.scale, inp.zero_point) != (out.scale, out.zero_point):
            raise FirmwareError(f"op {op.index} ({op.name}): input and output quantisation differ")
        kernel = "fw_avgpool_s8" if op.name == "AVERAGE_POOL_2D" else "fw_maxpool_s8"
        o = op.options
        _, in_h, in_w, c = inp.shape4()
        _, out_h, out_w, _ = out.shape4()
        f_h, f_w, s_h, s_w = int(o.filterHeight), int(o.filterWidth), int(o.strideH), int(o.strideW)
        act_min, act_max = activation_range(int(o.fusedActivationFunction), out.scale, out.zero_point)
        k = op.index
        self.consts.append(
            f"static const fw_pool_params fw_p{k} = {{.in_h = {in_h}, .in_w = {in_w}, .c = {c}, .out_h = {out_h}, "
            f".out_w = {out_w}, .f_h = {f_h}, .f_w = {f_w}, .stride_h = {s_h}, .stride_w = {s_w}, "
            f".pad_h = {_padding_before(o.padding, in_h, f_h, s_h, 1, out_h)}, "
            f".pad_w = {_padding_before(o.padding, in_w, f_w, s_w, 1, out_w)}, .act_min = {act_min}, "
            f".act_max = {act_max}}};\n")
        self.stmt(k, f"{kernel}(&fw_p{k}, {self.ptr(op.inputs[0])}, {self.ptr(op.outputs[0])});")
        return kernel

    def table(self, op: Op) -> str:
        """An elementwise operator as a 256-entry table (firmware/tables.py); DEQUANTIZE's table is float."""
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        if inp.elements != out.elements:
            raise FirmwareError(f"op {op.index} ({op.name}): {inp.shape} -> {out.shape} changes the element count")
        k = op.index
        values = unary_table(op, inp, out)
        if op.name == "DEQUANTIZE":
            self.add_const("float", f"fw_table{k}", values)
            self.stmt(k, f"fw_table_f32({out.elements}, fw_table{k}, {self.ptr(op.inputs[0])}, "
                         f"{self.fptr(op.outputs[0])});")
            return "fw_table_f32"
        self.add_const("int8_t", f"fw_table{k}", values)
        self.stmt(k, f"fw_table_s8({out.elements}, fw_table{k}, {self.ptr(op.inputs[0])}, {self.ptr(op.outputs[0])});")
        return "fw_table_s8"

    def quantize(self, op: Op) -> str:
        """QUANTIZE: from the float32 model input (AffineQuantize), or int8 -> int8 (a table)."""
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        if inp.dtype != "FLOAT32":
            return self.table(op)
        if out.dtype != "INT8" or len(out.scales) != 1:
            raise FirmwareError(f"op {op.index} (QUANTIZE): float32 -> {out.dtype} with {len(out.scales)} scales; "
                                "per-tensor int8 is supported")
        k = op.index
        self.stmt(k, f"fw_quantize_f32_s8({out.elements}, {_c_float(out.scale)}, {out.zero_point}, "
                     f"{self.fptr(op.inputs[0])}, {self.ptr(op.outputs[0])});")
        return "fw_quantize_f32_s8"

    def softmax(self, op: Op) -> str:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        exp = softmax_exp_table(op, inp, out)
        depth = int(inp.shape[-1]) if inp.shape else 1
        k = op.index
        self.add_const("int32_t", f"fw_exp{k}", exp)
        self.consts.append(f"static const fw_softmax_params fw_p{k} = {{.rows = {inp.elements // depth}, "
                           f".depth = {depth}, .d_max = {len(exp) - 1}, .exp = fw_exp{k}}};\n")
        self.stmt(k, f"fw_softmax_s8(&fw_p{k}, {self.ptr(op.inputs[0])}, {self.ptr(op.outputs[0])});")
        return "fw_softmax_s8"

    def mean(self, op: Op) -> str:
        inp, axis, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        if axis.data is None:
            raise FirmwareError(f"op {op.index} (MEAN): the axes must be constant")
        rank = len(inp.shape)
        reduce = [0, 0, 0, 0]
        for a in np.asarray(axis.data).reshape(-1):
            a = int(a) + (rank if a < 0 else 0)
            reduce[a + 4 - rank] = 1
        d = inp.shape4()
        n = int(np.prod([d[x] for x in range(4) if reduce[x]]))
        # QuantizedMeanOrSum, also when input and output quantisation agree: the pinned TFLite Micro and LiteRT
        # take it for int8 then too (a newer source's sum / count branch is not what they run; the tests pin it)
        mult, shift = quantize_multiplier(float(inp.scale) / float(out.scale))
        if n > 0:  # QuantizedMeanOrSum folds 1 / n into the multiplier
            s = min(n.bit_length() - 1, 32, 31 + shift)
            mult = (mult << s) // n
            shift -= s
        k = op.index
        arr = lambda v: "{" + ", ".join(str(int(x)) for x in v) + "}"  # noqa: E731
        self.consts.append(
            f"static const fw_mean_params fw_p{k} = {{.in_dims = {arr(d)}, .reduce = {arr(reduce)}, "
            f".in_zp = {inp.zero_point}, .out_zp = {out.zero_point}, .mult = {mult}, "
            f".shift = {shift}}};\n")
        self.stmt(k, f"fw_mean_s8(&fw_p{k}, {self.ptr(op.inputs[0])}, {self.ptr(op.outputs[0])});")
        return "fw_mean_s8"

    def pad(self, op: Op) -> str:
        inp, pads, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        if pads.data is None:
            raise FirmwareError(f"op {op.index} ({op.name}): the paddings must be constant")
        if (inp.scale, inp.zero_point) != (out.scale, out.zero_point):
            raise FirmwareError(f"op {op.index} ({op.name}): input and output quantisation differ")
        p = np.asarray(pads.data).reshape(-1, 2)
        before = [0] * (4 - len(p)) + [int(x) for x in p[:, 0]]
        if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            value = int(np.asarray(self.t(op.inputs[2]).data).reshape(-1)[0])
        else:
            value = out.zero_point
        k = op.index
        arr = lambda v: "{" + ", ".join(str(int(x)) for x in v) + "}"  # noqa: E731
        self.consts.append(f"static const fw_pad_params fw_p{k} = {{.in_dims = {arr(inp.shape4())}, "
                           f".out_dims = {arr(out.shape4())}, .before = {arr(before)}, .value = {value}}};\n")
        self.stmt(k, f"fw_pad_s8(&fw_p{k}, {self.ptr(op.inputs[0])}, {self.ptr(op.outputs[0])});")
        return "fw_pad_s8"

    def strided_slice(self, op: Op) -> str:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        b_t, e_t, s_t = (self.t(i) for i in op.inputs[1:4])
        if any(x.data is None for x in (b_t, e_t, s_t)):
            raise FirmwareError(f"op {op.index} (STRIDED_SLICE): begin, end and strides must be constant")
        o = op.options
        if o.ellipsisMask or o.newAxisMask or getattr(o, "offset", False):
            raise FirmwareError(f"op {op.index} (STRIDED_SLICE): ellipsis, new-axis masks and offset are not supported")
        dims = list(inp.shape)
        rank = len(dims)
        begin, end, stride = (np.asarray(x.data).reshape(-1).astype(int) for x in (b_t, e_t, s_t))
        starts, counts, steps = [], [], []
        for x in range(rank):
            step = int(stride[x])
            if step <= 0:
                raise FirmwareError(f"op {op.index} (STRIDED_SLICE): non-positive strides are not supported")
            start = 0 if (o.beginMask >> x) & 1 else int(begin[x])
            start = min(max(start + dims[x] if start < 0 else start, 0), dims[x])
            if (o.shrinkAxisMask >> x) & 1:
                stop = start + 1
            else:
                stop = dims[x] if (o.endMask >> x) & 1 else int(end[x])
                stop = min(max(stop + dims[x] if stop < 0 else stop, 0), dims[x])
            starts.append(start)
            steps.append(step)
            counts.append(max(0, -(-(stop - start) // step)))
        if int(np.prod(counts)) != out.elements:
            raise FirmwareError(f"op {op.index} (STRIDED_SLICE): computed {counts} elements, the output has "
                                f"{out.shape}")
        pad = 4 - rank
        k = op.index
        arr = lambda v: "{" + ", ".join(str(int(x)) for x in v) + "}"  # noqa: E731
        self.consts.append(
            f"static const fw_slice_params fw_p{k} = {{.in_dims = {arr([1] * pad + dims)}, "
            f".out_dims = {arr([1] * pad + counts)}, .begin = {arr([0] * pad + starts)}, "
            f".stride = {arr([1] * pad + steps)}}};\n")
        self.stmt(k, f"fw_strided_slice_s8(&fw_p{k}, {self.ptr(op.inputs[0])}, {self.ptr(op.outputs[0])});")
        return "fw_strided_slice_s8"

    def concat(self, op: Op) -> str:
        out = self.t(op.outputs[0])
        if op.options.fusedActivationFunction:
            raise FirmwareError(f"op {op.index} (CONCATENATION): a fused activation is not supported")
        axis = int(op.options.axis)
        axis += len(out.shape) if axis < 0 else 0
        outer = int(np.prod(out.shape[:axis], dtype=np.int64))
        ins = [self.t(i) for i in op.inputs]
        for t in ins:
            if (np.float32(t.scale), t.zero_point) != (np.float32(out.scale), out.zero_point):
                raise FirmwareError(f"op {op.index} (CONCATENATION): inputs with their own quantisation need "
                                    "requantising, which is not supported")
        k = op.index
        inner = [int(np.prod(t.shape[axis:], dtype=np.int64)) for t in ins]
        self.consts.append(f"static const int32_t fw_inner{k}[{len(ins)}] = {{{', '.join(map(str, inner))}}};\n")
        ptrs = ", ".join(self.ptr(i) for i in op.inputs)
        self.stmt(k, f"{{ const int8_t *const in[{len(ins)}] = {{{ptrs}}}; "
                     f"fw_concat_s8({len(ins)}, in, fw_inner{k}, {outer}, {self.ptr(op.outputs[0])}); }}")
        return "fw_concat_s8"

    def alias(self, op: Op) -> str:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        if inp.elements != out.elements:
            raise FirmwareError(f"op {op.index} ({op.name}): {inp.shape} -> {out.shape} changes the element count")
        if inp.data is not None:
            raise FirmwareError(f"op {op.index} ({op.name}): reshaping a constant is not supported")
        self.stmt(op.index, f"/* {op.name}: output shares the input's bytes */")
        return "alias"


def requant_records(folded_bias: np.ndarray, qs: list[tuple[int, int]]) -> np.ndarray:
    """Per output channel {folded bias, multiplier, e, h} (fw_conv_params.rq): a TFLite shift <= -1 becomes
    the right shift e = -shift with h = 2^(e-1); a shift >= 0 is kept as e = 0, h = shift."""
    rows = [(int(b), m, -sh, 1 << (-sh - 1)) if sh <= -1 else (int(b), m, 0, sh) for b, (m, sh) in zip(folded_bias, qs)]
    return np.array(rows, dtype=np.int64).reshape(-1)


WEIGHT_STORAGE = ("int16", "int8")
"""How one-group convolution weights are stored (`edgeasc firmware --weights`): int16 pairs the SMLAD core takes
as they are (the default: fewest instructions), or int8 widened in the kernel with SXTB16 (half the flash;
docs/firmware.md "Flash" has both figures)."""


def pack_conv_weights_int8(w: np.ndarray, k_pad: int) -> np.ndarray:
    """(out_c, K) int8 weights -> the int8 layout of `--weights int8`: rows zero-padded to `k_pad`, the two rows
    of each output-channel pair side by side per group of four (one LDRD loads a group of both), each group in
    its natural order (SXTB16 gives (w0, w2) and, with ROR 8, (w1, w3)); an odd last channel stays a plain row."""
    out_c, k = w.shape
    w = np.concatenate([w.astype(np.int8), np.zeros((out_c, k_pad - k), dtype=np.int8)], axis=1)
    pairs = out_c // 2
    body = w[: 2 * pairs].reshape(pairs, 2, k_pad // 4, 4).transpose(0, 2, 1, 3).reshape(-1)
    return np.concatenate([body, w[2 * pairs:].reshape(-1)]).astype(np.int8)


def pack_conv_weights(w: np.ndarray, k_pad: int) -> np.ndarray:
    """(out_c, K) int8 weights -> the int16 layout fw_conv_s8 / fw_conv_1x1_s8 read: rows zero-padded to
    `k_pad` (a multiple of 4), each group of four reordered (w0, w2, w1, w3) as SXTB16 widens the input, and
    the two rows of each output-channel pair side by side per group; an odd last channel stays a plain row.
    Stored as int16 so that SMLAD takes them without widening (twice the flash of int8)."""
    out_c, k = w.shape
    w = np.concatenate([w.astype(np.int16), np.zeros((out_c, k_pad - k), dtype=np.int16)], axis=1)
    w = w.reshape(out_c, k_pad // 4, 4)[:, :, [0, 2, 1, 3]]
    pairs = out_c // 2
    body = w[: 2 * pairs].reshape(pairs, 2, k_pad // 4, 4).transpose(0, 2, 1, 3).reshape(-1)
    return np.concatenate([body, w[2 * pairs:].reshape(-1)]).astype(np.int16)
