"""Int8 error budget of a checkpoint, by torch simulation (docs/export.md, "Int8 fidelity").

Folds BatchNorm, then measures top-1 agreement with the float model on every EVERY-th test clip when
(a) only the weights are rounded to TFLite's per-channel int8 grid, (b) every activation tensor TFLite
quantises is rounded per tensor (asymmetric int8, min/max ranges from the export's 300 calibration clips),
(c) one activation tensor at a time (the 15 worst are printed), (d) all activations with the output range
clipped from below (a finer output step). Usage:

    .venv/bin/python benchmarks/int8_error_budget.py RUN/model.pt DATA [EVERY=3]
"""
import sys
from pathlib import Path
import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edgeasc.checkpoint import load_model
from edgeasc.dataset import TAUDataset, load_waveforms
from edgeasc.evaluate import frontend_of
from edgeasc.export import fold_batchnorm, select_calibration_clips
from edgeasc.features import LogMel
from edgeasc.quant import quantize_per_channel, quantize_per_tensor
from edgeasc.models.layers import ConvNormAct

torch.set_num_threads(1)
ckpt_path, data = sys.argv[1], sys.argv[2]
every = int(sys.argv[3]) if len(sys.argv) > 3 else 3
model, ckpt = load_model(ckpt_path)
model.eval()
fe = frontend_of(ckpt)
ds = TAUDataset(data)
calib = select_calibration_clips(ds.clips("split25"), 300, 0)
test = ds.clips("test")[::every]
mel = LogMel(fe)


def feats(clips):
    w = load_waveforms(ds.root, clips, fe.sample_rate_hz, fe.clip_samples)
    out = []
    for s in range(0, len(clips), 100):
        with torch.no_grad():
            out.append(mel(torch.from_numpy(np.array(w[s:s + 100], dtype=np.float32))))
    return torch.cat(out)


xc, xt = feats(calib), feats(test)
folded = fold_batchnorm(model)

# Quantisation points: name -> (module, kind) where kind "out" = module output, "in" = module input.
points = {"input": (None, "in")}
for name, m in folded.named_modules():
    if isinstance(m, ConvNormAct):
        points[name] = (m, "out")
    if name.endswith("after_block_activation"):
        points[name] = (m, "out")
    if name.endswith("proj_conv"):
        points[name + ".in(branch sum)"] = (m, "in")
    if name.endswith("shortcut") and isinstance(m, nn.AvgPool2d):
        points[name] = (m, "out")
    if name == "stages":
        points["stem sum"] = (m, "in")
points["logits"] = (folded, "out")

ranges = {}


def run(model, x, active=(), record=False):
    hooks = []
    for key, (m, kind) in points.items():
        if key == "input":
            continue
        if not (record or key in active):
            continue

        def qz(t, key=key):
            if record:
                lo, hi = ranges.get(key, (np.inf, -np.inf))
                ranges[key] = (min(lo, float(t.min())), max(hi, float(t.max())))
                return t
            return quantize_per_tensor(t, *ranges[key])

        if kind == "out":
            hooks.append(m.register_forward_hook(lambda mod, i, o, f=qz: f(o)))
        else:
            hooks.append(m.register_forward_pre_hook(lambda mod, i, f=qz: (f(i[0]),)))
    if "input" in active and not record:
        x = quantize_per_tensor(x, *ranges["input"])
    with torch.no_grad():
        out = torch.cat([model(x[i:i + 100]) for i in range(0, len(x), 100)])
    for h in hooks:
        h.remove()
    return out


ranges["input"] = (float(xc.min()), float(xc.max()))
run(folded, xc, record=True)
ref = run(folded, xt)
top2 = ref.topk(2, 1).values
margin = (top2[:, 0] - top2[:, 1]).numpy()
print(f"{len(test)} test clips; logit range calib {ranges['logits']}; margin<0.05 {np.mean(margin<0.05):.3f} <0.1 {np.mean(margin<0.1):.3f} <0.2 {np.mean(margin<0.2):.3f}")
pred = ref.argmax(1)

wq = fold_batchnorm(model)
with torch.no_grad():
    for m in wq.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.copy_(quantize_per_channel(m.weight))
# re-bind points to wq modules for combined runs
def agree(out):
    return float((out.argmax(1) == pred).float().mean()) * 100

print(f"weights only            {agree(run(wq, xt)):.2f}")
allkeys = list(points)
print(f"all activations         {agree(run(folded, xt, active=allkeys)):.2f}")
# (d) the output range clipped from below at the smallest best / second-best calibration logit (values below
# cannot change the top-1), a finer output step
top = run(folded, xc).topk(2, 1).values
full = ranges["logits"]
for name, lo in (("second-best", float(top[:, 1].min())), ("best", float(top[:, 0].min()))):
    ranges["logits"] = (lo, full[1])
    print(f"logits from {lo:.3f} ({name}): all activations {agree(run(folded, xt, active=allkeys)):.2f}, "
          f"logits only {agree(run(folded, xt, active=['logits'])):.2f}")
ranges["logits"] = full
print(f"logits only (full range) {agree(run(folded, xt, active=['logits'])):.2f}")
res = []
for key in allkeys:
    res.append((agree(run(folded, xt, active=[key])), key))
for a, key in sorted(res)[:15]:
    print(f"  only {key:<40} {a:.2f}")
