"""Experiment (docs/export.md): the demo's quantisation-aware fine-tuning with activations fake-quantised too.

Runs `recipes/demo_qat.toml` from CHECKPOINT with, besides the weights on the int8 grid, every activation
tensor TFLite quantises rounded per tensor during training (asymmetric int8, ranges by an exponential moving
average of batch min/max, straight-through gradients); the saved model is the plain float model, as in
`make demo`. Measured there: no gain in int8 agreement over weights alone. Not a library feature: it wraps
`edgeasc.train.qat.attach_weight_fake_quant` for this one run. Usage:

    .venv/bin/python benchmarks/experiments/act_qat_experiment.py CHECKPOINT DATA OUT_RUN
    edgeasc export OUT_RUN/model.pt --int8 --data DATA --out OUT_RUN/export
"""
import sys
from pathlib import Path

from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import edgeasc.train.qat as q
from edgeasc.config import resolve_train_config
from edgeasc.models.layers import ConvNormAct
from edgeasc.train.loop import train

MOMENTUM = 0.05


def fq(t, lo, hi):
    return t + (q.quantize_per_tensor(t.detach(), lo, hi) - t).detach()


def attach_act(model):
    ranges = {}

    def make(key):
        def quant(t):
            if not model.training:
                return t
            lo, hi = float(t.detach().min()), float(t.detach().max())
            if key in ranges:
                plo, phi = ranges[key]
                lo, hi = plo + MOMENTUM * (lo - plo), phi + MOMENTUM * (hi - phi)
            ranges[key] = (lo, hi)
            return fq(t, lo, hi)
        return quant

    for name, m in model.named_modules():
        if isinstance(m, ConvNormAct) or name.endswith("after_block_activation") or (
                isinstance(m, nn.AvgPool2d) and name.endswith("shortcut")):
            f = make(name)
            m.register_forward_hook(lambda mod, i, o, f=f: f(o))
        if name.endswith("proj_conv"):
            f = make(name + ".in")
            m.register_forward_pre_hook(lambda mod, i, f=f: (f(i[0]),))
        if name == "stages":
            f = make("stem")
            m.register_forward_pre_hook(lambda mod, i, f=f: (f(i[0]),))
    f = make("logits")
    model.register_forward_hook(lambda mod, i, o, f=f: f(o))
    fin = make("input")
    model.register_forward_pre_hook(lambda mod, i, f=fin: (f(i[0]),))
    return ranges


orig = q.attach_weight_fake_quant


def both(model):
    n = orig(model)
    attach_act(model)
    return n


q.attach_weight_fake_quant = both
ckpt, data, out = sys.argv[1:4]
cfg = resolve_train_config(Path(__file__).resolve().parents[2] / "recipes" / "demo_qat.toml",
                           (f"model.init_checkpoint={ckpt!r}",))
train(cfg, data, out, progress=False)
